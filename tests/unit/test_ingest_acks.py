"""PendingAcks: windows parked until the broker took the state deltas they wait for, released
in order, and a delta the broker does not take in time reported as overdue."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from cloud.ingest.acks import Ack, PendingAcks, acks_of
from cloud.ingest.decode import Message


@dataclass
class Pub:
    """A publication whose PUBACK the test delivers by hand."""

    done: bool = False
    error: Exception | None = None

    def is_published(self) -> bool:
        if self.error is not None:
            raise self.error
        return self.done


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_windows_are_released_in_order_once_their_deltas_are_acknowledged() -> None:
    pending: PendingAcks[int] = PendingAcks(timeout_s=10)
    first, second = Pub(), Pub()
    pending.park([first], [1, 2])
    pending.park([second], [3])
    pending.park([], [4])
    assert pending.settle() == []
    second.done = True  # a later PUBACK does not release an earlier window
    assert pending.settle() == []
    first.done = True
    assert pending.settle() == [1, 2, 3, 4]
    assert len(pending) == 0


def test_a_window_split_over_several_deltas_waits_for_all_of_them() -> None:
    pending: PendingAcks[int] = PendingAcks(timeout_s=10)
    a, b = Pub(), Pub()
    pending.park([a, b], [7])
    a.done = True
    assert pending.settle() == []
    b.done = True
    assert pending.settle() == [7]


def test_a_delta_is_overdue_only_after_the_timeout_with_a_silent_broker() -> None:
    clock = Clock()
    pending: PendingAcks[int] = PendingAcks(timeout_s=10, clock=clock)
    assert not pending.overdue(last_heard=0.0)
    pending.park([Pub()], [1])
    heard = clock.now
    clock.now += 10
    assert not pending.overdue(last_heard=heard)
    clock.now += 0.5
    assert pending.overdue(last_heard=heard)
    # Still receiving (the PUBACK is queued behind those messages): not overdue.
    assert not pending.overdue(last_heard=clock.now - 1)


def test_dropping_forgets_every_parked_message_unacknowledged() -> None:
    pending: PendingAcks[int] = PendingAcks(timeout_s=10)
    pending.park([Pub()], [1, 2, 3])
    pending.park([], [4])
    assert pending.drop() == 4
    assert pending.settle() == []
    assert not pending.overdue(last_heard=0.0)


def test_a_failed_publication_raises_like_paho() -> None:
    pending: PendingAcks[int] = PendingAcks(timeout_s=10)
    pending.park([Pub(error=RuntimeError("not connected"))], [1])
    with pytest.raises(RuntimeError):
        pending.settle()


def test_acks_of_messages_keep_each_ones_packet_id_qos_and_connection_in_order() -> None:
    """The Acks parked for a window carry exactly the fields acknowledging needs."""
    msgs = [
        Message(topic="t/a", payload=b"x" * 10, received_ms=1, mid=7, qos=1, generation=3),
        Message(topic="t/b", payload=b"", received_ms=2, mid=65535, qos=0, generation=4),
    ]
    got = acks_of(msgs)
    assert got == [Ack(7, 1, 3), Ack(65535, 0, 4)]
    assert [type(a) for a in got] == [Ack, Ack]

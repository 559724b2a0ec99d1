"""Acknowledgements that wait for the broker's PUBACK of our own state deltas, without the
consumer thread ever waiting for it (docs/adr/0006-ingester-scale-out.md, "The stall").

A scale-out member must not acknowledge a window before the broker holds the state delta that
carries the window's readings to the other members. It used to block the consumer thread on
that PUBACK. But the PUBACK is read by paho's network thread, and that thread can itself be
blocked on the consumer: in ``on_message`` while the consumer's queue is full or the held bytes
are over budget, both of which only the consumer relieves. Behind a backlog the PUBACK sits in
the socket after thousands of PUBLISH packets, so each thread waited for the other: a deadlock
that only the delta timeout broke, and the reconnect it triggered hung in ``loop_stop`` on the
same blocked thread.

So the consumer never waits. It publishes the delta, parks the window's messages here with the
publications they wait for, and goes on taking windows (which is what unblocks the network
thread). Between windows it calls :meth:`PendingAcks.settle`, which hands back, in order, the
windows whose deltas the broker has acknowledged. The PUBACK legitimately waits behind every
PUBLISH the broker wrote before it, however many (Mosquitto 2.0.11 sends a whole Receive
Maximum more per PUBACK while a backlog is queued), so the wait alone proves nothing. A delta
is given up (:meth:`overdue`) only when it has waited ``timeout_s`` *and* the broker has sent
nothing for ``timeout_s``: then the connection is dead, the member says so and reconnects, and
the parked windows, never acknowledged, are redelivered.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from operator import itemgetter
from typing import Generic, NamedTuple, Protocol, TypeVar

from cloud.ingest.decode import Message

M = TypeVar("M")


class Ack(NamedTuple):
    """What acknowledging a message needs, without its payload: parked windows must not hold
    payload bytes that ``held_max_bytes`` no longer counts."""

    mid: int
    qos: int
    #: the MQTT connection that delivered the message (acks go only to that one)
    generation: int


#: a Message's (mid, qos, generation), as an Ack, in C: no Python frame per message
_ACK_FIELDS = itemgetter(*(Message._fields.index(f) for f in Ack._fields))
_AS_ACK: Callable[[tuple[int, int, int]], Ack] = partial(tuple.__new__, Ack)


def acks_of(messages: Sequence[Message]) -> list[Ack]:
    """What acknowledging ``messages`` needs, without their payloads. (Built one
    ``Ack(m.mid, ...)`` at a time it was about 1 us per message, docs/adr/0029.)"""
    return list(map(_AS_ACK, map(_ACK_FIELDS, messages)))


class Publication(Protocol):
    """What :class:`PendingAcks` needs of a publication (paho's ``MQTTMessageInfo``)."""

    def is_published(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class _Parked(Generic[M]):
    since: float
    waits_for: tuple[Publication, ...]
    messages: tuple[M, ...]


class PendingAcks(Generic[M]):
    """Windows of messages waiting for publications (state deltas) the broker has to take
    first; first in, first out. Touched by the consumer thread only."""

    def __init__(self, *, timeout_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._timeout_s = timeout_s
        self._clock = clock
        self._parked: deque[_Parked[M]] = deque()

    def __len__(self) -> int:
        """Windows (or lone publications) still waiting."""
        return len(self._parked)

    def park(self, waits_for: Sequence[Publication], messages: Sequence[M]) -> None:
        """Hold ``messages`` until every one of ``waits_for`` is published (and every earlier
        parked window is settled). An empty ``messages`` only watches the publications."""
        self._parked.append(_Parked(self._clock(), tuple(waits_for), tuple(messages)))

    def settle(self) -> list[M]:
        """The messages, oldest first, whose publications the broker has acknowledged; they
        are forgotten here. Raises ``RuntimeError``/``ValueError`` (as paho's
        ``is_published``) if a publication failed: the connection is then lost."""
        out: list[M] = []
        while self._parked and all(p.is_published() for p in self._parked[0].waits_for):
            out.extend(self._parked.popleft().messages)
        return out

    def overdue(self, *, last_heard: float) -> bool:
        """True if the oldest parked publication has waited longer than ``timeout_s`` and the
        broker has sent nothing since ``last_heard`` (same clock) for as long."""
        now = self._clock()
        return (
            bool(self._parked)
            and now - self._parked[0].since > self._timeout_s
            and now - last_heard > self._timeout_s
        )

    def drop(self) -> int:
        """Forget everything parked (the connection is gone: those messages will be
        redelivered, never acknowledged); returns how many messages that was."""
        n = sum(len(p.messages) for p in self._parked)
        self._parked.clear()
        return n

"""The MQTT session's inbox: paho's network thread appends, the consumer takes windows in
arrival order, and what is held is counted until the window is released
(cloud/ingest/consumer.py). No broker: the callback is called as paho calls it."""

from __future__ import annotations

import threading
import time

import paho.mqtt.client as mqtt
from hypothesis import example, given, settings
from hypothesis import strategies as st

from cloud.ingest.consumer import MqttSession
from cloud.ingest.decode import Message
from cloud.ingest.metrics import IngestMetrics
from cloud.ingest.settings import IngestSettings


def _session(**settings: int) -> tuple[MqttSession, IngestMetrics]:
    metrics = IngestMetrics()
    session = MqttSession(
        settings=IngestSettings(**settings),  # type: ignore[arg-type]
        metrics=metrics,
        stop=threading.Event(),
        clock_ms=lambda: 1_234,
        state_topic=None,
    )
    session.generation = 1
    return session, metrics


def _message(mid: int, payload: bytes) -> mqtt.MQTTMessage:
    msg = mqtt.MQTTMessage(mid=mid, topic=b"pantau/v1/site-a/gw-1/reading")
    msg.payload = payload
    msg.qos = 1
    return msg


def _held_bytes(metrics: IngestMetrics) -> float:
    return metrics.registry.get_sample_value("pantau_ingest_held_bytes") or 0.0


def test_windows_come_out_in_arrival_order_and_held_bytes_count_until_released() -> None:
    session, metrics = _session(window_max_messages=2)
    for mid in (1, 2, 3):
        session._on_message(1, _message(mid, b"x" * (10 * mid)))
    first = session.collect(wait=False, idle=lambda: None)
    assert [(m.mid, m.payload, m.qos, m.generation, m.received_ms) for m in first] == [
        (1, b"x" * 10, 1, 1, 1_234),
        (2, b"x" * 20, 1, 1, 1_234),
    ]
    assert first[0].topic == "pantau/v1/site-a/gw-1/reading"
    assert [m.mid for m in session.collect(wait=False, idle=lambda: None)] == [3]
    assert _held_bytes(metrics) == 60
    assert metrics.held == 3
    session.release(30)
    assert _held_bytes(metrics) == 30


def test_a_full_window_is_collected_without_waiting_for_the_flush_interval() -> None:
    # With flush_interval_s at an hour, collect returns only because the window is full.
    session, _ = _session(window_max_messages=2, flush_interval_s=3600)
    session._on_message(1, _message(1, b"a"))
    session._on_message(1, _message(2, b"b"))
    assert [m.mid for m in session.collect(idle=lambda: None)] == [1, 2]


def test_the_rest_of_a_backlog_after_a_full_window_is_taken_without_the_flush_interval() -> None:
    """A drain ends with a partial window. After a full one, with nothing else to do, it is
    taken once the inbox stops growing, not after flush_interval_s (here an hour; before
    ADR 0040 the consumer idled out the whole 0.2 s at the end of every backlog)."""
    session, _ = _session(window_max_messages=2, flush_interval_s=3600)
    for mid in (1, 2, 3):
        session._on_message(1, _message(mid, b"x"))
    assert [m.mid for m in session.collect(idle=lambda: None)] == [1, 2]  # full
    rest: list[list[Message]] = []
    taker = threading.Thread(
        target=lambda: rest.append(session.collect(idle=lambda: None)), daemon=True
    )
    taker.start()
    taker.join(30)  # a bound for the failure, not a measured time: it returns or hangs
    assert not taker.is_alive()
    assert [[m.mid for m in w] for w in rest] == [[3]]


def test_the_rest_of_a_backlog_waits_while_windows_are_in_flight() -> None:
    """While ``idle`` still has windows in flight (it asks to be called again), the partial
    window is not taken: it fills until they are done, as before ADR 0040."""
    session, _ = _session(window_max_messages=2, flush_interval_s=3600)
    for mid in (1, 2, 3):
        session._on_message(1, _message(mid, b"x"))
    assert [m.mid for m in session.collect(idle=lambda: None)] == [1, 2]
    calls = 0

    def in_flight() -> float | None:
        nonlocal calls
        calls += 1
        if calls == 5:  # windows in flight for four polls, then the fourth message arrives
            session._on_message(1, _message(4, b"x"))
        return 0.02  # two dry spells per poll: were they counted, 3 would go alone

    assert [m.mid for m in session.collect(idle=in_flight)] == [3, 4]
    assert calls == 5


def test_a_trickle_still_waits_for_the_flush_interval_after_a_partial_window() -> None:
    """After a window closed by the flush interval (not full), a partial window is not
    taken early, however long the inbox stays dry: light traffic keeps its batching."""
    session, _ = _session(window_max_messages=2, flush_interval_s=3600)
    session._on_message(1, _message(1, b"x"))
    assert [m.mid for m in session.collect(wait=False, idle=lambda: None)] == [1]
    session._on_message(1, _message(2, b"x"))
    # The next message comes after ten of the dry spells that end a backlog (0.01 s); idle
    # has nothing to do, so only the network thread's wake-up for a full window ends the wait.
    later = threading.Timer(0.1, session._on_message, args=(1, _message(3, b"x")))
    later.start()
    try:
        assert [m.mid for m in session.collect(idle=lambda: None)] == [2, 3]
    finally:
        later.cancel()


def test_a_message_of_a_torn_down_connection_is_neither_held_nor_counted() -> None:
    session, metrics = _session()
    session._on_message(0, _message(1, b"late"))  # generation 0: no longer the connection
    assert session.collect(wait=False, idle=lambda: None) == []
    assert _held_bytes(metrics) == 0
    assert metrics.held == 0


def test_while_our_own_byte_budget_stops_reading_the_broker_counts_as_heard() -> None:
    """The ack watchdog reconnects when a state delta is unacknowledged and nothing came from
    the broker for 10 s. While the network thread waits for room in the held budget we read
    nothing, so that silence is ours: ``last_heard`` stays fresh until the thread reads again
    (before, a slow crash-suspect retry loop was taken for a dead link every 10 s)."""
    budget = 256 * 1024
    session, _ = _session(held_max_bytes=budget)
    session._on_message(1, _message(1, b"x" * (budget - 10)))
    session.last_heard = 0.0  # the broker was last heard long ago
    blocked = threading.Thread(
        target=session._on_message, args=(1, _message(2, b"y" * 100)), daemon=True
    )
    blocked.start()
    deadline = time.monotonic() + 10
    while session.last_heard == 0.0 and time.monotonic() < deadline:
        time.sleep(0.01)  # polling for the thread to reach its wait, not a delay
    assert session.last_heard > 0.0
    assert blocked.is_alive()  # still waiting for room: the budget is full
    [first] = session.collect(wait=False, idle=lambda: None)
    session.release(len(first.payload))
    blocked.join(10)
    assert not blocked.is_alive()
    assert [m.mid for m in session.collect(wait=False, idle=lambda: None)] == [2]


def _loop_cut(sizes: list[int], max_messages: int, max_bytes: int) -> int:
    """How many messages the consumer's message-by-message loop took (before ADR 0029)."""
    n = size = 0
    while n < len(sizes) and n < max_messages and size < max_bytes:
        size += sizes[n]
        n += 1
    return n


@settings(max_examples=300, deadline=None)
@given(
    payloads=st.lists(
        st.tuples(st.integers(0, 40), st.booleans()).map(
            lambda p: (b"{" + b"x" * (p[0] - 1)) if p[1] and p[0] else b"P" * p[0]
        ),
        max_size=25,
    ),
    max_messages=st.integers(1, 12),
    max_bytes=st.integers(1, 120),
    store_raw=st.booleans(),
)
@example(
    payloads=[b"x" * 5, b""], max_messages=3, max_bytes=5, store_raw=True
)  # at max, then empty
@example(payloads=[b"{" * 9, b"P"], max_messages=3, max_bytes=5, store_raw=False)  # JSON: 9 // 2
@example(payloads=[b"{" * 9, b"P"], max_messages=3, max_bytes=5, store_raw=True)  # in raw mode too
def test_windows_are_cut_exactly_where_the_message_by_message_loop_cut_them(
    payloads: list[bytes], max_messages: int, max_bytes: int, store_raw: bool
) -> None:
    """Taking a window without a loop per message gives the same windows, in the same order,
    with the same byte counts, as the loop did: at most max_messages, ending with the message
    that brings the window to max_bytes, where a JSON payload counts half its bytes in both
    modes (ADRs 0051, 0053), against the window and the held budget alike; what is left stays
    in the inbox, in order."""
    session, metrics = _session(store_raw=store_raw)
    for mid, payload in enumerate(payloads):
        session._on_message(1, _message(mid, payload))
    sizes = [len(p) // 2 if p[:1] == b"{" else len(p) for p in payloads]
    assert _held_bytes(metrics) == sum(sizes)
    rest = list(range(len(payloads)))
    while rest:
        window, size = session._take(max_messages, max_bytes)
        n = _loop_cut([sizes[m] for m in rest], max_messages, max_bytes)
        assert [m.mid for m in window] == rest[:n]
        assert size == sum(sizes[m] for m in rest[:n])
        assert all(type(m) is Message and m.generation == 1 for m in window)
        rest = rest[n:]
    assert session._take(max_messages, max_bytes) == ([], 0)

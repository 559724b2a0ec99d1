"""The publisher loop applies PUBACKs waiting on the uplink's deque before the network event
that followed them, so a batch acknowledged just before the link dropped is not sent again,
also while its delete waits for the loop's one spool write (ADR 0036)."""

from __future__ import annotations

from pathlib import Path

import orjson
import paho.mqtt.client as mqtt

from contract.payload import SensorKind
from edge.agent import EdgeAgent
from edge.config import EdgeSettings
from edge.mqtt import paho_client
from edge.reading import EdgeReading
from edge.spool import MemoryOutbox
from edge.uplink import UplinkEvent

T0 = 1_764_000_000_000


def _agent(tmp_path: Path) -> tuple[EdgeSettings, EdgeAgent]:
    """An agent on an in-memory spool, its serial port never opened."""
    settings = EdgeSettings(
        gateway_id="gw-01",
        site_id="rs-01",
        spool_path=tmp_path / "gw.spool",
        serial_ports={"bus0": "/dev/null"},
    )
    return settings, EdgeAgent(settings=settings, outbox=MemoryOutbox().open())


def test_a_puback_before_a_disconnect_is_counted_before_the_disconnect_drops_in_flight(
    tmp_path: Path,
) -> None:
    """One batch in flight; its PUBACK waits on the deque and a disconnect is on the loop's
    queue behind it. One wake-up of the loop: the batch is acked (1 batch, 2 readings, spool
    empty) and only then is the link dropped; nothing is left to resend."""
    settings, agent = _agent(tmp_path)
    up = agent._uplink
    client = paho_client(settings, b"")  # built, never connected: no I/O
    up._client, up.connected = client, True
    spool = agent._spool
    spool.put([EdgeReading(f"s-{i}", SensorKind.BED, T0 + i, i, {}) for i in range(2)])
    (pending,) = spool.take(limit=1)
    up.in_flight[7] = pending
    up._acks.append(UplinkEvent("puback", client, mid=7))
    agent._inbox.put(UplinkEvent("disconnect", client, reason="gone"))
    agent._collect(0.0)
    assert (up.counters["batches_acked"], up.counters["readings_acked"]) == (1, 2)
    assert (spool.depth(), up.connected, len(up.in_flight)) == (0, False, 0)


def test_a_batch_acknowledged_before_a_drop_is_not_sent_again_on_the_next_connection(
    tmp_path: Path,
) -> None:
    """Batches A and B in flight; A's PUBACK is accounted (its delete waits for the settle)
    and then the link drops. On the next connection only B goes again: A was acknowledged,
    even though the spool still holds it until the settle, which then leaves only B."""
    settings, agent = _agent(tmp_path)
    up, spool = agent._uplink, agent._spool
    published: list[int] = []

    def connect() -> mqtt.Client:
        client = paho_client(settings, b"")  # built, never connected: no I/O

        def publish(_topic: str, payload: bytes, **_kw: object) -> mqtt.MQTTMessageInfo:
            published.append(orjson.loads(payload)["seq"])
            return mqtt.MQTTMessageInfo(len(published))

        client.publish = publish  # type: ignore[method-assign,assignment]
        up._client, up.connected, up.maybe_pending = client, True, True
        return client

    a = spool.put([EdgeReading("s-0", SensorKind.BED, T0, 0, {})])
    b = spool.put([EdgeReading("s-0", SensorKind.BED, T0 + 1, 1, {})])
    client = connect()
    up.send_pending(spool, None)
    assert published == [a, b]
    up._acks.append(UplinkEvent("puback", client, mid=1))  # A's
    up.handle_acks()
    up.drop("gone")
    connect()
    up.send_pending(spool, None)
    assert published == [a, b, b]
    up.settle(spool)
    assert [p.seq for p in spool.take(limit=5)] == [b]

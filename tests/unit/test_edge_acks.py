"""The publisher loop applies PUBACKs waiting on the uplink's deque before the network event
that followed them, so a batch acknowledged just before the link dropped is not sent again."""

from __future__ import annotations

from pathlib import Path

from contract.payload import SensorKind
from edge.agent import EdgeAgent
from edge.config import EdgeSettings
from edge.mqtt import paho_client
from edge.reading import EdgeReading
from edge.spool import MemoryOutbox
from edge.uplink import UplinkEvent

T0 = 1_764_000_000_000


def test_a_puback_before_a_disconnect_is_counted_before_the_disconnect_drops_in_flight(
    tmp_path: Path,
) -> None:
    """One batch in flight; its PUBACK waits on the deque and a disconnect is on the loop's
    queue behind it. One wake-up of the loop: the batch is acked (1 batch, 2 readings, spool
    empty) and only then is the link dropped; nothing is left to resend."""
    settings = EdgeSettings(
        gateway_id="gw-01",
        site_id="rs-01",
        spool_path=tmp_path / "gw.spool",
        serial_ports={"bus0": "/dev/null"},
    )
    agent = EdgeAgent(settings=settings, outbox=MemoryOutbox().open())
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

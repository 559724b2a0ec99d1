"""The consumer learns that a write settled, or that the broker took a state delta, from a
wake-up, not from a poll (docs/adr/0041-guard-without-fsync-and-write-wake-ups.md)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest

from city import Registry
from cloud.ingest import service
from cloud.ingest.acks import Ack
from cloud.ingest.decode import Message
from contract.clock import now_ms
from pantau.services import InfluxDB, Mosquitto
from tests.ingest_support import ingester_thread, publisher, settings_for, wait_for
from tests.link_proxy_support import FreezingProxy
from tests.payload_support import KARIADI, batch, bed

pytestmark = pytest.mark.integration

#: Longer than the test's generous wait: a window acknowledged within it was woken, not polled.
NEVER_S = 3600.0


def test_a_window_is_acknowledged_when_its_writes_settle_without_any_poll(
    mosquitto: Mosquitto,
    influxdb: InfluxDB,
    city: Registry,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With the fallback poll and the flush interval both an hour, a one-message window whose
    rollup write InfluxDB's link held is still acknowledged once the link is lifted: its
    write settling, then the broker's PUBACK of its state delta, each wake the consumer.
    Exactly 2 PUBACKs go out for the 2 messages and the ingester holds 0."""
    monkeypatch.setattr(service, "_SETTLE_POLL_S", NEVER_S)
    proxy = FreezingProxy(target=(influxdb.host, influxdb.port))
    proxy.start()
    settings = settings_for(
        mosquitto,
        influxdb,
        tmp_path,
        influx_url=proxy.http_url,
        window_max_messages=1,
        flush_interval_s=NEVER_S,
    )
    t = now_ms()  # the current rollup bucket: a past one's rollups are written at once
    docs: list[dict[str, Any]] = [
        batch(
            "gw-kariadi",
            {**bed("bed-kariadi-icu", t + i, 24, 10 + i), "seq": 2 * i + 1},
            {**bed("bed-kariadi-hcu", t + i, 16, 7 + i), "seq": 2 * i + 2},
            seq=i + 1,
        )
        for i in range(2)
    ]
    acked: list[int] = []
    try:
        with ingester_thread(settings, city) as ing, publisher(mosquitto, "gw-kariadi") as gw:
            real_ack = ing._session.ack

            def recording_ack(window: Sequence[Message | Ack]) -> None:
                acked.extend(m.mid for m in window)
                real_ack(window)

            ing._session.ack = recording_ack  # type: ignore[method-assign]
            # The first window: the consumer sends its HELLO after it (the subscription was
            # granted while it waited), and the HELLO waits for every window it holds.
            gw.publish(KARIADI, orjson.dumps(docs[0]), qos=1).wait_for_publish(10)
            wait_for(lambda: len(acked) == 1, "the first window's acknowledgement")
            # The second: its writes are held at the proxy, so the consumer has nothing to
            # do but wait for them (it would poll again only after NEVER_S).
            proxy.hold()
            gw.publish(KARIADI, orjson.dumps(docs[1]), qos=1).wait_for_publish(10)
            assert proxy.holding.wait(20)
            proxy.lift()
            wait_for(lambda: len(acked) == 2, "the second window's acknowledgement", timeout=20)
            assert ing.metrics.held == 0
            # Stopping ends collect's wait only at its deadline (NEVER_S): wake it.
            ing.stop()
            ing._session.wake()
    finally:
        proxy.close()

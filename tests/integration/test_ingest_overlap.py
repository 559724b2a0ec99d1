"""Window k+1 is decoded while window k is written, and no window is acknowledged before its own
write settled, in order (docs/adr/0032-overlapped-window-writes.md)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest

from city import Registry
from cloud.influx import InfluxHTTP
from cloud.ingest.acks import Ack
from cloud.ingest.decode import Message
from contract.clock import now_ms
from pantau.services import InfluxDB, Mosquitto
from tests.ingest_support import ingester_thread, publisher, settings_for, wait_for
from tests.link_proxy_support import FreezingProxy
from tests.payload_support import KARIADI, batch, bed

pytestmark = pytest.mark.integration

ICU, HCU = "bed-kariadi-icu", "bed-kariadi-hcu"


def reading(sensor: str, ts: int, cap: int, occ: int, seq: int) -> dict[str, Any]:
    return {**bed(sensor, ts, cap, occ), "seq": seq}


def stored(influx: InfluxHTTP) -> set[tuple[str, int, int]]:
    """(sensor, ms, occupied) of every raw bed point."""
    got = influx.query("SELECT sensor, occupied FROM bed")
    return {(r["sensor"], r["time"], r["occupied"]) for s in got for r in s.rows()}


def test_window_k_plus_1_is_decoded_while_k_is_written_and_both_are_acked_in_order_after(
    mosquitto: Mosquitto, influxdb: InfluxDB, city: Registry, tmp_path: Path
) -> None:
    """InfluxDB's side of the link holds window k's write (one message, 2 readings): window
    k+1 (3 readings) is decoded meanwhile, yet neither is acknowledged nor counted stored.
    Once the write goes through, both windows are acknowledged, k's packet before k+1's,
    and InfluxDB holds exactly the 5 readings."""
    t = now_ms() - 60_000
    k = batch("gw-kariadi", reading(ICU, t, 24, 10, 1), reading(HCU, t, 16, 7, 2), seq=1)
    k1 = batch(
        "gw-kariadi",
        reading(ICU, t + 1000, 24, 11, 3),
        reading(HCU, t + 1000, 16, 8, 4),
        reading(ICU, t + 2000, 24, 12, 5),
        seq=2,
    )
    proxy = FreezingProxy(target=(influxdb.host, influxdb.port))
    proxy.start()
    settings = settings_for(
        mosquitto, influxdb, tmp_path, influx_url=proxy.http_url, window_max_messages=1
    )
    acked: list[int] = []
    try:
        with (
            ingester_thread(settings, city) as ing,
            publisher(mosquitto, "gw-kariadi") as gw,
            InfluxHTTP(url=influxdb.url, database="pantau") as influx,
        ):
            sample = ing.metrics.registry.get_sample_value
            real_ack = ing._session.ack

            def recording_ack(window: Sequence[Message | Ack]) -> None:
                acked.extend(m.mid for m in window)
                real_ack(window)

            ing._session.ack = recording_ack  # type: ignore[method-assign]
            # The loop's first freshness points go out before the hold (the next are 10 s
            # away): the only writes the proxy then holds are the windows'.
            wait_for(lambda: influx.query("SELECT * FROM region_freshness"), "freshness")
            proxy.hold()
            # Back to back, so k+1 reaches the ingester while it is busy with k (were the inbox
            # empty once k is submitted, the consumer would finish k before taking k+1).
            sent = [gw.publish(KARIADI, orjson.dumps(doc), qos=1) for doc in (k, k1)]
            for info in sent:
                info.wait_for_publish(10)
                assert info.is_published()

            wait_for(
                lambda: sample("pantau_ingest_readings_total") == 5 and proxy.holding.is_set(),
                "window k+1 decoded while window k's write is held",
                timeout=15,
            )
            assert sample("pantau_ingest_unacked_messages") == 2
            assert ing.windows == 0
            assert acked == []
            assert not sample("pantau_ingest_readings_stored_total")
            assert stored(influx) == set()

            proxy.lift()
            wait_for(
                lambda: ing.windows == 2 and sample("pantau_ingest_unacked_messages") == 0,
                "both windows stored and acknowledged",
            )
            assert len(acked) == 2
            assert acked == sorted(acked)  # k's packet id was given first: k is acked first
            assert sample("pantau_ingest_readings_stored_total") == 5
            assert stored(influx) == {
                (ICU, t, 10),
                (HCU, t, 7),
                (ICU, t + 1000, 11),
                (HCU, t + 1000, 8),
                (ICU, t + 2000, 12),
            }
    finally:
        proxy.close()

"""Window k+1 is decoded while window k is written (its raw points, then its rollups), and no
window is acknowledged before its own writes settled, in order
(docs/adr/0032-overlapped-window-writes.md)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as mqtt
import pytest

from city import Registry
from cloud.influx import InfluxHTTP
from cloud.ingest import Ingester
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


@dataclass
class HeldLink:
    """An ingester (one message per window) whose InfluxDB link a test can hold, a gateway
    publishing to it, and InfluxDB read directly; ``acked`` records the packet ids it
    acknowledges, in order. ``broker`` is the ingester's link to the broker."""

    ing: Ingester
    proxy: FreezingProxy
    broker: FreezingProxy
    gw: mqtt.Client
    influx: InfluxHTTP
    acked: list[int] = field(default_factory=list)

    def sample(self, name: str) -> float:
        return self.ing.metrics.registry.get_sample_value(name) or 0.0

    def publish_held(self, *docs: dict[str, Any]) -> None:
        """Hold the link, then hand ``docs`` to the ingester at once, so each next window is
        in its inbox while it is busy with the one before (were the inbox empty once a window
        is submitted, the consumer would finish that window before taking the next): the
        broker's deliveries wait at ``broker`` until all of them are there."""
        self.proxy.hold()
        self.broker.hold_answers()
        payloads = [orjson.dumps(doc) for doc in docs]
        sent = [self.gw.publish(KARIADI, payload, qos=1) for payload in payloads]
        for info in sent:
            info.wait_for_publish(10)
            assert info.is_published()
        # Every PUBLISH carries its topic and payload: fewer packets are fewer bytes.
        whole = sum(len(KARIADI) + len(payload) for payload in payloads)
        wait_for(lambda: self.broker.answers_waiting() >= whole, "the deliveries at the proxy")
        self.broker.lift()

    def lift_until_acknowledged(self, windows: int, what: str) -> None:
        """Let the held writes through and wait until ``windows`` windows were stored and
        acknowledged and nothing is held."""
        self.proxy.lift()
        wait_for(
            lambda: (
                self.ing.windows == windows and self.sample("pantau_ingest_unacked_messages") == 0
            ),
            what,
        )


@contextmanager
def held_link(
    mosquitto: Mosquitto, influxdb: InfluxDB, city: Registry, tmp_path: Path, **over: Any
) -> Iterator[HeldLink]:
    proxy = FreezingProxy(target=(influxdb.host, influxdb.port))
    proxy.start()
    broker = FreezingProxy(target=(mosquitto.host, mosquitto.port))
    broker.start()
    settings = settings_for(
        mosquitto,
        influxdb,
        tmp_path,
        influx_url=proxy.http_url,
        mqtt_url=broker.url,
        window_max_messages=1,
        **over,
    )
    try:
        with (
            ingester_thread(settings, city) as ing,
            publisher(mosquitto, "gw-kariadi") as gw,
            InfluxHTTP(url=influxdb.url, database="pantau") as influx,
        ):
            link = HeldLink(ing=ing, proxy=proxy, broker=broker, gw=gw, influx=influx)
            real_ack = ing._session.ack

            def recording_ack(window: Sequence[Message | Ack]) -> None:
                link.acked.extend(m.mid for m in window)
                real_ack(window)

            ing._session.ack = recording_ack  # type: ignore[method-assign]
            # The loop's first freshness points go out before any hold (the next are 10 s
            # away): the only writes the proxy then holds are the windows'.
            wait_for(lambda: influx.query("SELECT * FROM region_freshness"), "freshness")
            yield link
    finally:
        proxy.close()
        broker.close()


def windows_k_and_k1(t: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """Batches 1 (2 readings at ``t``) and 2 (3 readings at ``t`` + 1-2 s) of gw-kariadi:
    windows k and k+1 of the tests below."""
    k = batch("gw-kariadi", reading(ICU, t, 24, 10, 1), reading(HCU, t, 16, 7, 2), seq=1)
    k1 = batch(
        "gw-kariadi",
        reading(ICU, t + 1000, 24, 11, 3),
        reading(HCU, t + 1000, 16, 8, 4),
        reading(ICU, t + 2000, 24, 12, 5),
        seq=2,
    )
    return k, k1


def test_window_k_plus_1_is_decoded_while_k_is_written_and_both_are_acked_in_order_after(
    mosquitto: Mosquitto, influxdb: InfluxDB, city: Registry, tmp_path: Path
) -> None:
    """InfluxDB's side of the link holds window k's write (one message, 2 readings): window
    k+1 (3 readings) is decoded meanwhile, yet neither is acknowledged nor counted stored.
    Once the write goes through, both windows are acknowledged, k's packet before k+1's,
    and InfluxDB holds exactly the 5 readings."""
    t = now_ms() - 60_000
    k, k1 = windows_k_and_k1(t)
    with held_link(mosquitto, influxdb, city, tmp_path) as link:
        link.publish_held(k, k1)
        wait_for(
            lambda: (
                link.sample("pantau_ingest_readings_total") == 5 and link.proxy.holding.is_set()
            ),
            "window k+1 decoded while window k's write is held",
            timeout=15,
        )
        assert link.sample("pantau_ingest_unacked_messages") == 2
        assert link.ing.windows == 0
        assert link.acked == []
        assert link.sample("pantau_ingest_readings_stored_total") == 0
        assert stored(link.influx) == set()

        link.lift_until_acknowledged(2, "both windows stored and acknowledged")
        assert len(link.acked) == 2
        assert link.acked == sorted(link.acked)  # k's packet id was given first: k acked first
        assert link.sample("pantau_ingest_readings_stored_total") == 5
        assert stored(link.influx) == {
            (ICU, t, 10),
            (HCU, t, 7),
            (ICU, t + 1000, 11),
            (HCU, t + 1000, 8),
            (ICU, t + 2000, 12),
        }


def test_a_batch_repeated_while_its_first_copy_is_written_is_dropped_as_a_duplicate(
    mosquitto: Mosquitto, influxdb: InfluxDB, city: Registry, tmp_path: Path
) -> None:
    """A gateway resends batch 7 (2 readings) while the window of its first copy is still
    being written: the copy, decoded meanwhile, is dropped as a duplicate (as it would be once
    the first is acknowledged), both messages are acknowledged, and 2 points are stored."""
    t = now_ms() - 60_000
    doc = batch("gw-kariadi", reading(ICU, t, 24, 10, 1), reading(HCU, t, 16, 7, 2), seq=7)
    # A resend is stamped anew (and a byte-identical one would be a crash suspect, handled
    # alone: cloud/ingest/guard.py).
    resent = {**doc, "sent": doc["sent"] + 5000}
    with held_link(mosquitto, influxdb, city, tmp_path) as link:
        link.publish_held(doc, resent)
        wait_for(
            lambda: (
                link.sample("pantau_ingest_duplicates_dropped_total") == 1
                and link.proxy.holding.is_set()
            ),
            "the copy decoded while the first write is held",
            timeout=15,
        )
        assert link.sample("pantau_ingest_readings_total") == 2
        assert link.acked == []

        link.lift_until_acknowledged(2, "both copies acknowledged")
        assert len(link.acked) == 2
        assert link.sample("pantau_ingest_readings_stored_total") == 2
        assert stored(link.influx) == {(ICU, t, 10), (HCU, t, 7)}


#: No late-data history: rewriting past buckets would be a second (synchronous) write.
AGGREGATES_ONLY: dict[str, Any] = {"store_raw": False, "late_history_readings": 0}


def rollups_held(link: HeldLink) -> None:
    """Publish windows k (2 readings), k+1 (3) and k+2 (2) with the link held; return once
    k+2 is decoded and a write (k's rollups) waits at the proxy."""
    t = now_ms() - 60_000
    k, k1 = windows_k_and_k1(t)
    k2 = batch(
        "gw-kariadi", reading(HCU, t + 3000, 16, 9, 6), reading(ICU, t + 3000, 24, 13, 7), seq=3
    )
    link.publish_held(k, k1, k2)
    wait_for(
        lambda: link.sample("pantau_ingest_readings_total") == 7 and link.proxy.holding.is_set(),
        "window k+2 decoded while window k's rollup write is held",
        timeout=15,
    )


def site_rollup(influx: InfluxHTTP) -> list[tuple[int, int, int]]:
    """(capacity, occupied, sensors) of rs-kariadi's newest site rollup."""
    got = influx.query(
        "SELECT last(capacity) AS c, last(occupied) AS o, last(sensors) AS n FROM bed_rollup "
        "WHERE level = 'site' AND code = 'rs-kariadi' AND bed_type = 'all' AND facility = 'all'"
    )
    return [(r["c"], r["o"], r["n"]) for s in got for r in s.rows()]


def test_window_k_plus_2_is_decoded_while_k_s_rollups_are_written_and_all_are_acked_in_order(
    mosquitto: Mosquitto, influxdb: InfluxDB, city: Registry, tmp_path: Path
) -> None:
    """Aggregates only, so a window's one write is its rollups: InfluxDB's side of the link
    holds window k's rollup write (2 readings), and windows k+1 (3 readings) and k+2 (2) are
    decoded meanwhile, yet none of the 3 is acknowledged. Once the write goes through, all 3
    are acknowledged in arrival order and the site's rollup is exactly the last readings
    (capacity 24 + 16, occupied 13 + 9, 2 sensors)."""
    with held_link(mosquitto, influxdb, city, tmp_path, **AGGREGATES_ONLY) as link:
        rollups_held(link)
        assert link.sample("pantau_ingest_unacked_messages") == 3
        assert link.ing.windows == 0
        assert link.acked == []

        link.lift_until_acknowledged(3, "all three windows stored and acknowledged")
        assert len(link.acked) == 3
        assert link.acked == sorted(link.acked)  # acknowledged in the order they arrived
        assert site_rollup(link.influx) == [(40, 22, 2)]
        assert stored(link.influx) == set()  # aggregates only


def test_a_rollup_write_given_up_leaves_its_window_and_every_later_one_unacknowledged(
    mosquitto: Mosquitto, influxdb: InfluxDB, city: Registry, tmp_path: Path
) -> None:
    """Window k's rollup write is held while k+1 and k+2 are decoded; then InfluxDB goes away
    and the ingester is stopped, giving the write up: none of the 3 windows is acknowledged,
    so the broker hands all 3 (7 readings) to the next ingester, whose rollup is exact."""
    with held_link(mosquitto, influxdb, city, tmp_path, **AGGREGATES_ONLY) as link:
        rollups_held(link)
        link.proxy.cut()
    assert link.acked == []
    settings = settings_for(mosquitto, influxdb, tmp_path, **AGGREGATES_ONLY)
    with (
        ingester_thread(settings, city) as ing,
        InfluxHTTP(url=influxdb.url, database="pantau") as influx,
    ):
        sample = ing.metrics.registry.get_sample_value
        wait_for(
            lambda: sample("pantau_ingest_readings_total") == 7 and ing.metrics.held == 0,
            "the 3 messages redelivered and stored",
        )
        assert sample("pantau_ingest_messages_total") == 3
        assert sample("pantau_ingest_duplicates_dropped_total") == 0
        assert site_rollup(influx) == [(40, 22, 2)]


def test_windows_are_folded_while_a_rollup_write_is_held_and_one_write_then_carries_them_all(
    mosquitto: Mosquitto, influxdb: InfluxDB, city: Registry, tmp_path: Path
) -> None:
    """Aggregates only: InfluxDB's side of the link holds window k's rollup write, and
    windows k+1, k+2 and k+3 are decoded *and folded into the state* meanwhile (the consumer
    never waits for a rollup write), yet none of the 4 is acknowledged. Once k's write goes
    through, exactly one more rollup write carries the cells k+1..k+3 changed; all 4 windows
    are then acknowledged in arrival order and the site's rollup is the last readings
    (capacity 24 + 16, occupied 14 + 10, 2 sensors). ADR 0038."""
    t = now_ms() - 60_000
    k, k1 = windows_k_and_k1(t)
    k2 = batch(
        "gw-kariadi", reading(HCU, t + 3000, 16, 9, 6), reading(ICU, t + 3000, 24, 13, 7), seq=3
    )
    k3 = batch(
        "gw-kariadi", reading(HCU, t + 4000, 16, 10, 8), reading(ICU, t + 4000, 24, 14, 9), seq=4
    )
    with held_link(mosquitto, influxdb, city, tmp_path, **AGGREGATES_ONLY) as link:
        ing = link.ing
        icu, hcu = ing.index.sensor_ids.index(ICU), ing.index.sensor_ids.index(HCU)
        link.publish_held(k, k1, k2, k3)
        wait_for(
            lambda: (
                ing.state is not None
                and int(ing.state.ts[icu]) == t + 4000
                and int(ing.state.ts[hcu]) == t + 4000
                and link.proxy.holding.is_set()
            ),
            "windows k+1..k+3 folded while window k's rollup write is held",
            timeout=15,
        )
        assert link.sample("pantau_ingest_readings_total") == 9
        assert link.sample("pantau_ingest_unacked_messages") == 4
        assert ing.windows == 0
        assert link.acked == []

        link.lift_until_acknowledged(4, "all four windows stored and acknowledged")
        assert len(link.acked) == 4
        assert link.acked == sorted(link.acked)  # acknowledged in the order they arrived
        pipeline = ing._pipeline
        assert pipeline is not None
        assert pipeline.rollup_writes.covering == 2  # k's, then one for k+1..k+3
        assert site_rollup(link.influx) == [(40, 24, 2)]


def test_a_window_arriving_while_the_last_one_s_rollup_write_is_held_is_decoded_at_once(
    mosquitto: Mosquitto, influxdb: InfluxDB, city: Registry, tmp_path: Path
) -> None:
    """Aggregates only: window k (2 readings) is alone, so the consumer, waiting for
    messages, finishes it and its rollup write is held. Window k+1 (3 readings) published
    then is decoded while that write is still held (waiting for messages never waits for a
    write), and neither is acknowledged; once the write goes through both are, in order."""
    t = now_ms() - 60_000
    k, k1 = windows_k_and_k1(t)
    with held_link(mosquitto, influxdb, city, tmp_path, **AGGREGATES_ONLY) as link:
        link.proxy.hold()
        link.gw.publish(KARIADI, orjson.dumps(k), qos=1).wait_for_publish(10)
        wait_for(
            lambda: (
                link.sample("pantau_ingest_readings_total") == 2 and link.proxy.holding.is_set()
            ),
            "window k's rollup write held",
            timeout=15,
        )
        link.gw.publish(KARIADI, orjson.dumps(k1), qos=1).wait_for_publish(10)
        wait_for(
            lambda: link.sample("pantau_ingest_readings_total") == 5,
            "window k+1 decoded while window k's rollup write is held",
            timeout=15,
        )
        assert link.proxy.holding.is_set()
        assert link.acked == []

        link.lift_until_acknowledged(2, "both windows stored and acknowledged")
        assert len(link.acked) == 2
        assert link.acked == sorted(link.acked)
        assert site_rollup(link.influx) == [(40, 20, 2)]

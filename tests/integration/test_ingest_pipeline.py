"""The ingester against a real Mosquitto and a real InfluxDB."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from city import Registry
from cloud.influx import InfluxHTTP
from cloud.ingest import DeadLetterStore
from contract import MAX_FUTURE_SKEW_MS, MAX_PAYLOAD_BYTES, RejectReason
from pantau.paths import ROOT
from pantau.services import InfluxDB, Mosquitto
from tests.ingest_process_support import ingest_env
from tests.ingest_support import ingester_thread, now_ms, publish, publisher, settings_for, wait_for
from tests.payload_support import KARIADI, batch, bed

pytestmark = pytest.mark.integration


def rows(influx: InfluxHTTP, q: str) -> list[dict[str, Any]]:
    return [r for s in influx.query(q) for r in s.rows()]


def test_valid_data_is_stored_and_each_bad_input_is_dead_lettered_once(
    mosquitto: Mosquitto, influxdb: InfluxDB, city: Registry, tmp_path: Path
) -> None:
    settings = settings_for(mosquitto, influxdb, tmp_path)
    t = now_ms() - 60_000
    bad: dict[RejectReason, tuple[str, bytes]] = {
        RejectReason.INVALID_JSON: (KARIADI, b'{"v": 1, "gw": '),
        RejectReason.UNSUPPORTED_VERSION: (
            KARIADI,
            orjson.dumps({**batch("gw-kariadi", bed("bed-kariadi-icu", t, 24, 1)), "v": 2}),
        ),
        RejectReason.UNKNOWN_GATEWAY: (
            "pantau/v1/rs-kariadi/gw-ghost/readings",
            orjson.dumps(batch("gw-ghost", bed("bed-kariadi-icu", t, 24, 1))),
        ),
        RejectReason.UNKNOWN_SENSOR: (
            KARIADI,
            orjson.dumps(
                batch("gw-kariadi", bed("bed-nope", t, 5, 1), bed("bed-kariadi-hcu", t, 16, 9))
            ),
        ),
        RejectReason.OVERSIZE: (
            KARIADI,
            b'{"v": 1, "pad": "' + b"x" * (MAX_PAYLOAD_BYTES + 10) + b'"}',
        ),
        RejectReason.NON_FINITE: (
            KARIADI,
            orjson.dumps(batch("gw-kariadi", bed("bed-kariadi-icu", t, 24, 1))).replace(
                b'"occupied":1', b'"occupied":NaN'
            ),
        ),
        RejectReason.NEGATIVE_COUNT: (
            KARIADI,
            orjson.dumps(batch("gw-kariadi", bed("bed-kariadi-icu", t, 24, -1))),
        ),
        RejectReason.OCCUPIED_EXCEEDS_CAPACITY: (
            KARIADI,
            orjson.dumps(batch("gw-kariadi", bed("bed-kariadi-icu", t, 24, 25))),
        ),
        RejectReason.FUTURE_TIMESTAMP: (
            KARIADI,
            orjson.dumps(
                batch(
                    "gw-kariadi",
                    bed("bed-kariadi-icu", now_ms() + MAX_FUTURE_SKEW_MS + 60_000, 24, 1),
                )
            ),
        ),
    }
    assert b"NaN" in bad[RejectReason.NON_FINITE][1]
    assert MAX_PAYLOAD_BYTES < len(bad[RejectReason.OVERSIZE][1]) < 270_000
    good = batch(
        "gw-kariadi",
        bed("bed-kariadi-icu", t, 24, 18),
        {
            "sensor": "q-kariadi-poli",
            "kind": "queue",
            "ts": t,
            "seq": 9,
            "values": {"issued": 120, "served": 100, "counters_open": 4},
        },
    )
    single = {
        "v": 1,
        "sensor": "q-candisari",
        "kind": "queue",
        "ts": t,
        "seq": 3,
        "values": {"issued": 40, "served": 31, "counters_open": 2},
    }
    with (
        ingester_thread(settings, city) as ing,
        publisher(mosquitto, "gw-kariadi") as kariadi,
        publisher(mosquitto, "gw-ghost", site="rs-kariadi") as ghost,
        publisher(mosquitto, "kiosk-candisari") as kiosk,
    ):
        published_at = time.time()
        publish(kariadi, KARIADI, good)
        for topic, payload in bad.values():
            publish(ghost if "gw-ghost" in topic else kariadi, topic, payload)
        publish(kiosk, "pantau/v1/kec-candisari/kiosk-candisari/reading", single)
        store = DeadLetterStore(directory=settings.dead_letter_dir)
        wait_for(lambda: len(list(store.read())) >= len(bad), "dead letters")
        influx = InfluxHTTP(url=influxdb.url, database="pantau").start()
        wait_for(lambda: rows(influx, "SELECT * FROM queue WHERE sensor = 'q-candisari'"), "single")
        wait_for(lambda: rows(influx, "SELECT * FROM bed WHERE sensor = 'bed-kariadi-hcu'"), "hcu")
        records = list(store.read())
        payloads = store.payloads({r.fingerprint for r in records})
        metrics = ing.metrics.registry

    assert sorted(r.reason for r in records) == sorted(r.value for r in bad)
    for rec in records:
        topic, payload = bad[RejectReason(rec.reason)]
        assert rec.topic == topic
        assert payloads[rec.fingerprint] == (topic, payload)
        assert (
            metrics.get_sample_value("pantau_ingest_dead_letters_total", {"reason": rec.reason})
            == 1.0
        )
    by_reason = {r.reason: r for r in records}
    assert by_reason["unknown_sensor"].index == 0
    assert by_reason["oversize"].index is None
    assert by_reason["unknown_gateway"].gateway == "gw-ghost"

    assert rows(influx, "SELECT * FROM bed WHERE sensor = 'bed-kariadi-icu'") == [
        {
            "time": t,
            "capacity": 24,
            "occupied": 18,
            "suspect": 1,
            "confirmed": 2,
            "waiting": 3,
            "seq": 5,
            # the sensor is the raw point's only tag; its place is the registry's (ADR 0028)
            "sensor": "bed-kariadi-icu",
        }
    ]
    q = rows(influx, "SELECT * FROM queue GROUP BY sensor")
    assert sorted((r["issued"], r["served"], r["counters_open"], r["seq"]) for r in q) == [
        (40, 31, 2, 3),
        (120, 100, 4, 9),
    ]
    assert {k for r in q for k in r} == {
        "time",
        "sensor",
        "issued",
        "served",
        "counters_open",
        "seq",
    }
    site = rows(
        influx,
        "SELECT last(capacity) AS c, last(occupied) AS o, last(sensors) AS n FROM bed_rollup "
        "WHERE level = 'site' AND code = 'rs-kariadi' AND bed_type = 'all' AND facility = 'all'",
    )
    assert [(r["c"], r["o"], r["n"]) for r in site] == [(24 + 16, 18 + 9, 2)]
    dl = rows(influx, "SELECT sum(count) FROM dead_letter")
    assert dl[0]["sum"] == len(bad)
    assert metrics.get_sample_value("pantau_ingest_readings_stored_total") == 4.0
    # the ingester times its own progress (the capacity bench reads a drain's end there)
    for name in ("last_stored", "last_folded"):
        at = metrics.get_sample_value(f"pantau_ingest_{name}_timestamp_seconds")
        assert at is not None
        assert published_at <= at <= time.time()
    influx.close()


def _start_ingester(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as fh:
        return subprocess.Popen(
            [sys.executable, "-m", "cloud.ingest", "run"],
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )


def _metric(port: int, name: str) -> float:
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=1).text
    except httpx.HTTPError:
        return -1.0
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return -1.0


def test_messages_are_acked_only_after_storage_and_state_survives_restart(
    mosquitto: Mosquitto, influxdb: InfluxDB, tmp_path: Path
) -> None:
    """InfluxDB down: the message waits unacknowledged; a restarted ingester (same client id)
    gets it again and stores it, with rollups that include state bootstrapped from InfluxDB."""
    env = ingest_env(mosquitto, influxdb, tmp_path)
    port = int(env["PANTAU_METRICS_PORT"])
    log = tmp_path / "ingest.log"
    t = now_ms() - 30_000
    influx = InfluxHTTP(url=influxdb.url, database="pantau").start()
    proc = _start_ingester(env, log)
    try:
        with publisher(mosquitto, "gw-kariadi") as gw:
            wait_for(lambda: _metric(port, "pantau_ingest_subscribed") == 1.0, "subscribed")
            publish(gw, KARIADI, batch("gw-kariadi", bed("bed-kariadi-icu", t, 24, 10)))
            wait_for(lambda: rows(influx, "SELECT * FROM bed"), "first reading stored")

            influxdb.stop()
            publish(gw, KARIADI, batch("gw-kariadi", bed("bed-kariadi-hcu", t, 16, 7), seq=2))
            wait_for(lambda: _metric(port, "pantau_ingest_write_retrying") == 1.0, "retrying")
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(20) == 0, log.read_text()

            influxdb.start()
            assert rows(influx, "SELECT * FROM bed WHERE sensor = 'bed-kariadi-hcu'") == []
            proc = _start_ingester(env, log)
            stored = wait_for(
                lambda: rows(influx, "SELECT occupied FROM bed WHERE sensor = 'bed-kariadi-hcu'"),
                "redelivered reading stored",
            )
            assert [r["occupied"] for r in stored] == [7]
            # The raw point is written before the window's rollups, and the first run's rollup
            # (one sensor) sits in the same bucket: wait for the rewrite, not for any row.
            site = wait_for(
                lambda: [
                    r
                    for r in rows(
                        influx,
                        "SELECT last(capacity) AS c, last(sensors) AS n FROM bed_rollup WHERE "
                        "level = 'kota' AND bed_type = 'all' AND facility = 'all'",
                    )
                    if r["n"] != 1
                ],
                "rollup rewritten with the redelivered sensor",
            )
            assert [(r["c"], r["n"]) for r in site] == [(24 + 16, 2)]
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(20) == 0, log.read_text()
        influx.close()


def test_readings_in_the_same_millisecond_stay_distinct_and_redelivery_overwrites(
    mosquitto: Mosquitto, influxdb: InfluxDB, city: Registry, tmp_path: Path
) -> None:
    """Two readings of one ward stamped in the same ms (a sensor catching up, or a coarse
    clock) are both stored; the same batch delivered twice is stored once."""
    t = now_ms() - 10_000
    first = {**bed("bed-kariadi-icu", t, 24, 10), "seq": 41}
    second = {**bed("bed-kariadi-icu", t, 24, 11), "seq": 42}
    doc = batch("gw-kariadi", first, second, seq=7)
    with (
        ingester_thread(settings_for(mosquitto, influxdb, tmp_path), city) as ing,
        publisher(mosquitto, "gw-kariadi") as client,
        InfluxHTTP(url=influxdb.url, database="pantau") as influx,
    ):
        publish(client, KARIADI, doc)
        publish(client, KARIADI, doc)  # an at-least-once redelivery
        sample = ing.metrics.registry.get_sample_value

        def both_handled() -> bool:
            # both copies went through a window and were acknowledged (after storage)
            return (
                sample("pantau_ingest_messages_total") == 2
                and sample("pantau_ingest_unacked_messages") == 0
            )

        wait_for(both_handled, "both copies stored or dropped, and acknowledged")
        stored = rows(influx, "SELECT occupied, seq FROM bed WHERE sensor = 'bed-kariadi-icu'")
    assert sorted((r["seq"], r["occupied"]) for r in stored) == [(41, 10), (42, 11)]
    assert {r["time"] for r in stored} == {t}  # both read back at their observation ms

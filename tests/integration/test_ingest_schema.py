"""docs/schema.md made real on InfluxDB 1.6: retention policies, downsampling continuous queries
(created once, idempotently, and producing the documented points) and the series budget."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from city import Registry
from cloud.influx import InfluxHTTP, format_line, ident, series_key
from cloud.ingest import Ingester, IngestSettings
from cloud.ingest.schema import DOWNSAMPLE, StorageSchema, series_budget
from contract import Channel, topics
from pantau.paths import ROOT
from pantau.services import InfluxDB, Mosquitto
from tests.ingest_support import make_stream, now_ms, publishing, raw_count, wait_for

pytestmark = pytest.mark.integration


def init_db(influxdb: InfluxDB, **extra: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PANTAU_INFLUX_URL": influxdb.url, "PANTAU_INFLUX_DB": "pantau", **extra}
    return subprocess.run(
        [str(Path(sys.executable).with_name("pantau")), "ingest", "init-db"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )


def test_init_db_creates_policies_and_queries_once_and_a_query_downsamples(
    influxdb: InfluxDB,
) -> None:
    """``pantau ingest init-db`` creates the retention policies and one continuous query per
    downsampled measurement; a second run changes nothing; a changed setting alters the
    policy and replaces the queries; a query's SELECT INTO yields the documented points."""
    first = init_db(influxdb)
    again = init_db(influxdb)
    assert len(first.stdout.splitlines()) == 2 + len(DOWNSAMPLE)
    assert again.stdout == ""
    assert "pantau: 0 statement(s) applied" in again.stderr

    with InfluxHTTP(url=influxdb.url, database="pantau") as influx:
        policies = [
            r for s in influx.query('SHOW RETENTION POLICIES ON "pantau"') for r in s.rows()
        ]
        assert policies == [
            {
                "name": "autogen",
                "duration": "720h0m0s",
                "shardGroupDuration": "24h0m0s",
                "replicaN": 1,
                "default": True,
            },
            {
                "name": "downsampled",
                "duration": "17520h0m0s",
                "shardGroupDuration": "168h0m0s",
                "replicaN": 1,
                "default": False,
            },
            # The version marker's own policy (cloud/ingest/migrations/influx.py): never expires.
            {
                "name": "pantau_meta",
                "duration": "0s",
                "shardGroupDuration": "168h0m0s",
                "replicaN": 1,
                "default": False,
            },
        ]
        schema = StorageSchema(database="pantau")
        cqs = {r["name"] for s in influx.query("SHOW CONTINUOUS QUERIES") for r in s.rows()}
        assert cqs == {cq.name for cq in schema.continuous_queries}

        # One rollup series, three flushes inside one 5-minute bucket, one in the next.
        bucket = (now_ms() // 300_000 - 2) * 300_000
        key = series_key(
            "bed_rollup",
            {"level": "kota", "code": "33.74", "name": "Kota Semarang", "bed_type": "all",
             "facility": "all"},
        )  # fmt: skip
        points = [(10, 7, 70.0, 0), (10, 9, 90.0, 60_000), (10, 8, 80.0, 120_000)]
        lines = [
            format_line(key, {"capacity": c, "occupied": o, "bor": b, "sensors": 2}, bucket + dt)
            for c, o, b, dt in points
        ]
        lines.append(
            format_line(key, {"capacity": 10, "occupied": 1, "sensors": 2}, bucket + 300_000)
        )
        dead = series_key("dead_letter", {"reason": "negative_count", "gateway": "gw-a"})
        lines += [
            format_line(dead, {"count": 1, "topic": "t", "detail": "d"}, bucket + i)
            for i in range(4)
        ]
        influx.write(lines)
        by_name = {cq.measurement: cq for cq in schema.continuous_queries}
        influx.execute(
            [
                by_name[m].select_between(bucket, bucket + 600_000)
                for m in ("bed_rollup", "dead_letter")
            ]
        )
        target = f"{ident('downsampled')}.{ident('bed_rollup')}"
        rollup = influx.query(f"SELECT * FROM {target} GROUP BY *")  # noqa: S608
        target = f"{ident('downsampled')}.{ident('dead_letter')}"
        count = influx.query(f"SELECT * FROM {target}")  # noqa: S608

    (series,) = rollup
    assert series.tags == {
        "level": "kota", "code": "33.74", "name": "Kota Semarang", "bed_type": "all",
        "facility": "all",
    }  # fmt: skip
    # Fields without a value in the bucket (here: never written) are not written either.
    assert series.rows() == [
        {
            **series.tags,
            "time": bucket,
            "capacity": 10,
            "occupied": 8,
            "occupied_max": 9,
            "sensors": 2,
            "bor": 80.0,
            "bor_max": 90.0,
        },
        {
            **series.tags,
            "time": bucket + 300_000,
            "capacity": 10,
            "occupied": 1,
            "occupied_max": 1,
            "sensors": 2,
            "bor": None,
            "bor_max": None,
        },
    ]
    assert [(r["time"], r["count"], r["reason"]) for s in count for r in s.rows()] == [
        (bucket, 4, "negative_count")
    ]

    changed = init_db(influxdb, PANTAU_INFLUX_RETENTION="2d", PANTAU_INFLUX_DOWNSAMPLE_EVERY="1m")
    out = changed.stdout.splitlines()
    assert (
        out[0]
        == 'ALTER RETENTION POLICY "autogen" ON "pantau" DURATION 2d SHARD DURATION 1d DEFAULT'
    )
    assert sum(s.startswith("DROP CONTINUOUS QUERY") for s in out) == len(DOWNSAMPLE)
    assert sum(s.startswith("CREATE CONTINUOUS QUERY") for s in out) == len(DOWNSAMPLE)


def test_the_demo_citys_series_count_is_the_budget_formulas(
    mosquitto: Mosquitto, influxdb: InfluxDB, city: Registry, tmp_path: Path
) -> None:
    """Every sensor of the demo city reports; InfluxDB's own series count per measurement is
    exactly what docs/schema.md's formula (``series_budget``) predicts from the registry."""
    gateways = [g.id for g in city.doc.gateways]
    stream = make_stream(city, gateways, batches=2, t0=now_ms() - 30_000)
    settings = IngestSettings.model_validate(
        {
            "mqtt_url": mosquitto.url,
            "influx_url": influxdb.url,
            "dead_letter_dir": tmp_path / "dead",
            "flush_interval_s": 0.05,
            "store_raw": True,
        }
    )
    ing = Ingester(settings=settings, registry=city)
    thread = threading.Thread(target=ing.run, name="ingest-budget", daemon=True)
    thread.start()
    try:
        assert ing.ready.wait(20)
        with (
            publishing(mosquitto, gateways) as pub,
            InfluxHTTP(url=influxdb.url, database="pantau") as influx,
        ):
            for msg in stream.messages:
                assert msg.topic == topics.build(
                    city.gateways[msg.gateway].site, msg.gateway, Channel.READINGS
                )
                pub.publish(msg)
            wait_for(lambda: raw_count(influx) == len(stream.rows), "every reading stored")
            wait_for(lambda: ing.metrics.held == 0, "every message acknowledged")
            measured = {}
            for m in series_budget(city):
                (s,) = influx.query(f"SHOW SERIES EXACT CARDINALITY FROM {ident(m)}")
                measured[m] = int(s.values[0][0])
                listed = influx.query(f"SHOW SERIES FROM {ident(m)}")
                assert sum(len(x.values) for x in listed) == measured[m], m
    finally:
        ing.stop()
        thread.join(20)
        assert not thread.is_alive()
    assert measured == series_budget(city)
    assert measured == {
        "bed": 21,
        "crowd": 6,
        "queue": 3,
        "bed_rollup": 237,
        "crowd_site": 4,
        "queue_site": 3,
    }

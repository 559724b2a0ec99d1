"""Delivery semantics of the ingester against a real Mosquitto and a real InfluxDB: binary
batches, duplicate batches, aggregates-only mode, partial writes, and late data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from city import Registry
from cloud.influx import InfluxHTTP
from cloud.ingest import CityIndex, DeadLetterStore
from cloud.ingest.writer import PRECISION
from contract import KIND_CODES, RejectReason, SensorKind, encode_binary_batch
from pantau.services import InfluxDB, Mosquitto
from tests.ingest_support import ingester_thread, now_ms, publish, publisher, settings_for, wait_for

pytestmark = pytest.mark.integration

KARIADI = "pantau/v1/rs-kariadi/gw-kariadi/readings"
WONGSO = "pantau/v1/rsud-wongsonegoro/gw-wongsonegoro/readings"
WONGSO_BEDS = ["bed-wongso-icu", "bed-wongso-hcu", "bed-wongso-iso", "bed-wongso-k2"]
KARIADI_BEDS = ["bed-kariadi-icu", "bed-kariadi-icu-np", "bed-kariadi-hcu", "bed-kariadi-iso"]
MINUTE = 60_000


def rows(influx: InfluxHTTP, q: str) -> list[dict[str, Any]]:
    return [r for s in influx.query(q) for r in s.rows()]


def bed_values(i: int) -> list[int]:
    """capacity, occupied, suspect, confirmed, waiting of the i-th test reading (valid)."""
    cap = 20 + i % 7
    occ = i % (cap + 1)
    return [cap, occ, min(occ, 1), 0, i % 3]


def bed_json(sensor: str, ts: int, seq: int, v: list[int]) -> dict[str, Any]:
    names = ("capacity", "occupied", "suspect", "confirmed", "waiting")
    return {
        "sensor": sensor,
        "kind": "bed",
        "ts": ts,
        "seq": seq,
        "values": dict(zip(names, v, strict=True)),
    }


def binary_batch(gw: str, seq: int, readings: list[tuple[str, int, int, list[int]]]) -> bytes:
    sensors = sorted({r[0] for r in readings})
    return encode_binary_batch(
        gw=gw,
        seq=seq,
        sent=now_ms(),
        sensors=sensors,
        kinds=[KIND_CODES[SensorKind.BED]] * len(sensors),
        sensor=[sensors.index(r[0]) for r in readings],
        ts=[r[1] for r in readings],
        reading_seq=[r[2] for r in readings],
        values=[r[3] for r in readings],
    )


def test_binary_batches_are_stored_like_json_and_duplicates_are_dropped(
    mosquitto: Mosquitto, influxdb: InfluxDB, city: Registry, tmp_path: Path
) -> None:
    """A binary batch's readings land as raw points exactly like a JSON batch's; the same
    batch published again (a gateway resending after a lost PUBACK) is dropped and counted;
    a bad reading inside a binary batch is dead-lettered with its index."""
    t0 = now_ms() - 30_000
    binary = [(s, t0 + i, i, bed_values(i)) for i, s in enumerate(WONGSO_BEDS * 5)]
    binary[7] = (binary[7][0], binary[7][1], 7, [3, 4, 0, 0, 0])  # occupied > capacity
    as_json = {
        "v": 1,
        "gw": "gw-kariadi",
        "seq": 1,
        "sent": now_ms(),
        "readings": [bed_json(s, t0 + i, i, bed_values(i)) for i, s in enumerate(KARIADI_BEDS)],
    }
    payload = binary_batch("gw-wongsonegoro", 41, binary)
    settings = settings_for(mosquitto, influxdb, tmp_path)
    with (
        ingester_thread(settings, city) as ing,
        publisher(mosquitto, "gw-wongsonegoro") as wongso,
        publisher(mosquitto, "gw-kariadi") as kariadi,
        InfluxHTTP(url=influxdb.url, database="pantau") as influx,
    ):
        publish(wongso, WONGSO, payload)
        publish(kariadi, KARIADI, as_json)
        wait_for(lambda: ing.metrics.readings_stored._value.get() == 19 + 4, "23 stored")
        publish(wongso, WONGSO, payload)  # the same batch again
        publish(kariadi, KARIADI, as_json)
        wait_for(lambda: ing.metrics.duplicates._value.get() == 2, "2 duplicates counted")
        stored = rows(influx, "SELECT * FROM bed GROUP BY sensor")
        assert ing.metrics.readings_stored._value.get() == 23
    got = sorted((r["sensor"], r["time"], r["capacity"], r["occupied"], r["seq"]) for r in stored)
    want = sorted(
        [(s, t, v[0], v[1], q) for s, t, q, v in binary if q != 7]
        + [(s, t0 + i, *bed_values(i)[:2], i) for i, s in enumerate(KARIADI_BEDS)]
    )
    assert got == want
    dead = list(DeadLetterStore(directory=settings.dead_letter_dir).read())
    assert [(d.reason, d.index, d.gateway) for d in dead] == [
        (RejectReason.OCCUPIED_EXCEEDS_CAPACITY, 7, "gw-wongsonegoro")
    ]


def test_aggregates_only_mode_stores_rollups_but_no_raw_points(
    mosquitto: Mosquitto, influxdb: InfluxDB, city: Registry, tmp_path: Path
) -> None:
    t0 = now_ms() - 10_000
    readings = [(s, t0 + i, i, bed_values(i)) for i, s in enumerate(WONGSO_BEDS)]
    readings.append(("bed-wongso-icu", t0 + 99, 99, [2, 5, 0, 0, 0]))  # refused
    settings = settings_for(mosquitto, influxdb, tmp_path, store_raw=False)
    with (
        ingester_thread(settings, city) as ing,
        publisher(mosquitto, "gw-wongsonegoro") as wongso,
        InfluxHTTP(url=influxdb.url, database="pantau") as influx,
    ):
        publish(wongso, WONGSO, binary_batch("gw-wongsonegoro", 1, readings))
        q = (
            "SELECT capacity, occupied, sensors FROM bed_rollup WHERE \"level\" = 'site' "
            "AND code = 'rsud-wongsonegoro' AND bed_type = 'all' AND facility = 'all'"
        )
        wait_for(lambda: rows(influx, q) and ing.metrics.held == 0, "the site rollup")
        got = rows(influx, q)
        assert ing.metrics.readings_stored._value.get() == 0
        assert rows(influx, "SELECT * FROM bed") == []
    # one point in the current bucket; two if a minute began since t0 (the readings are then
    # late for the current bucket, and the past one is rewritten as well): the same values
    want = (sum(bed_values(i)[0] for i in range(4)), sum(bed_values(i)[1] for i in range(4)), 4)
    assert 1 <= len(got) <= 2
    assert {(r["capacity"], r["occupied"], r["sensors"]) for r in got} == {want}
    dead = list(DeadLetterStore(directory=settings.dead_letter_dir).read())
    assert [(d.reason, d.index) for d in dead] == [(RejectReason.OCCUPIED_EXCEEDS_CAPACITY, 4)]


def test_field_type_conflict_in_a_batch_stored_plus_dead_lettered_is_the_batch_size(
    mosquitto: Mosquitto, influxdb: InfluxDB, city: Registry, tmp_path: Path
) -> None:
    """InfluxDB refuses the readings of a batch that fall in a shard where ``occupied`` is a
    float (another writer's mistake); the rest of the batch is stored, the refused ones are
    dead-lettered as storage_rejected, and nothing is lost or counted twice."""
    now = now_ms()
    old = now - 3 * 24 * 3600 * 1000  # another day: another shard
    recent = now - 20_000
    readings = [bed_json(s, old + i, i, bed_values(i)) for i, s in enumerate(KARIADI_BEDS)]
    readings += [bed_json(s, recent + i, 10 + i, bed_values(i)) for i, s in enumerate(WONGSO_BEDS)]
    readings[2]["sensor"] = "bed-kariadi-iso"  # two conflicting readings of one sensor
    readings += [
        bed_json(s, recent + 50 + i, 20 + i, bed_values(i)) for i, s in enumerate(KARIADI_BEDS)
    ]
    doc = {"v": 1, "gw": "gw-kariadi", "seq": 7, "sent": now, "readings": readings}
    # the wongso sensors are not gw-kariadi's: 4 unknown_sensor dead letters as well
    settings = settings_for(mosquitto, influxdb, tmp_path, write_chunk_lines=3)
    with (
        ingester_thread(settings, city) as ing,
        publisher(mosquitto, "gw-kariadi") as kariadi,
        InfluxHTTP(url=influxdb.url, database="pantau") as influx,
    ):
        influx.write([f"bed,sensor=elsewhere occupied=1.5 {old * 1000}"], precision=PRECISION)
        publish(kariadi, KARIADI, doc)
        store = DeadLetterStore(directory=settings.dead_letter_dir)
        wait_for(lambda: len(list(store.read())) == 8, "8 dead letters")
        wait_for(lambda: ing.windows >= 1, "the window processed")
        stored = rows(
            influx, "SELECT occupied FROM bed WHERE sensor != 'elsewhere' GROUP BY sensor"
        )
        assert ing.metrics.readings_stored._value.get() == len(stored)
        # the state folded exactly the stored readings (raw lines go out ordered by sensor)
        assert ing.state is not None
        pos = [CityIndex.from_registry(city).sensor_pos[s] for s in KARIADI_BEDS]
        assert ing.state.ts[pos].tolist() == [recent + 50 + i for i in range(4)]
    dead = list(DeadLetterStore(directory=settings.dead_letter_dir).read())
    reasons = sorted((str(d.reason), d.index) for d in dead)
    assert reasons == sorted(
        [("storage_rejected", i) for i in range(4)] + [("unknown_sensor", i) for i in range(4, 8)]
    )
    assert sorted((r["sensor"], r["time"]) for r in stored) == sorted(
        (s, recent + 50 + i) for i, s in enumerate(KARIADI_BEDS)
    )
    assert len(stored) + len(dead) == len(readings) == 12


def _reference_rollup(
    sent: list[tuple[str, int, list[int]]], sensors: list[str], end: int
) -> tuple[int, int, int] | None:
    """(capacity, occupied, sensors) over ``sensors``' latest readings observed before
    ``end``; later arrivals win ties (none in these tests)."""
    latest: dict[str, tuple[int, list[int]]] = {}
    for sensor, ts, v in sent:
        if sensor in sensors and ts < end and (sensor not in latest or ts >= latest[sensor][0]):
            latest[sensor] = (ts, v)
    if not latest:
        return None
    return (
        sum(v[0] for _, v in latest.values()),
        sum(v[1] for _, v in latest.values()),
        len(latest),
    )


def test_a_backlog_hours_old_lands_at_observation_time_and_corrects_past_rollups(
    mosquitto: Mosquitto, influxdb: InfluxDB, city: Registry, tmp_path: Path
) -> None:
    """A gateway offline for hours sends its backlog (in two batches, the older one last, so
    part of it is older than the state it arrives to) while another gateway is live. Raw
    points land at their observation times; every rollup point of the past hours (site and
    city level) equals a reference computed from everything sent, bucket by bucket."""
    now = now_ms()
    start = now - 3 * 3600 * 1000
    # wongso: a reading per sensor every 7 minutes over the last 3 hours, 25 minutes ago at the
    # latest; as two batches: the newer half first, the older half second.
    backlog = [
        (s, start + k * 7 * MINUTE + j * 1000, bed_values(k * 4 + j))
        for k in range(22)
        for j, s in enumerate(WONGSO_BEDS)
    ]
    newer, older = backlog[len(backlog) // 2 :], backlog[: len(backlog) // 2]
    live = [(s, now - 5_000 + j, bed_values(50 + j)) for j, s in enumerate(KARIADI_BEDS)]
    settings = settings_for(mosquitto, influxdb, tmp_path)
    bucket = settings.rollup_bucket_s * 1000
    with (
        ingester_thread(settings, city) as ing,
        publisher(mosquitto, "gw-wongsonegoro") as wongso,
        publisher(mosquitto, "gw-kariadi") as kariadi,
        InfluxHTTP(url=influxdb.url, database="pantau") as influx,
    ):
        publish(kariadi, KARIADI, binary_batch("gw-kariadi", 1, [(s, t, 1, v) for s, t, v in live]))
        wait_for(lambda: ing.metrics.readings_stored._value.get() == 4, "live readings")
        for seq, part in ((1, newer), (2, older)):
            records = [(s, t, 1, v) for s, t, v in part]
            publish(wongso, WONGSO, binary_batch("gw-wongsonegoro", seq, records))
        wait_for(
            lambda: (
                ing.metrics.readings_stored._value.get() == 4 + len(backlog)
                and ing.metrics.held == 0
            ),
            "the backlog stored, its rollups rewritten and acknowledged",
        )
        raw = rows(influx, "SELECT capacity, occupied FROM bed GROUP BY sensor")

        def rollups(level: str, code: str) -> list[dict[str, Any]]:
            return rows(
                influx,
                "SELECT capacity, occupied, sensors FROM bed_rollup WHERE "  # noqa: S608
                f"\"level\" = '{level}' AND code = '{code}' AND bed_type = 'all' "
                f"AND facility = 'all' AND time >= {start - bucket}ms",
            )

        site = rollups("site", "rsud-wongsonegoro")
        kota = next(g.code for g in CityIndex.from_registry(city).groups if g.level == "kota")
        city_rows = rollups("kota", kota)
        assert ing.metrics.late_buckets._value.get() > 0
    sent = backlog + live
    assert sorted((r["sensor"], r["time"], r["capacity"], r["occupied"]) for r in raw) == sorted(
        (s, t, v[0], v[1]) for s, t, v in sent
    )
    # a site rollup point at every bucket from the backlog's first to the current one, each
    # equal to the reference as of that bucket's end
    first = start - start % bucket
    assert [r["time"] for r in site][:1] == [first]
    expected_buckets = set(range(first, now - now % bucket + 1, bucket))
    assert {r["time"] for r in site} >= expected_buckets - {now - now % bucket}
    for r in site:
        want = _reference_rollup(sent, WONGSO_BEDS, r["time"] + bucket)
        assert (r["capacity"], r["occupied"], r["sensors"]) == want, r["time"]
    assert city_rows, "no city-level rollups"
    for r in city_rows:
        want = _reference_rollup(sent, WONGSO_BEDS + KARIADI_BEDS, r["time"] + bucket)
        assert (r["capacity"], r["occupied"]) == want[:2], r["time"]  # type: ignore[index]

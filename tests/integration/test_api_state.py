"""Current values from memory (cloud/api/state.py): the API follows a real lone ingester's state
deltas on a real Mosquitto (with the shipped ACL and the pantau-api account), seeds from a real
InfluxDB, and answers the now-endpoints without asking InfluxDB per request."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from city import Registry
from cloud.api import create_app
from cloud.api.state import Change, LiveState
from cloud.influx import InfluxHTTP
from cloud.ingest.aggregate import SensorState
from cloud.ingest.cluster import deltas_of
from contract import Batch, Channel, Reading, SensorKind, encode, topics
from contract.cluster import encode_state_delta
from contract.errors import StorageError
from pantau.services import InfluxDB, Mosquitto
from tests.api_live_support import api_settings
from tests.ingest_support import (
    ingester_thread,
    now_ms,
    publish,
    publisher,
    settings_for,
    wait_for,
)

pytestmark = pytest.mark.integration

GW = "gw-kariadi"
FIGURES = ("capacity", "occupied", "free", "suspect", "confirmed", "waiting", "sensors", "bor")
SITE = "rs-kariadi"


def beds_batch(seq: int, ts: int, occupied: dict[str, int], *, waiting: int = 0) -> bytes:
    """A batch of gw-kariadi bed readings: ``occupied`` per sensor id, ICU-sized wards."""
    readings = [
        Reading(
            sensor=sensor,
            kind=SensorKind.BED,
            ts=ts,
            seq=seq,
            values={
                "capacity": 24 if sensor == "bed-kariadi-icu" else 10,
                "occupied": occ,
                "suspect": 1,
                "confirmed": 2,
                "waiting": waiting,
            },
        )
        for sensor, occ in occupied.items()
    ]
    return encode(Batch(gw=GW, seq=seq, sent=now_ms(), readings=readings))


def ward(client: TestClient, sensor: str) -> dict[str, Any]:
    resp = client.get("/v1/beds", params={"site": SITE})
    assert resp.status_code == 200, resp.text
    by_sensor: dict[str, dict[str, Any]] = {w["sensor"]: w for w in resp.json()["items"]}
    return by_sensor[sensor]


@contextmanager
def pipeline(
    mosquitto: Mosquitto, influxdb: InfluxDB, tmp_path: Path, city: Registry
) -> Iterator[None]:
    with ingester_thread(settings_for(mosquitto, influxdb, tmp_path), city):
        yield


def test_the_api_follows_the_ingesters_state_and_answers_while_influxdb_is_down(
    mosquitto: Mosquitto, influxdb: InfluxDB, tmp_path: Path, city: Registry
) -> None:
    """A reading the ingester takes reaches the API through the state topic; once the API has
    it, stopping InfluxDB changes nothing the now-endpoints answer (the old API, which scanned
    InfluxDB per request, answered 503 here)."""
    t0 = now_ms() - 5_000
    with (
        pipeline(mosquitto, influxdb, tmp_path, city),
        TestClient(create_app(api_settings(mosquitto, influxdb), registry=city)) as client,
        publisher(mosquitto, GW) as pub,
    ):
        follower = client.app.state.follower  # type: ignore[attr-defined]
        assert follower.subscribed.wait(20), "the API did not subscribe to the state topic"
        topic = topics.build(SITE, GW, Channel.READINGS)
        publish(pub, topic, beds_batch(0, t0, {"bed-kariadi-icu": 18, "bed-kariadi-icu-np": 9}))
        wait_for(lambda: ward(client, "bed-kariadi-icu")["occupied"] == 18, "the first reading")
        publish(pub, topic, beds_batch(1, t0 + 1000, {"bed-kariadi-icu": 21}, waiting=4))
        wait_for(lambda: ward(client, "bed-kariadi-icu")["occupied"] == 21, "the second reading")

        influxdb.stop()
        icu = ward(client, "bed-kariadi-icu")
        assert (icu["capacity"], icu["occupied"], icu["free"], icu["waiting"]) == (24, 21, 3, 4)
        assert icu["bor"] == 87.5
        assert icu["band"] == "critical"
        assert icu["observed_at_ms"] == t0 + 1000
        site = client.get(f"/v1/beds/{SITE}")
        assert site.status_code == 200
        assert site.json()["totals"] == {
            "capacity": 34,
            "occupied": 30,
            "free": 4,
            "bor": 30 * 100.0 / 34,
            "band": "critical",
        }
        summary = client.get("/v1/beds/summary", params={"level": "kota", "group": "icu"})
        assert summary.status_code == 200
        [row] = summary.json()["items"]
        assert (row["capacity"], row["occupied"], row["free"], row["sensors"]) == (34, 30, 4, 2)
        assert (row["waiting"], row["suspect"], row["confirmed"]) == (4, 2, 4)


def test_the_api_starts_from_what_influxdb_holds_and_matches_the_ingesters_rollups(
    mosquitto: Mosquitto, influxdb: InfluxDB, tmp_path: Path, city: Registry
) -> None:
    """An API started after the data arrived seeds from InfluxDB; its summary equals, figure by
    figure, the bed_rollup points the ingester wrote (one formula, one module)."""
    t0 = now_ms() - 5_000
    with pipeline(mosquitto, influxdb, tmp_path, city), publisher(mosquitto, GW) as pub:
        topic = topics.build(SITE, GW, Channel.READINGS)
        publish(pub, topic, beds_batch(0, t0, {"bed-kariadi-icu": 7, "bed-kariadi-hcu": 10}))
        with InfluxHTTP(url=influxdb.url, database="pantau") as influx:

            def stored_rollup() -> list[dict[str, Any]]:
                q = (
                    "SELECT * FROM bed_rollup WHERE level = 'kecamatan' AND bed_type = 'all' "
                    "AND facility = 'all' GROUP BY code ORDER BY time DESC LIMIT 1"
                )
                try:
                    rows = [r for s in influx.query(q) for r in s.rows()]
                except StorageError:  # the ingester has not created the database yet
                    return []
                # InfluxDB stores a point field by field: a query racing the write may see
                # part of it. Wait for the whole point.
                whole = all(r.get(f) is not None for r in rows for f in (*FIGURES, "newest_ms"))
                return rows if whole else []

            [stored] = wait_for(stored_rollup, "the ingester's bed_rollup")
    with TestClient(create_app(api_settings(mosquitto, influxdb), registry=city)) as client:
        rows = {
            r["code"]: r for r in client.get("/v1/beds/summary?level=kecamatan").json()["items"]
        }
    mine = rows[stored["code"]]
    for name in FIGURES:
        assert mine[name] == stored[name], (name, stored)
    assert mine["bor"] == stored["bor"] == 17 * 100.0 / 34
    assert mine["observed_at_newest_ms"] == stored["newest_ms"] == t0


def test_change_events_name_the_sensors_that_changed(city: Registry) -> None:
    """The hook for the live stream: a merge in another thread reaches an asyncio listener as
    one Change naming exactly the changed sensors, with versions counting up from 1."""
    live = LiveState(registry=city)
    src = SensorState(n_sensors=live.index.n_sensors)
    pos = live.index.sensor_pos["bed-kariadi-icu"]
    values = np.zeros((1, src.values.shape[1]), np.int64)
    values[0, :2] = (24, 5)
    src.update(np.array([pos], np.int32), np.array([1000], np.int64), np.array([3]), values)
    [delta] = deltas_of(src, np.array([pos]), live.digest)

    async def main() -> list[Change]:
        got: list[Change] = []
        async with live.subscribe() as events:
            await asyncio.to_thread(live.merge_payloads, [encode_state_delta(delta)])
            # the same delta again changes nothing: no event
            await asyncio.to_thread(live.merge_payloads, [encode_state_delta(delta)])
            got.append(await asyncio.wait_for(events.__anext__(), 10))
            assert events._queue.empty()
        return got

    [change] = asyncio.run(main())
    assert (change.version, change.sensors, change.source) == (1, ("bed-kariadi-icu",), "delta")
    snap = live.snapshot()
    row = snap.ward_row[pos]
    assert (int(snap.wards.occupied[row]), int(snap.wards.free[row])) == (5, 19)

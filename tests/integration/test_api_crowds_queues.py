"""Crowds and queues now, from memory: readings published to a real broker, taken by a real
lone ingester, followed by the API; the queue's wait is the ingester's Little's-law estimate,
in whole minutes rounded up and scaled to the simulated world's time. Crowd history from real
InfluxDB crowd_site points, with daily buckets at midnight WIB."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from city import Registry
from cloud.api import ApiSettings, create_app
from cloud.api.now_sites import wait_minutes
from cloud.influx import InfluxHTTP
from contract import Batch, Channel, Reading, SensorKind, encode, topics
from pantau.services import InfluxDB, Mosquitto
from tests.api_conditions_support import crowd, site_lines
from tests.api_live_support import api_settings
from tests.ingest_support import ingester_thread, now_ms, publish, publisher, settings_for, wait_for

pytestmark = pytest.mark.integration


def batch(gw: str, seq: int, readings: list[Reading]) -> bytes:
    return encode(Batch(gw=gw, seq=seq, sent=now_ms(), readings=readings))


def kiosk(ts: int, seq: int, issued: int, served: int) -> Reading:
    values = {"issued": issued, "served": served, "counters_open": 12}
    return Reading(sensor="q-mpp", kind=SensorKind.QUEUE, ts=ts, seq=seq, values=values)


def gate(sensor: str, ts: int, occupancy: int) -> Reading:
    values = {"entries": occupancy + 50, "exits": 50, "occupancy": occupancy}
    return Reading(sensor=sensor, kind=SensorKind.CROWD, ts=ts, seq=1, values=values)


def test_191_people_at_12_counters_wait_in_the_simulated_worlds_minutes(
    mosquitto: Mosquitto, influxdb: InfluxDB, tmp_path: Path, city: Registry
) -> None:
    """Two kiosk readings 2 s apart (wall clock) with 4 tickets served between them: 2 per
    second, so 191 waiting is 95.5 s on the readings' clock. The demo's models run 120 times
    faster than its timestamps: with PANTAU_QUEUE_TIME_SCALE=120 that is 11 460 s, 191 min;
    unscaled it is still "2 min", never "0 min"."""
    t0 = now_ms() - 10_000
    settings = api_settings(mosquitto, influxdb).model_copy(update={"queue_time_scale": 120.0})
    with (
        ingester_thread(settings_for(mosquitto, influxdb, tmp_path), city),
        TestClient(create_app(settings, registry=city)) as client,
        publisher(mosquitto, "gw-mpp") as mpp,
        publisher(mosquitto, "gw-johar") as johar,
    ):
        assert client.app.state.follower.subscribed.wait(20)  # type: ignore[attr-defined]
        q_topic = topics.build("mpp-semarang", "gw-mpp", Channel.READINGS)
        publish(mpp, q_topic, batch("gw-mpp", 0, [kiosk(t0, 1, 290, 100)]))
        publish(mpp, q_topic, batch("gw-mpp", 1, [kiosk(t0 + 2000, 2, 295, 104)]))
        c_topic = topics.build("pasar-johar", "gw-johar", Channel.READINGS)
        gates = [gate("crowd-johar-utara", t0, 700), gate("crowd-johar-selatan", t0 + 5, 560)]
        publish(johar, c_topic, batch("gw-johar", 0, gates))

        def mpp_queue() -> dict[str, Any] | None:
            body = client.get("/v1/queues").json()
            row: dict[str, Any] = {q["site"]: q for q in body["items"]}["mpp-semarang"]
            return row if row["wait_s"] is not None else None

        row = wait_for(mpp_queue, "the kiosk's second reading")
        assert (row["waiting"], row["issued"], row["served"], row["counters_open"]) == (
            191,
            295,
            104,
            12,
        )
        assert row["wait_s"] == 191 / 2.0 * 120
        assert row["wait_min"] == 191
        assert client.get("/v1/queues").json()["time_scale"] == 120.0

        def johar_crowd() -> dict[str, Any] | None:
            body = client.get("/v1/crowds").json()
            row: dict[str, Any] = {c["site"]: c for c in body["items"]}["pasar-johar"]
            return row if row["gates"] == 2 else None

        crowd_row = wait_for(johar_crowd, "both gates of Pasar Johar")
        assert (crowd_row["occupancy"], crowd_row["capacity"]) == (1260, 1500)
        assert (crowd_row["ratio"], crowd_row["percent"], crowd_row["status"]) == (
            0.84,
            84.0,
            "high",
        )
        assert (crowd_row["observed_at_oldest_ms"], crowd_row["observed_at_ms"]) == (t0, t0 + 5)
    # Unscaled, the same queue is a minute and a half: shown as 2 min, not 0.
    assert wait_minutes(191 / 2.0) == 2
    assert wait_minutes(0.4) == 1
    assert wait_minutes(0.0) == 0


DAY = 86_400_000
HOUR = 3_600_000
WIB = 7 * HOUR
D = (int(time.time() * 1000) + WIB) // DAY * DAY - WIB - 3 * DAY


def test_crowd_history_days_start_at_midnight_wib(influxdb: InfluxDB, city: Registry) -> None:
    with InfluxHTTP(url=influxdb.url) as influx:
        influx.ensure_database()
        for ts, occ in ((D + 9 * HOUR, 900), (D + 23 * HOUR + HOUR // 2, 300), (D + DAY, 1600)):
            crowd_site = crowd(occ, 1500, gates=2, ts=ts)
            influx.write(site_lines(city, "crowd_site", {"pasar-johar": crowd_site}))
    with TestClient(create_app(ApiSettings(influx_url=influxdb.url), registry=city)) as client:
        params = {"site": "pasar-johar", "from": str(D), "to": str(D + 2 * DAY), "interval": "1d"}
        body = client.get("/v1/crowds/history", params=params).json()
        assert body["timezone"] == "WIB"
        got = [(b["start_ms"], b["occupancy"], b["occupancy_max"]) for b in body["items"]]
        assert got == [(D, 300, 900), (D + DAY, 1600, 1600)]
        assert body["items"][1]["ratio"] == 1600 / 1500
        assert client.get("/v1/crowds/history", params={"site": "rs-kariadi"}).status_code == 404

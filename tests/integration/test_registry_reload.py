"""Registry changes reach the running ingester and API without a restart (issue 11): a real
Mosquitto (shipped ACL), a real InfluxDB, the real ingester and the real API app, one city
file rewritten under them atomically (tmp + rename), as ``pantau gateway add`` writes it."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from pydantic import SecretStr

from city import DEMO_CITY
from cloud.api import ApiSettings, create_app
from cloud.influx import InfluxHTTP
from cloud.ingest.service import Ingester
from contract import Batch, Channel, Reading, SensorKind, encode, topics
from pantau.paths import ROOT
from pantau.services import InfluxDB, Mosquitto, free_port
from tests.ingest_support import (
    latest_aggregates,
    metric,
    now_ms,
    publish,
    publisher,
    running,
    settings_for,
    stored_rows,
    wait_for,
)

pytestmark = pytest.mark.integration

GW = "gw-kariadi"
SITE = "rs-kariadi"
KIOSK = "kiosk-candisari"
KIOSK_SITE = "kec-candisari"
#: short polls: the tests wait for the reload (never a fixed sleep), so this only sets how soon
POLL_S = 0.1


def demo_doc() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(DEMO_CITY.read_text(encoding="utf-8"))
    return doc


def without_gateway(doc: dict[str, Any], gateway: str) -> dict[str, Any]:
    """``doc`` without ``gateway`` and its sensors (its site stays)."""
    return {
        **doc,
        "gateways": [g for g in doc["gateways"] if g["id"] != gateway],
        "sensors": [s for s in doc["sensors"] if s["gateway"] != gateway],
    }


def without_site(doc: dict[str, Any], site: str) -> dict[str, Any]:
    """``doc`` without ``site``, its gateways and its sensors."""
    return {
        **doc,
        "sites": [s for s in doc["sites"] if s["id"] != site],
        "gateways": [g for g in doc["gateways"] if g["site"] != site],
        "sensors": [s for s in doc["sensors"] if s["site"] != site],
    }


def write_atomically(path: Path, doc: dict[str, Any] | str) -> None:
    """Replace ``path`` the way the gateway CLI does: a temp file renamed over it."""
    text = doc if isinstance(doc, str) else yaml.safe_dump(doc, allow_unicode=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def beds_batch(seq: int, ts: int, occupied: dict[str, int]) -> bytes:
    """gw-kariadi bed readings, ``occupied`` per sensor id (capacities as in the demo city)."""
    beds = {"bed-kariadi-icu": 24, "bed-kariadi-icu-np": 10, "bed-kariadi-hcu": 16}
    readings = [
        Reading(
            sensor=sensor,
            kind=SensorKind.BED,
            ts=ts,
            seq=seq,
            values={
                "capacity": beds[sensor],
                "occupied": occ,
                "suspect": 0,
                "confirmed": 0,
                "waiting": 0,
            },
        )
        for sensor, occ in occupied.items()
    ]
    return encode(Batch(gw=GW, seq=seq, sent=now_ms(), readings=readings))


@contextmanager
def city_pipeline(
    mosquitto: Mosquitto, influxdb: InfluxDB, tmp_path: Path, city_file: Path
) -> Iterator[tuple[Ingester, TestClient]]:
    """The ingester and the API, both reading ``city_file`` (and watching it)."""
    ingest = settings_for(
        mosquitto, influxdb, tmp_path, city_file=city_file, registry_poll_s=POLL_S
    )
    api = ApiSettings(
        influx_url=influxdb.url,
        mqtt_url=mosquitto.url,
        mqtt_username="pantau-api",
        mqtt_password=SecretStr(mosquitto.users["pantau-api"]),
        city_file=city_file,
        registry_poll_s=POLL_S,
    )
    with running(Ingester(settings=ingest)) as ing, TestClient(create_app(api)) as client:
        follower = client.app.state.follower  # type: ignore[attr-defined]
        assert follower.subscribed.wait(20), "the API did not subscribe to the state topic"
        yield ing, client


def ward_occupied(client: TestClient) -> dict[str, int]:
    resp = client.get("/v1/beds", params={"site": SITE})
    assert resp.status_code == 200, resp.text
    return {w["sensor"]: w["occupied"] for w in resp.json()["items"] if w["occupied"] is not None}


def sample(ing: Ingester, name: str, **labels: str) -> float:
    value = ing.metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def test_a_gateway_added_to_the_registry_reaches_influxdb_and_the_api_with_what_it_sent_before(
    mosquitto: Mosquitto, influxdb: InfluxDB, tmp_path: Path
) -> None:
    """A gateway and a direct kiosk not in the registry publish: dead-lettered as
    unknown_gateway. The city file is rewritten with them: with no restart, their readings from
    before the change are replayed into InfluxDB and the API's now-endpoints (the kiosk's
    clockless reading stamped when it was received, not when replayed), and new ones follow;
    each reading is stored once, even when the same batch is then replayed again."""
    city_file = tmp_path / "city.yaml"
    write_atomically(city_file, without_gateway(without_gateway(demo_doc(), GW), KIOSK))
    t0 = now_ms() - 10_000
    with (
        city_pipeline(mosquitto, influxdb, tmp_path, city_file) as (ing, client),
        publisher(mosquitto, GW, site=SITE) as pub,
        publisher(mosquitto, KIOSK) as kiosk,
    ):
        sent_from = now_ms()
        kiosk_reading = {"v": 1, "sensor": "q-candisari", "kind": "queue", "seq": 1}
        kiosk_values = {"issued": 12, "served": 9, "counters_open": 2}
        publish(
            kiosk,
            topics.build(KIOSK_SITE, KIOSK, Channel.READING),
            {**kiosk_reading, "values": kiosk_values},
        )
        topic = topics.build(SITE, GW, Channel.READINGS)
        first = beds_batch(0, t0, {"bed-kariadi-icu": 18, "bed-kariadi-icu-np": 9})
        publish(pub, topic, first)
        publish(pub, topic, beds_batch(1, t0 + 1000, {"bed-kariadi-hcu": 11}))
        wait_for(
            lambda: sample(ing, "pantau_ingest_dead_letters_total", reason="unknown_gateway") == 3,
            "both batches and the kiosk's reading dead-lettered as unknown_gateway",
        )
        assert ward_occupied(client) == {}

        rewritten_at = now_ms()
        write_atomically(city_file, demo_doc())
        wait_for(
            lambda: (
                ward_occupied(client)
                == {"bed-kariadi-icu": 18, "bed-kariadi-icu-np": 9, "bed-kariadi-hcu": 11}
            ),
            "the readings sent before the registry change in the API",
        )
        publish(pub, topic, beds_batch(2, t0 + 2000, {"bed-kariadi-icu": 21}))
        wait_for(lambda: ward_occupied(client)["bed-kariadi-icu"] == 21, "a reading after it")
        # An operator's `pantau ingest replay` of the same dead letter: a duplicate, dropped.
        publish(pub, topic, first)
        wait_for(
            lambda: sample(ing, "pantau_ingest_duplicates_dropped_total") == 1,
            "the second replay of batch 0 dropped as a duplicate",
        )
        site = client.get(f"/v1/beds/{SITE}").json()["totals"]
        assert (site["capacity"], site["occupied"], site["free"]) == (50, 41, 9)

        with InfluxHTTP(url=influxdb.url, database="pantau") as influx:
            stored = stored_rows(influx)
        rows = [r for r in stored if r[0].startswith("bed-kariadi")]
        # (sensor, occupied) of every stored reading: each once, none lost
        assert sorted((r[0], r[3][1]) for r in rows) == [
            ("bed-kariadi-hcu", 11),
            ("bed-kariadi-icu", 18),
            ("bed-kariadi-icu", 21),
            ("bed-kariadi-icu-np", 9),
        ]
        [(_, kiosk_ts, seq, values)] = [r for r in stored if r[0] == "q-candisari"]
        assert (seq, values) == (1, (12, 9, 2))
        assert sent_from <= kiosk_ts < rewritten_at
        assert sample(ing, "pantau_registry_reloads_total") == 1
        assert sample(ing, "pantau_registry_reload_failures_total") == 0
        assert client.app.state.registry_follower.swaps == 1  # type: ignore[attr-defined]


def test_a_broken_registry_file_is_refused_and_the_old_one_keeps_working(
    mosquitto: Mosquitto, influxdb: InfluxDB, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A rewritten city file with a sensor on a gateway that does not exist is refused by both
    the ingester and the API, with a log line naming the file, the place and the problem; the
    registry in use goes on serving its gateways."""
    city_file = tmp_path / "city.yaml"
    write_atomically(city_file, demo_doc())
    broken = demo_doc()
    bad_at = next(i for i, s in enumerate(broken["sensors"]) if s["id"] == "bed-kariadi-hcu")
    broken["sensors"][bad_at]["gateway"] = "gw-nowhere"
    t0 = now_ms() - 10_000
    with (
        caplog.at_level(logging.ERROR, logger="cloud.registry_watch"),
        city_pipeline(mosquitto, influxdb, tmp_path, city_file) as (ing, client),
        publisher(mosquitto, GW) as pub,
    ):
        write_atomically(city_file, broken)
        api_watch = client.app.state.registry_follower.watch  # type: ignore[attr-defined]
        wait_for(
            lambda: (
                sample(ing, "pantau_registry_reload_failures_total") == 1
                and api_watch.failures == 1
            ),
            "the broken file refused by the ingester and the API",
        )
        refusal = f"{city_file} at sensors[{bad_at}].gateway: no gateway 'gw-nowhere'"
        lines = [r.getMessage() for r in caplog.records if refusal in r.getMessage()]
        assert len(lines) == 2, caplog.text  # one each, not one per poll

        topic = topics.build(SITE, GW, Channel.READINGS)
        publish(pub, topic, beds_batch(0, t0, {"bed-kariadi-hcu": 7}))
        wait_for(lambda: ward_occupied(client) == {"bed-kariadi-hcu": 7}, "the reading")
        assert sample(ing, "pantau_ingest_dead_letters_total", reason="unknown_sensor") == 0
        assert sample(ing, "pantau_registry_reloads_total") == 0
        assert client.app.state.registry_follower.swaps == 0  # type: ignore[attr-defined]


def kota_rollup(influx: InfluxHTTP) -> tuple[int, int]:
    """(capacity, occupied) of the newest city-wide bed_rollup point the ingester wrote."""
    for (measurement, tags), fields in latest_aggregates(influx).items():
        t = dict(tags)
        city_wide = t["level"] == "kota" and t["bed_type"] == t["facility"] == "all"
        if measurement == "bed_rollup" and city_wide:
            return int(fields["capacity"]), int(fields["occupied"])
    raise AssertionError("no kota bed_rollup")


def test_a_site_removed_from_the_registry_leaves_every_now_view_and_the_totals_agree(
    mosquitto: Mosquitto, influxdb: InfluxDB, tmp_path: Path
) -> None:
    """Removing a hospital from the city file makes /v1/beds/{site} 404 and takes its beds out
    of the city's summary (API) and city rollup (ingester), which then equal the remaining
    site's totals; its history stays in InfluxDB, and when it is added back both count its
    stored readings again."""
    city_file = tmp_path / "city.yaml"
    write_atomically(city_file, demo_doc())
    t0 = now_ms() - 10_000
    other = "rsud-wongsonegoro"
    wongso = Batch(
        gw="gw-wongsonegoro",
        seq=0,
        sent=now_ms(),
        readings=[
            Reading(
                sensor="bed-wongso-icu",
                kind=SensorKind.BED,
                ts=t0,
                seq=0,
                values={"capacity": 12, "occupied": 5, "suspect": 0, "confirmed": 0, "waiting": 0},
            )
        ],
    )
    with (
        city_pipeline(mosquitto, influxdb, tmp_path, city_file) as (_, client),
        publisher(mosquitto, GW) as pub,
        publisher(mosquitto, "gw-wongsonegoro") as pub2,
        InfluxHTTP(url=influxdb.url, database="pantau") as influx,
    ):
        topic = topics.build(SITE, GW, Channel.READINGS)
        publish(pub, topic, beds_batch(0, t0, {"bed-kariadi-icu": 18, "bed-kariadi-hcu": 4}))
        publish(pub2, topics.build(other, "gw-wongsonegoro", Channel.READINGS), encode(wongso))

        def kota() -> tuple[int, int]:
            row = client.get("/v1/beds/summary", params={"level": "kota"}).json()["items"][0]
            return row["capacity"], row["occupied"]

        wait_for(lambda: kota() == (52, 27), "both hospitals in the city's summary")
        wait_for(lambda: kota_rollup(influx) == (52, 27), "both in the ingester's city rollup")

        write_atomically(city_file, without_site(demo_doc(), SITE))
        wait_for(lambda: client.get(f"/v1/beds/{SITE}").status_code == 404, "the site gone")
        assert kota() == (12, 5)
        sites = client.get("/v1/beds/summary", params={"level": "site"}).json()["items"]
        assert SITE not in {s["code"] for s in sites}
        assert sum(s["capacity"] or 0 for s in sites) == 12
        assert sum(s["occupied"] or 0 for s in sites) == 5
        totals = client.get(f"/v1/beds/{other}").json()["totals"]
        assert (totals["capacity"], totals["occupied"]) == (12, 5)
        assert SITE not in {w["site"] for w in client.get("/v1/beds").json()["items"]}
        wait_for(lambda: kota_rollup(influx) == (12, 5), "the ingester's city rollup without it")
        kept = [r for r in stored_rows(influx) if r[0].startswith("bed-kariadi")]
        assert len(kept) == 2  # history stays

        # Added back: both sides read its stored readings again, and agree.
        write_atomically(city_file, demo_doc())
        wait_for(lambda: kota() == (52, 27), "the site back in the city's summary")
        wait_for(lambda: kota_rollup(influx) == (52, 27), "and in the ingester's city rollup")


def test_sighup_makes_the_ingester_process_swap_in_the_registry_and_replay_what_it_refused(
    mosquitto: Mosquitto, influxdb: InfluxDB, tmp_path: Path
) -> None:
    """``pantau ingest run`` with the periodic look turned off (PANTAU_REGISTRY_POLL_S=0): a
    SIGHUP after the city file gained gw-kariadi swaps it in, and the batch refused before is
    stored, once."""
    city_file = tmp_path / "city.yaml"
    write_atomically(city_file, without_gateway(demo_doc(), GW))
    port = free_port()
    env = {
        **os.environ,
        "PANTAU_MQTT_URL": mosquitto.url,
        "PANTAU_INFLUX_URL": influxdb.url,
        "PANTAU_DEAD_LETTER_DIR": str(tmp_path / "dead"),
        "PANTAU_FLUSH_INTERVAL_S": "0.05",
        "PANTAU_METRICS_PORT": str(port),
        "PANTAU_CITY_FILE": str(city_file),
        "PANTAU_REGISTRY_POLL_S": "0",
    }
    log = tmp_path / "ingest.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(Path(sys.executable).with_name("pantau")), "ingest", "run"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
    try:
        # A cold process start on a loaded 2-core machine: a generous bound, not a timing claim.
        wait_for(
            lambda: metric(port, "pantau_ingest_subscribed") == 1.0, "the ingester up", timeout=90
        )
        with publisher(mosquitto, GW, site=SITE) as pub:
            batch = beds_batch(0, now_ms() - 10_000, {"bed-kariadi-icu": 18})
            publish(pub, topics.build(SITE, GW, Channel.READINGS), batch)
        dead = 'pantau_ingest_dead_letters_total{reason="unknown_gateway"}'
        wait_for(lambda: metric(port, dead) == 1.0, "the batch dead-lettered")

        write_atomically(city_file, demo_doc())
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: metric(port, "pantau_registry_reloads_total") == 1.0, "the reload")
        with InfluxHTTP(url=influxdb.url, database="pantau") as influx:
            wait_for(lambda: len(stored_rows(influx)) == 1, "the replayed reading stored")
            [(sensor, _, seq, values)] = stored_rows(influx)
        assert (sensor, seq, values[1]) == ("bed-kariadi-icu", 0, 18)
        assert metric(port, "pantau_registry_reload_failures_total") == 0.0
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0, log.read_text()

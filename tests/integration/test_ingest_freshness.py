"""The ingester stores every region's freshness (``region_freshness``) on its own clock, also
while no message arrives: real Mosquitto and InfluxDB, the ingester on an injected clock."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from city import Registry
from cloud.influx import InfluxHTTP, literal
from cloud.ingest import Ingester
from cloud.ingest.health import DEFAULT_EVERY_MS as FRESHNESS_EVERY_MS
from contract import SensorKind
from contract.clock import now_ms
from pantau.services import InfluxDB, Mosquitto
from tests.ingest_support import publish, publisher, running, settings_for, wait_for
from tests.payload_support import KARIADI, batch, bed

pytestmark = pytest.mark.integration

MIN = 60_000


def latest(influx: InfluxHTTP, site: str) -> dict[str, Any]:
    """The newest region_freshness point of ``site``'s bed sensors, {} before there is one."""
    where = f'"level" = \'site\' AND "code" = {literal(site)} AND "kind" = \'bed\''
    q = (
        'SELECT last("sensors") AS "sensors", last("reported") AS "reported", '  # noqa: S608
        'last("fresh") AS "fresh", last("share") AS "share" FROM "region_freshness" '
        "WHERE " + where  # the site is quoted by literal(): no injection
    )
    found = [r for s in influx.query(q) for r in s.rows()]
    return found[0] if found else {}


def test_a_site_goes_from_fresh_to_stale_with_no_message_arriving(
    mosquitto: Mosquitto, influxdb: InfluxDB, city: Registry, tmp_path: Path
) -> None:
    """Every bed ward of RS Kariadi reports once: its site point says all fresh. Then nothing
    arrives and the clock moves 11 minutes: the ingester's next point, written while idle,
    says none is fresh though all have reported."""
    wards = [s.id for s in city.doc.sensors if s.site == "rs-kariadi" and s.kind is SensorKind.BED]
    ahead = [0]  # ms the ingester's clock runs ahead of ours
    settings = settings_for(mosquitto, influxdb, tmp_path)
    ingester = Ingester(settings=settings, registry=city, clock_ms=lambda: now_ms() + ahead[0])
    with (
        running(ingester),
        InfluxHTTP(url=influxdb.url, database="pantau") as influx,
        publisher(mosquitto, "gw-kariadi") as client,
    ):
        publish(client, KARIADI, batch("gw-kariadi", *(bed(w, now_ms(), 10, 4) for w in wards)))
        n = len(wards)
        wait_for(lambda: stored(influx) == n, "the readings stored")
        ahead[0] += FRESHNESS_EVERY_MS  # the next point is due at once
        wait_for(lambda: latest(influx, "rs-kariadi").get("fresh") == n, "all wards fresh")
        got = latest(influx, "rs-kariadi")
        assert (got["sensors"], got["reported"], got["share"]) == (n, n, 1.0)
        ahead[0] += 11 * MIN
        wait_for(lambda: latest(influx, "rs-kariadi").get("fresh") == 0, "no ward fresh")
        got = latest(influx, "rs-kariadi")
        assert (got["sensors"], got["reported"], got["share"]) == (n, n, 0.0)


def stored(influx: InfluxHTTP) -> int:
    found = [r for s in influx.query('SELECT count("seq") FROM "bed"') for r in s.rows()]
    return int(found[0]["count"]) if found else 0

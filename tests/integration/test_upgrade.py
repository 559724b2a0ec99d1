"""An upgrade from the previous release's data (git 5ecc6cb): its InfluxDB database and its
day-file dead-letter store, then this release's ingester starts on them. The ingester
migrates at start; the API answers as it did on the old data, and the old dead letters are
readable and replayable in the new store."""

from __future__ import annotations

from pathlib import Path

import pytest

from city import Registry
from cloud.influx import InfluxHTTP
from cloud.ingest import DeadLetterStore, StorageSchema, apply_schema
from cloud.ingest.migrations import influx_version
from cloud.ingest.migrations.deadletters import VERSION_FILE
from cloud.ingest.migrations.influx import META_RP
from pantau.services import InfluxDB, Mosquitto
from tests.api_beds_support import NOW_MS, STATES, bed_lines, rollup_lines
from tests.backup_support import api_numbers, pantau
from tests.ingest_support import ingester_thread, now_ms, settings_for
from tests.upgrade_support import old_records, write_old_dead_letters

pytestmark = pytest.mark.integration


def _old_release_database(influxdb: InfluxDB, city: Registry) -> None:
    """What 5ecc6cb's `pantau ingest init-db` and ingester left: the database, its retention
    policies and continuous queries (cloud/ingest/schema.py is unchanged since 5ecc6cb), and
    points in the docs/schema.md format; no version marker."""
    with InfluxHTTP(url=influxdb.url) as influx:
        influx.ensure_database()
        apply_schema(influx, StorageSchema(database="pantau"))
        influx.write(bed_lines(city, STATES))
        influx.write(rollup_lines(city, STATES, flush_ms=NOW_MS - 5_000))


def test_the_ingester_migrates_the_previous_releases_data_and_the_api_answers_the_same(
    mosquitto: Mosquitto, influxdb: InfluxDB, city: Registry, tmp_path: Path
) -> None:
    _old_release_database(influxdb, city)
    dead_dir = tmp_path / "dead"
    write_old_dead_letters(dead_dir, old_records(now_ms() - 2 * 86_400_000))
    window = {"since_ms": NOW_MS - 3_600_000, "until_ms": NOW_MS + 3_600_000}
    before = api_numbers(mosquitto, influxdb, city, **window)

    settings = settings_for(mosquitto, influxdb, tmp_path, dead_letter_dir=dead_dir)
    with ingester_thread(settings, city):
        pass  # started: migrations ran before it subscribed

    assert api_numbers(mosquitto, influxdb, city, **window) == before
    # STATES: 8 bed wards, 96 beds, 59 occupied in the city.
    (kota,) = before["summary"]["items"]
    assert (kota["capacity"], kota["occupied"], kota["sensors"]) == (96, 59, 8)
    records = DeadLetterStore(directory=dead_dir).read()
    assert [r.reason for r in records] == [
        "unknown_sensor",
        "unknown_sensor",
        "invalid_json",
        "unknown_gateway",
    ]
    assert (dead_dir / VERSION_FILE).read_text() == "2\n"
    with InfluxHTTP(url=influxdb.url) as influx:
        assert influx_version(influx) == 1
        rps = [r["name"] for s in influx.query("SHOW RETENTION POLICIES") for r in s.rows()]
    assert rps == ["autogen", "downsampled", META_RP]

    # The operator's view: `pantau ingest dead-letters` lists the migrated records.
    result = pantau(["ingest", "dead-letters", "--dir", str(dead_dir)], {})
    assert result.exit_code == 0, result.output
    assert "unknown_gateway" in result.output
    assert "gw-new" in result.output

    # `pantau migrate --check` agrees: nothing left to do.
    env = {
        "PANTAU_INFLUX_URL": influxdb.url,
        "PANTAU_DEAD_LETTER_DIR": str(dead_dir),
    }
    result = pantau(["migrate", "--check"], env)
    assert (result.exit_code, result.output) == (
        0,
        "dead-letter store: version 2 (this release: 2)\nInfluxDB: version 1 (this release: 1)\n",
    )

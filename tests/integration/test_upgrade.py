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
from tests.api_beds_support import NOW_MS, STATES, bed_lines_v1, rollup_lines
from tests.backup_support import api_numbers, pantau
from tests.ingest_support import ingester_thread, now_ms, settings_for
from tests.upgrade_support import old_records, write_old_dead_letters

pytestmark = pytest.mark.integration


def _old_release_database(influxdb: InfluxDB, city: Registry) -> None:
    """What 5ecc6cb's `pantau ingest init-db` and ingester left: the database, its retention
    policies and continuous queries (the policies are unchanged since 5ecc6cb; the queries are
    reconciled at every start anyway), and points in its format (raw points with every place
    tag and ``free``, a downsampled copy); no version marker."""
    with InfluxHTTP(url=influxdb.url) as influx:
        influx.ensure_database()
        apply_schema(influx, StorageSchema(database="pantau"))
        influx.write(bed_lines_v1(city, STATES))
        # what version 1's continuous query wrote: the same tags, `free` among the fields
        v1_key = "bed,bed_type=26,kecamatan=33.74.07,kelurahan=33.74.07.1001,sensor=bed-kariadi-icu"
        fields = "capacity=24i,occupied=20i,free=4i,occupied_max=21i"
        influx.write_to_policy(
            [f"{v1_key},site=rs-kariadi {fields} {NOW_MS - 600_000}"], rp="downsampled"
        )
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
        assert influx_version(influx) == 2
        rps = [r["name"] for s in influx.query("SHOW RETENTION POLICIES") for r in s.rows()]
        # Step 2 (ADR 0028): every raw point kept, on a series tagged by its sensor only,
        # without the derived `free`; the downsampled copy too.
        keys = [r["tagKey"] for s in influx.query("SHOW TAG KEYS FROM bed") for r in s.rows()]
        raw = {
            s.tags["sensor"]: [(r["time"], r["capacity"], r["occupied"]) for r in s.rows()]
            for s in influx.query("SELECT capacity, occupied FROM bed GROUP BY *")
        }
        free = influx.query("SELECT count(free) FROM bed")
        down = influx.query('SELECT * FROM "downsampled"."bed" GROUP BY *')
    assert rps == ["autogen", "downsampled", META_RP]
    assert keys == ["sensor"]
    assert raw == {sid: [(st.ts, st.capacity, st.occupied)] for sid, st in STATES.items()}
    assert free == []
    assert [(s.tags, s.rows()[0]["occupied_max"], s.rows()[0].get("free")) for s in down] == [
        ({"sensor": "bed-kariadi-icu"}, 21, None)
    ]

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
        "dead-letter store: version 2 (this release: 2)\nInfluxDB: version 2 (this release: 2)\n",
    )

"""InfluxDB with authentication on (docs/adr/0020): ``pantau ingest init-db`` makes the admin,
writer and reader accounts on a fresh server; the ingester runs as the writer and the API as
the reader; neither can do more than its job."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from city import Registry
from cloud.influx import InfluxHTTP, QueryError
from cloud.ingest.places import publish_places, stored_places
from cloud.ingest.topology import CityIndex
from contract import StorageError
from pantau.services import InfluxDB, Mosquitto
from tests.api_access_support import running_api
from tests.ingest_support import ingester_thread, now_ms, publish, publisher, settings_for
from tests.ingest_support import wait_for as wait_until

pytestmark = pytest.mark.integration

#: Passwords with the characters an InfluxQL string literal must escape.
ADMIN_PW = "admin-pw-'quoted'-\\back-0123"
WRITER_PW = "writer-pw-0123456789abcdef"
READER_PW = "reader-pw-0123456789abcdef"


def init_db(db: InfluxDB, tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """``pantau ingest init-db`` as a process, as the admin; the admin's and the writer's
    passwords come from files (``*_FILE``), the reader's from its variable."""
    secrets = tmp_path / "secrets"
    secrets.mkdir(exist_ok=True)
    (secrets / "admin").write_text(ADMIN_PW + "\n")
    (secrets / "writer").write_text(env.pop("writer_pw", WRITER_PW) + "\n")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PANTAU_")}
    clean |= {
        "PANTAU_MODE": "production",
        "PANTAU_INFLUX_URL": db.url,
        "PANTAU_INFLUX_USERNAME": "pantau-admin",
        "PANTAU_INFLUX_PASSWORD_FILE": str(secrets / "admin"),
        "PANTAU_INFLUX_WRITER_PASSWORD_FILE": str(secrets / "writer"),
        "PANTAU_INFLUX_READER_PASSWORD": READER_PW,
        **env,
    }
    return subprocess.run(
        [sys.executable, "-m", "pantau.cli", "ingest", "init-db"],
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def client(db: InfluxDB, user: str, password: str) -> InfluxHTTP:
    return InfluxHTTP(url=db.url, username=user, password=password)


def values(influx: InfluxHTTP, q: str) -> list[list[object]]:
    return [row for s in influx.query(q) for row in s.values]


@pytest.fixture
def accounts(influxdb_auth: InfluxDB, tmp_path: Path) -> InfluxDB:
    """The auth-on server after one successful ``init-db``."""
    done = init_db(influxdb_auth, tmp_path)
    assert done.returncode == 0, done.stderr
    return influxdb_auth


def test_init_db_on_a_fresh_server_creates_exactly_the_three_accounts(
    influxdb_auth: InfluxDB, tmp_path: Path
) -> None:
    done = init_db(influxdb_auth, tmp_path)
    assert done.returncode == 0, done.stderr
    with client(influxdb_auth, "pantau-admin", ADMIN_PW) as admin:
        assert values(admin, "SHOW USERS") == [
            ["pantau-admin", True],
            ["pantau-writer", False],
            ["pantau-reader", False],
        ]
        assert values(admin, 'SHOW GRANTS FOR "pantau-writer"') == [["pantau", "ALL PRIVILEGES"]]
        assert values(admin, 'SHOW GRANTS FOR "pantau-reader"') == [["pantau", "READ"]]
        assert values(admin, "SHOW DATABASES") == [["pantau"]]
        policies = {row[0] for row in values(admin, 'SHOW RETENTION POLICIES ON "pantau"')}
        assert policies == {"autogen", "downsampled", "pantau_meta"}
    # What it printed names every account and no password.
    assert "CREATE USER \"pantau-writer\" WITH PASSWORD '***'" in done.stdout
    assert 'GRANT READ ON "pantau" TO "pantau-reader"' in done.stdout
    for secret in (ADMIN_PW, WRITER_PW, READER_PW):
        assert secret not in done.stdout + done.stderr


def test_init_db_again_changes_nothing_but_rotates_a_changed_password(
    accounts: InfluxDB, tmp_path: Path
) -> None:
    rotated = "writer-pw-rotated-0123456789"
    done = init_db(accounts, tmp_path, writer_pw=rotated)
    assert done.returncode == 0, done.stderr
    assert "SET PASSWORD FOR \"pantau-writer\" = '***'" in done.stdout
    with client(accounts, "pantau-writer", WRITER_PW) as old:
        with pytest.raises(QueryError) as refused:
            old.query("SHOW MEASUREMENTS")
        assert refused.value.status == 401
    with client(accounts, "pantau-writer", rotated) as new:
        new.write([f"probe,site=a v=1i {now_ms()}"])
    with client(accounts, "pantau-admin", ADMIN_PW) as admin:
        assert len(values(admin, "SHOW USERS")) == 3
        assert values(admin, 'SHOW GRANTS FOR "pantau-writer"') == [["pantau", "ALL PRIVILEGES"]]


def test_the_readers_account_cannot_write(accounts: InfluxDB) -> None:
    with client(accounts, "pantau-reader", READER_PW) as reader:
        with pytest.raises(StorageError) as refused:
            reader.write([f"bed,sensor=x occupied=1i {now_ms()}"])
        assert refused.value.status == 403
        with pytest.raises(QueryError) as into:
            reader.execute(['SELECT * INTO "copy" FROM "bed"'])
        assert into.value.status == 403
        assert values(reader, 'SELECT * FROM "bed"') == []


def test_the_writers_account_cannot_drop_or_make_accounts(accounts: InfluxDB) -> None:
    """InfluxDB 1.x still lets WRITE run DELETE, DROP SERIES and DROP RETENTION POLICY
    (docs/adr/0020 says what that leaves open); everything below needs its admin."""
    with client(accounts, "pantau-writer", WRITER_PW) as writer:
        t = now_ms()
        writer.write([f"bed,sensor=x occupied=1i {t}"])
        for statement in (
            'DROP DATABASE "pantau"',
            'DROP MEASUREMENT "bed"',
            "CREATE USER \"mallory\" WITH PASSWORD 'mallory-0123456789' WITH ALL PRIVILEGES",
            'GRANT ALL ON "pantau" TO "pantau-reader"',
        ):
            with pytest.raises(QueryError) as refused:
                writer.execute([statement])
            assert refused.value.status == 403, statement
        assert values(writer, 'SELECT "occupied" FROM "bed"') == [[t, 1]]


def test_the_writer_keeps_sensor_place_true_when_sensors_are_removed(
    accounts: InfluxDB, city: Registry
) -> None:
    """``sensor_place`` (ADR 0028) is rewritten by the least-privilege writer at every start
    and registry swap: it may write into ``pantau_meta`` (made by init-db) and drop the series
    of removed sensors."""
    doc = city.doc.model_dump(mode="json", exclude_none=True)
    smaller = {**doc, "sensors": [s for s in doc["sensors"] if s["gateway"] != "gw-johar"]}
    removed = len(doc["sensors"]) - len(smaller["sensors"])
    with client(accounts, "pantau-writer", WRITER_PW) as writer:
        assert publish_places(writer, CityIndex.from_registry(city)) == 0
        smaller_index = CityIndex.from_registry(Registry.from_doc(smaller))
        assert publish_places(writer, smaller_index) == removed == 2
        assert len(stored_places(writer)) == len(smaller["sensors"]) == 28


def test_the_writer_refuses_to_start_on_a_server_init_db_never_set_up(
    influxdb_auth: InfluxDB, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    """One sentence that says what to run, exit 2; before, a 403 traceback (exit 1)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PANTAU_")}
    clean |= {
        "PANTAU_MQTT_URL": mosquitto.url,
        "PANTAU_INFLUX_URL": influxdb_auth.url,
        "PANTAU_INFLUX_USERNAME": "pantau-writer",
        "PANTAU_INFLUX_PASSWORD": WRITER_PW,
        "PANTAU_DEAD_LETTER_DIR": str(tmp_path / "dead"),
    }
    done = subprocess.run(
        [sys.executable, "-m", "pantau.cli", "ingest", "run"],
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("pantau ingest: InfluxDB refused a statement while checking database")
    assert "run `pantau ingest init-db` as the admin account once" in last
    assert "Traceback" not in done.stderr


def test_the_pipeline_runs_with_the_writer_and_the_reader(
    accounts: InfluxDB, mosquitto: Mosquitto, city: Registry, tmp_path: Path
) -> None:
    """Broker -> ingester (pantau-writer) -> InfluxDB -> API (pantau-reader)."""
    settings = settings_for(
        mosquitto,
        accounts,
        tmp_path,
        influx_username="pantau-writer",
        influx_password=WRITER_PW,
    )
    t = now_ms() - 30_000
    reading = {
        "sensor": "bed-kariadi-icu",
        "kind": "bed",
        "ts": t,
        "seq": 1,
        "values": {"capacity": 24, "occupied": 7, "suspect": 1, "confirmed": 2, "waiting": 3},
    }
    batch = {"v": 1, "gw": "gw-kariadi", "seq": 1, "sent": now_ms(), "readings": [reading]}
    reader = client(accounts, "pantau-reader", READER_PW)
    with ingester_thread(settings, city), publisher(mosquitto, "gw-kariadi") as pub, reader:
        publish(pub, "pantau/v1/rs-kariadi/gw-kariadi/readings", batch)
        stored = wait_until(
            lambda: values(reader, 'SELECT "occupied" FROM "bed"'), "the reading in InfluxDB"
        )
    assert stored == [[t, 7]]
    (tmp_path / "secrets" / "reader").write_text(READER_PW)
    with running_api(
        tmp_path,
        accounts,
        PANTAU_INFLUX_USERNAME="pantau-reader",
        PANTAU_INFLUX_PASSWORD_FILE=str(tmp_path / "secrets" / "reader"),
    ) as api:
        hour = 3_600_000
        start = t // hour * hour
        params = {"group": "icu", "from": str(start), "to": str(start + hour), "interval": "1h"}
        body = httpx.get(f"{api.url}/v1/beds/history", params=params, timeout=10).json()
    got = [(i["capacity"], i["occupied"], i["free"], i["bor"]) for i in body["items"]]
    assert got == [(24, 7, 17, 7 * 100.0 / 24)]

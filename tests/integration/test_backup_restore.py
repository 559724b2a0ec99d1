"""``pantau backup`` of a running city (real Mosquitto, InfluxDB and ingester), the data dirs
wiped, ``pantau restore`` into fresh services: the API answers with the same numbers and
history, and the dead letters, the broker's accounts and the retained status are back."""

from __future__ import annotations

import json
import shutil
import tarfile
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from city import DEMO_CITY, Registry
from cloud.influx import InfluxHTTP
from cloud.ingest import DeadLetterStore
from contract import Channel, topics
from pantau.backup_manifest import FORMAT_VERSION, MANIFEST_NAME
from pantau.services import InfluxDB, Mosquitto
from tests.backup_support import api_numbers, backup_env, gateway_state, pantau
from tests.ingest_support import (
    ingester_thread,
    make_stream,
    now_ms,
    publishing,
    raw_count,
    settings_for,
    wait_for,
)
from tests.payload_support import status

pytestmark = pytest.mark.integration

GATEWAYS = ["gw-kariadi", "gw-iso-tegalsari"]
READINGS = topics.build("rs-kariadi", "gw-kariadi", Channel.READINGS)
STATUS = topics.build("rs-kariadi", "gw-kariadi", Channel.STATUS)


def _send(client: mqtt.Client, topic: str, payload: bytes, *, retain: bool = False) -> None:
    info = client.publish(topic, payload, qos=1, retain=retain)
    info.wait_for_publish(10)
    assert info.is_published()


def test_a_backup_restored_into_fresh_services_gives_the_same_answers(
    tmp_path: Path, city: Registry
) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    archive = tmp_path / "backups" / "city.tar.gz"
    t0 = now_ms() - 120_000
    stream = make_stream(city, GATEWAYS, batches=4, t0=t0)
    window = {"since_ms": t0 - 3_600_000, "until_ms": now_ms() + 3_600_000}
    city_file = first / "city.yaml"
    city_file.parent.mkdir(parents=True)
    shutil.copy(DEMO_CITY, city_file)

    with (
        Mosquitto(workdir=first / "mosquitto") as broker,
        InfluxDB(workdir=first / "influxdb") as influxdb,
    ):
        settings = settings_for(broker, influxdb, first)
        with ingester_thread(settings, city), publishing(broker, GATEWAYS) as pub:
            for msg in stream.messages:
                pub.publish(msg)
            _send(pub.clients["gw-kariadi"], READINGS, b'{"v": 1, "gw": ')
            _send(pub.clients["gw-kariadi"], STATUS, status("online", now_ms()), retain=True)
            with InfluxHTTP(url=influxdb.url) as influx:
                wait_for(lambda: raw_count(influx) == len(stream.rows), "every reading stored")
            dead = DeadLetterStore(directory=settings.dead_letter_dir)
            wait_for(lambda: len(dead.read()) == 1, "the refused message dead-lettered")
        before = api_numbers(broker, influxdb, city, **window)
        assert gateway_state(broker, influxdb, city, "gw-kariadi") == "online"
        env = backup_env(
            influxdb=influxdb,
            broker_dir=broker.workdir,
            dead_letter_dir=settings.dead_letter_dir,
            city_file=city_file,
        )
        assert broker.proc is not None
        result = pantau(["backup", str(archive), "--broker-pid", str(broker.proc.pid)], env)
        assert result.exit_code == 0, result.output
    dead_before = dead.read()
    shutil.rmtree(first)  # the disk failure

    with tarfile.open(archive) as tar:
        names = tar.getnames()
        member = tar.extractfile(MANIFEST_NAME)
        assert member is not None
        manifest = json.loads(member.read())
    assert names[0] == MANIFEST_NAME
    assert manifest["format_version"] == FORMAT_VERSION
    assert [p["name"] for p in manifest["parts"]] == [
        "influxdb",
        "registry",
        "broker",
        "dead_letters",
    ]

    with InfluxDB(workdir=second / "influxdb") as influxdb:
        broker = Mosquitto(workdir=second / "mosquitto")
        env = backup_env(
            influxdb=influxdb,
            broker_dir=broker.workdir,
            dead_letter_dir=second / "dead",
            city_file=second / "city.yaml",
        )
        result = pantau(["restore", str(archive)], env)
        assert result.exit_code == 0, result.output
        with broker:
            after = api_numbers(broker, influxdb, city, **window)
            # The device accounts came back too: gw-kariadi logs in with its old password.
            assert gateway_state(broker, influxdb, city, "gw-kariadi") == "online"
            with ingester_thread(settings_for(broker, influxdb, second), city):
                pass  # the restored store opens, and the ingester starts, on restored data
    assert after == before
    # The seeded stream's city: 47 of 140 beds occupied, now and in the last history bucket.
    (now,) = before["summary"]["items"]
    assert (now["capacity"], now["occupied"], now["sensors"]) == (140, 47, 6)
    assert before["history"]["items"][-1]["occupied"] == 47
    assert before["wards"]["count"] == 5
    assert DeadLetterStore(directory=second / "dead").read() == dead_before
    assert (second / "city.yaml").read_bytes() == DEMO_CITY.read_bytes()

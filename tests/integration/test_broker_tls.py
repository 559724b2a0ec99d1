"""TLS to the broker against a real Mosquitto TLS listener, with certificates made by the code of
``pantau broker certs``: the right CA connects and data flows (edge agent, ingester, the
operator's broker control); a wrong CA, an expired server certificate or a missing CA file
fail, and the edge's status file and ``pantau edge status`` say why in words. The optional
client-certificate listener takes a device's certificate as its identity."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import orjson
import paho.mqtt.client as mqtt
import pytest
from fastapi.testclient import TestClient
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.reasoncodes import ReasonCode
from pydantic import SecretStr
from typer.testing import CliRunner

from city import Registry
from cloud.api import ApiSettings, create_app
from cloud.influx import InfluxHTTP
from cloud.ingest.service import Ingester
from contract import GatewayStatus, encode_frame
from contract.mqtttls import tls_context
from contract.topics import Channel, build
from edge import EdgeAgent
from edge.cli import app
from edge.mqtt import Link
from pantau.certs import make_certs
from pantau.dynsec import control_for
from pantau.services import InfluxDB, Mosquitto
from tests.edge_support import GW, SITE, Watcher, bed, make_settings, running, wait_for
from tests.ingest_support import now_ms, publish, publisher, raw_count, settings_for
from tests.ingest_support import running as ingesting
from tests.tls_support import expired, make_broker_certs, valid_now

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("no_pantau_env")]

NOT_OUR_CA = "TLS: certificate not signed by the configured CA (PANTAU_MQTT_CA_FILE)"
EXPIRED = "TLS: the broker's certificate has expired"
WRONG_HOST = "TLS: the broker's certificate does not name the address in PANTAU_MQTT_URL"


def test_an_edge_agent_with_the_right_ca_publishes_over_tls(
    mosquitto_tls: Mosquitto, broker_certs: Path, pty_pair: tuple[int, str], tmp_path: Path
) -> None:
    master, port = pty_pair
    settings = make_settings(
        mosquitto_tls,
        tmp_path,
        {"bus0": port},
        mqtt_url=mosquitto_tls.tls_url,
        mqtt_ca_file=broker_certs / "ca.crt",
    )
    assert settings.mqtt_url.tls
    with Watcher(mosquitto_tls) as watcher, running(EdgeAgent(settings=settings)) as agent:
        wait_for(lambda: agent.link.state is Link.CONNECTED, "the TLS link")
        for seq in range(3):
            os.write(master, encode_frame(bed("icu-1", seq, 1_700_000_000_000 + seq)))
        wait_for(lambda: len(watcher.readings()) == 3, "3 readings through the TLS listener")
    assert [(r.sensor, r.seq) for r in watcher.readings()] == [("icu-1", i) for i in range(3)]
    assert agent.link.reason == ""


@contextlib.contextmanager
def _broker_with(certs: Path, workdir: Path) -> Iterator[Mosquitto]:
    with Mosquitto(workdir=workdir, tls_dir=certs) as broker:
        yield broker


@pytest.mark.parametrize("case", ["wrong CA", "expired", "wrong host", "missing CA file"])
def test_a_tls_failure_is_in_words_in_the_status_file_and_pantau_edge_status(
    case: str, mosquitto_tls: Mosquitto, pty_pair: tuple[int, str], tmp_path: Path
) -> None:
    _master, port = pty_pair
    ca_file = tmp_path / "other" / "ca.crt"
    with contextlib.ExitStack() as stack:
        broker = mosquitto_tls
        if case == "wrong CA":
            make_broker_certs(tmp_path / "other")  # a CA of its own, not the broker's
            expected = NOT_OUR_CA
        elif case == "missing CA file":
            expected = f"TLS: PANTAU_MQTT_CA_FILE {ca_file}: No such file or directory"
        else:
            # A broker of its own: a certificate that expired nine days ago, or one that names
            # another host than the 127.0.0.1 the agent dials. Its CA is the agent's.
            certs = tmp_path / "own-certs"
            if case == "expired":
                make_broker_certs(certs, valid=expired())
                expected = EXPIRED
            else:
                make_certs(certs, hosts=["broker.example"], clients=[], valid=valid_now())
                expected = WRONG_HOST
            broker = stack.enter_context(_broker_with(certs, tmp_path / "own-broker"))
            ca_file = certs / "ca.crt"
        settings = make_settings(
            broker, tmp_path, {"bus0": port}, mqtt_url=broker.tls_url, mqtt_ca_file=ca_file
        )

        def link_reason() -> str:
            try:
                doc = GatewayStatus.model_validate_json(settings.status_file.read_bytes())
            except (OSError, ValueError):
                return ""
            return str(doc.stats["link_reason"])

        with running(EdgeAgent(settings=settings)) as agent:
            wait_for(lambda: link_reason() != "", "a status file with the TLS failure")
            assert agent.link.state is not Link.CONNECTED
    assert link_reason() == expected
    shown = CliRunner().invoke(app, ["status", str(settings.status_file), "--summary"])
    assert shown.exit_code == 0, shown.output
    assert "UPLINK DOWN since" in shown.stderr
    assert f"  latest attempt: {expected}" in shown.stderr
    assert orjson.loads(shown.stdout)["stats"]["link_loss_reason"] == ""  # never was up


def _batch(*, occupied: int) -> dict[str, object]:
    """One gw-kariadi batch: the ICU ward (24 beds) with ``occupied`` beds taken, a second ago."""
    ts = now_ms() - 1000
    reading = {"capacity": 24, "occupied": occupied, "suspect": 1, "confirmed": 2, "waiting": 0}
    return {
        "v": 1,
        "gw": "gw-kariadi",
        "seq": 1,
        "sent": ts,
        "readings": [
            {"sensor": "bed-kariadi-icu", "kind": "bed", "ts": ts, "seq": 1, "values": reading}
        ],
    }


def test_the_ingester_consumes_over_tls_with_the_ca_setting(
    mosquitto_tls: Mosquitto,
    broker_certs: Path,
    influxdb: InfluxDB,
    city: Registry,
    tmp_path: Path,
) -> None:
    settings = settings_for(
        mosquitto_tls,
        influxdb,
        tmp_path,
        mqtt_url=mosquitto_tls.tls_url,
        mqtt_ca_file=broker_certs / "ca.crt",
    )
    assert (settings.mqtt_url.port, settings.mqtt_url.tls) == (mosquitto_tls.tls_port, True)
    with (
        ingesting(Ingester(settings=settings, registry=city)),
        publisher(mosquitto_tls, "gw-kariadi") as client,
    ):
        publish(client, build("rs-kariadi", "gw-kariadi", Channel.READINGS), _batch(occupied=20))
        with InfluxHTTP(url=influxdb.url, database="pantau") as influx:
            wait_for(lambda: raw_count(influx) == 1, "the reading stored by the TLS ingester")


def test_the_api_follows_state_and_streams_over_tls_with_the_ca_setting(
    mosquitto_tls: Mosquitto,
    broker_certs: Path,
    influxdb: InfluxDB,
    city: Registry,
    tmp_path: Path,
) -> None:
    """The API's two broker clients (the state follower, paho; the live hub, aiomqtt) dial the
    TLS listener with PANTAU_MQTT_CA_FILE, and a reading taken by a TLS ingester reaches
    /v1/beds."""
    tls = {"mqtt_url": mosquitto_tls.tls_url, "mqtt_ca_file": broker_certs / "ca.crt"}
    api = ApiSettings(
        influx_url=influxdb.url,
        mqtt_username="pantau-api",
        mqtt_password=SecretStr(mosquitto_tls.users["pantau-api"]),
        **tls,  # type: ignore[arg-type]
    )
    with (
        ingesting(
            Ingester(settings=settings_for(mosquitto_tls, influxdb, tmp_path, **tls), registry=city)
        ),
        TestClient(create_app(api, registry=city)) as client,
        publisher(mosquitto_tls, "gw-kariadi") as pub,
    ):
        state = client.app.state  # type: ignore[attr-defined]
        assert state.follower.subscribed.wait(20), "the follower did not subscribe over TLS"
        wait_for(state.hub.subscribed.is_set, "the live hub subscribed over TLS")
        publish(pub, build("rs-kariadi", "gw-kariadi", Channel.READINGS), _batch(occupied=17))

        def icu_occupied() -> object:
            items = client.get("/v1/beds", params={"site": "rs-kariadi"}).json()["items"]
            return next(w["occupied"] for w in items if w["sensor"] == "bed-kariadi-icu")

        wait_for(lambda: icu_occupied() == 17, "the reading in the API")


def test_pantau_broker_control_dials_mqtts_with_the_ca_from_the_environment(
    mosquitto_tls: Mosquitto, broker_certs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PANTAU_MQTT_CA_FILE", str(broker_certs / "ca.crt"))
    with control_for(mosquitto_tls.tls_url, mosquitto_tls.users["pantau-admin"]) as ctl:
        assert (ctl.host, ctl.port) == ("127.0.0.1", mosquitto_tls.tls_port)


def _cert_client(
    broker: Mosquitto, certs: Path, device: str | None
) -> tuple[mqtt.Client, list[ReasonCode]]:
    """A client of the certificate listener presenting ``device``'s certificate (or none), no
    username or password; returns it connected (or refused) and the publish reason codes."""
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=device or "anon", protocol=MQTTProtocolVersion.MQTTv5
    )
    pair = certs / "clients" / f"{device}"
    client.tls_set_context(
        tls_context(
            ca_file=certs / "ca.crt",
            cert_file=pair.with_suffix(".crt") if device else None,
            key_file=pair.with_suffix(".key") if device else None,
        )
    )
    acks: list[ReasonCode] = []
    answered = threading.Event()
    client.on_connect = lambda c, u, f, rc, p: answered.set()
    client.on_disconnect = lambda c, u, f, rc, p: answered.set()
    client.on_publish = lambda c, u, mid, rc, p: acks.append(rc)
    client.connect(broker.host, broker.cert_port)
    client.loop_start()
    assert answered.wait(10)
    return client, acks


def test_the_certificate_listener_takes_the_certificate_as_the_identity(
    mosquitto_tls: Mosquitto, broker_certs: Path
) -> None:
    """With ``use_identity_as_username`` the certificate's CN is the account: no password, and
    the account's topic rights still hold (its own topics only)."""
    mosquitto_tls.add_user(GW, "unused-password-of-gw-test", site=SITE)
    client, acks = _cert_client(mosquitto_tls, broker_certs, GW)
    try:
        assert client.is_connected()
        own = client.publish(build(SITE, GW, Channel.STATUS), b"{}", qos=1)
        other = client.publish(build("rs-other", "gw-other", Channel.STATUS), b"{}", qos=1)
        own.wait_for_publish(5)
        other.wait_for_publish(5)
    finally:
        client.disconnect()
        client.loop_stop()
    assert [rc.getName() for rc in acks] == ["No matching subscribers", "Not authorized"]
    anonymous, _ = _cert_client(mosquitto_tls, broker_certs, None)
    anonymous.loop_stop()
    assert not anonymous.is_connected()  # no certificate, no connection

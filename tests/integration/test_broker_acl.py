"""The broker policy in mosquitto/ (the same files production mounts) and the identities of
pantau.broker_identity on a real Mosquitto: who may connect with which client id, who may say
what on which topic, what a device can make the broker hold, and how big a message may be.

A refused publish is silently dropped by Mosquitto, so "not delivered" is proven with a
sentinel: the same connection then publishes an allowed message, and Mosquitto (one thread,
in order) must have routed the refused one first if it routed it at all."""

from __future__ import annotations

import io
import os
import subprocess
from pathlib import Path

import pytest
import yaml
from paho.mqtt.enums import MQTTProtocolVersion

from contract.payload import MAX_PAYLOAD_BYTES
from pantau.deploy import write_secrets
from pantau.paths import COMPOSE_FILE
from pantau.services import Mosquitto
from tests.broker_support import NO_MATCHING_SUBSCRIBERS, NOT_AUTHORIZED, Peer

pytestmark = pytest.mark.integration

GW_A_READINGS = "pantau/v1/rs-a/gw-a/readings"
GW_B_READINGS = "pantau/v1/rs-b/gw-b/readings"
GW_A_CMD = "pantau/v1/rs-a/gw-a/cmd"
GW_B_CMD = "pantau/v1/rs-b/gw-b/cmd"


@pytest.fixture
def broker(mosquitto: Mosquitto) -> Mosquitto:
    mosquitto.add_user("gw-a", "gw-a-pw", site="rs-a")
    mosquitto.add_user("gw-b", "gw-b-pw", site="rs-b")
    return mosquitto


def test_anonymous_clients_are_refused(broker: Mosquitto) -> None:
    with Peer(broker, None) as anon:
        assert not anon.accepted
        assert anon.connack is not None
        assert anon.connack.value == NOT_AUTHORIZED


def test_a_wrong_password_is_refused_and_the_right_one_accepted(broker: Mosquitto) -> None:
    with Peer(broker, "gw-a", "not-the-password") as peer:
        assert not peer.accepted
        assert peer.connack is not None
        # Mosquitto says "not authorized", not "bad password": it does not confirm user names.
        assert peer.connack.value == NOT_AUTHORIZED
    with Peer(broker, "gw-a", "gw-a-pw") as peer:
        assert peer.accepted


def test_a_gateway_publishes_its_readings_to_the_ingester(broker: Mosquitto) -> None:
    with (
        Peer(broker, "pantau-ingest", "pantau-ingest-secret", "pantau-ingest-1") as ingest,
        Peer(broker, "gw-a", "gw-a-pw") as gw,
    ):
        assert ingest.subscribe("pantau/v1/+/+/readings") == [1]
        assert gw.publish(GW_A_READINGS, b"batch-1") == 0
        assert ingest.wait_for(GW_A_READINGS, b"batch-1") == [(GW_A_READINGS, b"batch-1")]


def test_a_gateway_cannot_speak_as_another_gateway(broker: Mosquitto) -> None:
    with (
        Peer(broker, "pantau-api", "pantau-api-secret") as watcher,
        Peer(broker, "gw-a", "gw-a-pw") as gw,
    ):
        watcher.subscribe("pantau/v1/#")
        assert gw.publish(GW_B_READINGS, b"forged") == NOT_AUTHORIZED
        gw.publish(GW_A_READINGS, b"sentinel")
        assert watcher.wait_for(GW_A_READINGS, b"sentinel") == [(GW_A_READINGS, b"sentinel")]


def test_a_gateway_may_subscribe_only_to_its_own_commands(broker: Mosquitto) -> None:
    with (
        Peer(broker, "gw-a", "gw-a-pw") as gw,
        Peer(broker, "pantau-ops", "pantau-ops-secret") as ops,
    ):
        assert gw.subscribe("pantau/v1/+/+/cmd") == [NOT_AUTHORIZED]
        assert gw.subscribe(GW_B_CMD) == [NOT_AUTHORIZED]
        assert gw.subscribe("pantau/v1/rs-b/gw-a/cmd") == [NOT_AUTHORIZED]
        assert gw.subscribe(GW_A_CMD) == [1]
        assert ops.publish(GW_B_CMD, b"for-b") == NO_MATCHING_SUBSCRIBERS
        assert ops.publish(GW_A_CMD, b"for-a") == 0
        assert gw.wait_for(GW_A_CMD, b"for-a") == [(GW_A_CMD, b"for-a")]


def test_the_ingester_account_cannot_publish_readings(broker: Mosquitto) -> None:
    with (
        Peer(broker, "pantau-api", "pantau-api-secret") as watcher,
        Peer(broker, "pantau-ingest", "pantau-ingest-secret", "pantau-ingest-1") as ingest,
        Peer(broker, "gw-a", "gw-a-pw") as gw,
    ):
        watcher.subscribe("pantau/v1/#")
        # The PUBACK comes after Mosquitto has routed (or dropped) the message, so the sentinel
        # published afterwards is necessarily routed later.
        assert ingest.publish(GW_A_READINGS, b"forged-by-ingest") == NOT_AUTHORIZED
        gw.publish(GW_A_READINGS, b"sentinel")
        assert watcher.wait_for(GW_A_READINGS, b"sentinel") == [(GW_A_READINGS, b"sentinel")]


def test_a_payload_over_the_packet_limit_is_refused_by_the_broker(broker: Mosquitto) -> None:
    at_limit = b"x" * MAX_PAYLOAD_BYTES
    over = b"y" * 300_000
    with Peer(broker, "pantau-ingest", "pantau-ingest-secret", "pantau-ingest-1") as ingest:
        ingest.subscribe("pantau/v1/+/+/readings")
        # MQTT 3.1.1, so the client does not know the broker's limit and really sends it.
        with Peer(broker, "gw-a", "gw-a-pw", protocol=MQTTProtocolVersion.MQTTv311) as gw:
            assert gw.publish(GW_A_READINGS, at_limit) == 0
            gw.publish(GW_A_READINGS, over, wait=False)
            gw.wait_disconnected()
        with Peer(broker, "gw-a", "gw-a-pw") as gw:
            gw.publish(GW_A_READINGS, b"sentinel")
        received = ingest.wait_for(GW_A_READINGS, b"sentinel")
        assert [len(payload) for _, payload in received] == [MAX_PAYLOAD_BYTES, 8]


# --- identity: an account is bound to one client id -------------------------------------------


def test_a_device_cannot_take_another_devices_client_id(broker: Mosquitto) -> None:
    """gw-b's valid password with gw-a's client id is refused, and gw-a keeps its session."""
    with (
        Peer(broker, "pantau-api", "pantau-api-secret") as watcher,
        Peer(broker, "gw-a", "gw-a-pw") as gw_a,
    ):
        watcher.subscribe("pantau/v1/#")
        with Peer(broker, "gw-b", "gw-b-pw", client_id="gw-a") as thief:
            assert not thief.accepted
            assert thief.connack is not None
            assert thief.connack.value == NOT_AUTHORIZED
        assert gw_a.publish(GW_A_READINGS, b"still-here") == 0
        assert watcher.wait_for(GW_A_READINGS, b"still-here") == [(GW_A_READINGS, b"still-here")]
        assert not gw_a.disconnected


def test_a_device_cannot_take_the_ingesters_client_id(broker: Mosquitto) -> None:
    with (
        Peer(broker, "pantau-ingest", "pantau-ingest-secret", "pantau-ingest-1") as ingest,
        Peer(broker, "gw-a", "gw-a-pw") as gw_a,
    ):
        ingest.subscribe("pantau/v1/+/+/readings")
        with Peer(broker, "gw-b", "gw-b-pw", client_id="pantau-ingest-1") as thief:
            assert not thief.accepted
        assert gw_a.publish(GW_A_READINGS, b"after") == 0
        assert ingest.wait_for(GW_A_READINGS, b"after") == [(GW_A_READINGS, b"after")]
        assert not ingest.disconnected


def test_service_accounts_are_bound_to_their_client_ids_too(broker: Mosquitto) -> None:
    with Peer(broker, "gw-a", "gw-a-pw") as gw_a:
        for user, other_id in (
            ("pantau-ops", "gw-a"),
            ("pantau-api", "pantau-ingest-1"),
            ("pantau-ingest", "pantau-ingest"),
        ):
            with Peer(broker, user, f"{user}-secret", client_id=other_id) as peer:
                assert not peer.accepted, (user, other_id)
        assert gw_a.publish(GW_A_READINGS, b"x") == NO_MATCHING_SUBSCRIBERS
        assert not gw_a.disconnected


# --- topics: a device speaks only under its own site and id -----------------------------------


def test_a_device_cannot_publish_or_retain_under_another_site(broker: Mosquitto) -> None:
    """gw-a is registered at rs-a: its own id under rs-b is as forbidden as another id."""
    forged = "pantau/v1/rs-b/gw-a/readings"
    forged_status = "pantau/v1/rs-b/gw-a/status"
    with (
        Peer(broker, "pantau-api", "pantau-api-secret") as watcher,
        Peer(broker, "gw-a", "gw-a-pw") as gw,
    ):
        watcher.subscribe("pantau/v1/#")
        assert gw.publish(forged, b"forged") == NOT_AUTHORIZED
        assert gw.publish(forged_status, b"forged", retain=True) == NOT_AUTHORIZED
        assert gw.publish("pantau/v1/rs-a/gw-a/junk", b"junk", retain=True) == NOT_AUTHORIZED
        gw.publish(GW_A_READINGS, b"sentinel")
        assert watcher.wait_for(GW_A_READINGS, b"sentinel") == [(GW_A_READINGS, b"sentinel")]


def test_a_device_can_make_the_broker_hold_only_its_own_status_and_channels(
    broker: Mosquitto,
) -> None:
    """Retained junk is bounded: of 40 retained publishes on 40 topics, only those on the
    device's own channels are held, and a new subscriber gets exactly those."""
    own_status = "pantau/v1/rs-a/gw-a/status"
    attempts = [f"pantau/v1/rs-{i}/gw-a/status" for i in range(36)]
    attempts += [own_status, "pantau/v1/rs-a/gw-a/reading", "pantau/v1/rs-a/gw-b/status"]
    attempts += ["pantau/v1/rs-a/gw-a/cmd"]
    with Peer(broker, "gw-a", "gw-a-pw") as gw:
        codes = {t: gw.publish(t, b"retained", retain=True) for t in attempts}
    # Nobody subscribes yet: the accepted one is held for later subscribers, not delivered.
    assert [t for t, rc in codes.items() if rc == NO_MATCHING_SUBSCRIBERS] == [own_status]
    assert sum(rc == NOT_AUTHORIZED for rc in codes.values()) == 39
    with (
        Peer(broker, "pantau-api", "pantau-api-secret") as late,
        Peer(broker, "gw-b", "gw-b-pw") as gw_b,
    ):
        late.subscribe("pantau/v1/#")
        # Retained messages are queued to the subscriber before any later publish is routed.
        gw_b.publish(GW_B_READINGS, b"sentinel")
        assert late.wait_for(GW_B_READINGS, b"sentinel") == [
            (own_status, b"retained"),
            (GW_B_READINGS, b"sentinel"),
        ]


def test_a_direct_device_publishes_single_readings_and_nothing_else(broker: Mosquitto) -> None:
    broker.add_user("kiosk-x", "kiosk-x-pw", site="rs-a", kind="direct")
    with (
        Peer(broker, "pantau-api", "pantau-api-secret") as watcher,
        Peer(broker, "kiosk-x", "kiosk-x-pw") as kiosk,
    ):
        watcher.subscribe("pantau/v1/#")
        assert kiosk.publish("pantau/v1/rs-a/kiosk-x/readings", b"batch") == NOT_AUTHORIZED
        assert kiosk.subscribe("pantau/v1/rs-a/kiosk-x/cmd") == [NOT_AUTHORIZED]
        assert kiosk.publish("pantau/v1/rs-a/kiosk-x/reading", b"one") == 0
        assert watcher.wait_for("pantau/v1/rs-a/kiosk-x/reading", b"one") == [
            ("pantau/v1/rs-a/kiosk-x/reading", b"one")
        ]


# --- changes without a restart ----------------------------------------------------------------


def test_a_device_added_while_the_broker_runs_connects_and_a_deleted_one_is_cut_off(
    broker: Mosquitto,
) -> None:
    broker.add_user("gw-new", "gw-new-pw", site="rs-a")
    with Peer(broker, "gw-new", "gw-new-pw") as gw:
        assert gw.accepted
        with broker.control() as ctl:
            ctl.delete_device("gw-new")
        gw.wait_disconnected()
    with Peer(broker, "gw-new", "gw-new-pw") as again:
        assert not again.accepted


def test_a_new_password_for_a_known_device_replaces_the_old_one_at_once(
    broker: Mosquitto,
) -> None:
    with Peer(broker, "gw-a", "gw-a-pw") as gw:
        broker.add_user("gw-a", "gw-a-new-pw", site="rs-a")
        gw.wait_disconnected()
    with Peer(broker, "gw-a", "gw-a-pw") as old:
        assert not old.accepted
    with Peer(broker, "gw-a", "gw-a-new-pw") as new:
        assert new.accepted


def test_the_compose_healthcheck_passes_on_the_real_policy_and_fails_on_a_bad_password(
    broker: Mosquitto, tmp_path: Path
) -> None:
    """The broker container's healthcheck, exactly as docker-compose.yml writes it (only the
    port differs), logs in with its own account and reads one $SYS topic; its password comes
    from the options file `pantau deploy secrets` writes, never from its command line."""
    compose = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    kind, *argv = compose["services"]["mosquitto"]["healthcheck"]["test"]
    assert kind == "CMD"
    argv = [w.replace("$$", "$") for w in argv]  # compose's escape for a literal $
    argv[argv.index("-p") + 1] = str(broker.port)
    assert compose["services"]["mosquitto"]["environment"] == {"XDG_CONFIG_HOME": "/run/secrets"}

    def check(password: str) -> int:
        secrets = tmp_path / password
        write_secrets(secrets, io.StringIO(f"pantau-health pantau-health {password}\n"))
        env = {**os.environ, "XDG_CONFIG_HOME": str(secrets)}
        return subprocess.run(argv, env=env, timeout=20, check=False).returncode

    assert check(broker.users["pantau-health"]) == 0
    assert check("wrong") == 5  # CONNACK "not authorised"
    assert broker.users["pantau-health"] not in " ".join(argv)

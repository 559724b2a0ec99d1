"""``pantau broker init|add-device|passwd|revoke|list`` against a real Mosquitto: identities are
created, added, rotated and revoked on the running broker, with no restart, and only for
names the registry knows."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from city import Registry
from contract.status import GatewayState, GatewayStatus
from pantau.broker_cli import ADMIN_PASSWORD_ENV, broker_app
from pantau.services import Mosquitto
from tests.broker_support import NOT_AUTHORIZED, Peer

pytestmark = pytest.mark.integration

STATUS = "pantau/v1/rs-kariadi/gw-kariadi/status"


def _run(broker: Mosquitto | None, *args: str) -> tuple[int, str]:
    env = {} if broker is None else {ADMIN_PASSWORD_ENV: broker.users["pantau-admin"]}
    url = [] if broker is None or args[0] == "init" else ["--url", broker.url]
    result = CliRunner().invoke(broker_app, [*args, *url], env=env)
    return result.exit_code, result.output


def _passwords(output: str) -> dict[str, str]:
    return {line.split()[0]: line.split()[-1] for line in output.splitlines()}


def test_init_writes_every_account_once_and_a_broker_starts_on_it(
    tmp_path: Path, city: Registry
) -> None:
    identity = tmp_path / "broker" / "dynamic-security.json"
    code, out = _run(None, "init", str(identity), "--ingest-members", "3")
    assert code == 0
    lines = [line.split() for line in out.splitlines()]
    services = [
        "pantau-ingest",
        "pantau-api",
        "pantau-ops",
        "pantau-admin",
        "pantau-replay",
        "pantau-health",
    ]
    members = ["pantau-ingest-2", "pantau-ingest-3"]
    assert [u for u, _, _ in lines] == [*services, *members, *city.gateways]
    assert {u: c for u, c, _ in lines}["pantau-ingest"] == "pantau-ingest-1"
    assert all(u == c for u, c, _ in lines if u != "pantau-ingest")
    assert len({pw for _, _, pw in lines}) == len(lines)  # every password its own
    assert stat.S_IMODE(identity.stat().st_mode) == 0o600
    # The broker's live state is never overwritten by accident.
    before = identity.read_bytes()
    assert _run(None, "init", str(identity))[0] == 2
    assert identity.read_bytes() == before

    pw = {u: p for u, _, p in lines}
    with Mosquitto(workdir=identity.parent, users={"pantau-admin": pw["pantau-admin"]}) as broker:
        with Peer(broker, "gw-kariadi", pw["gw-kariadi"]) as gw:
            assert gw.accepted
        with Peer(broker, "pantau-ingest-3", pw["pantau-ingest-3"]) as member:
            assert member.accepted
        with Peer(broker, "gw-kariadi", pw["gw-kariadi"], client_id="pantau-gw-gw-kariadi") as old:
            assert not old.accepted


def test_add_device_works_on_the_running_broker_and_refuses_unregistered_ids(
    mosquitto: Mosquitto,
) -> None:
    assert _run(mosquitto, "add-device", "gw-ghost")[0] == 2
    code, out = _run(mosquitto, "add-device", "gw-kariadi")
    assert code == 0
    with Peer(mosquitto, "gw-kariadi", _passwords(out)["gw-kariadi"]) as gw:
        assert gw.accepted
        assert gw.publish("pantau/v1/rs-kariadi/gw-kariadi/readings", b"x") == 16
        assert gw.publish("pantau/v1/rs-wongsonegoro/gw-kariadi/readings", b"x") == (NOT_AUTHORIZED)


def test_passwd_rotates_only_named_registry_accounts(mosquitto: Mosquitto) -> None:
    mosquitto.add_user("gw-kariadi", "old-pw")
    code, out = _run(mosquitto, "passwd", "--user", "gw-nope", "--user", "gw-kariadi")
    assert (code, out.strip()) == (2, "unknown to the registry and not a service account: gw-nope")
    # Without --user nothing is reset at all (it used to reset every account).
    assert _run(mosquitto, "passwd")[0] == 2
    with Peer(mosquitto, "gw-kariadi", "old-pw") as gw:
        assert gw.accepted
        code, out = _run(mosquitto, "passwd", "--user", "gw-kariadi")
        assert code == 0
        gw.wait_disconnected()  # the old secret's session ends at once
    with Peer(mosquitto, "gw-kariadi", "old-pw") as old:
        assert not old.accepted
    with Peer(mosquitto, "gw-kariadi", _passwords(out)["gw-kariadi"]) as new:
        assert new.accepted
    # No service account was touched.
    with Peer(mosquitto, "pantau-ingest", "pantau-ingest-secret", "pantau-ingest-1") as ingest:
        assert ingest.accepted


def test_revoke_cuts_the_device_off_refuses_it_and_clears_its_retained_status(
    mosquitto: Mosquitto,
) -> None:
    mosquitto.add_user("gw-kariadi", "gw-pw")
    with Peer(mosquitto, "gw-kariadi", "gw-pw") as gw:
        assert gw.publish(STATUS, b'{"online": true}', retain=True) == 16
        assert _run(mosquitto, "revoke", "pantau-ops")[0] == 2
        code, out = _run(mosquitto, "revoke", "gw-kariadi")
        assert (code, out.strip()) == (0, "gw-kariadi revoked")
        gw.wait_disconnected()
    with Peer(mosquitto, "gw-kariadi", "gw-pw") as again:
        assert not again.accepted
    with Peer(mosquitto, "pantau-api", "pantau-api-secret") as api:
        api.subscribe("pantau/v1/#")
        with Peer(mosquitto, "pantau-ops", "pantau-ops-secret") as ops:
            ops.publish("pantau/v1/rs-kariadi/gw-kariadi/cmd", b"sentinel")
        assert api.wait_for("pantau/v1/rs-kariadi/gw-kariadi/cmd", b"sentinel") == [
            ("pantau/v1/rs-kariadi/gw-kariadi/cmd", b"sentinel")
        ]


def test_list_shows_every_account_its_client_id_and_each_devices_last_status(
    mosquitto: Mosquitto,
) -> None:
    mosquitto.add_user("gw-kariadi", "gw-pw")
    mosquitto.add_user("kiosk-candisari", "kiosk-pw")
    status = GatewayStatus(gw="gw-kariadi", state=GatewayState.ONLINE, ts=1_764_000_000_000)
    with Peer(mosquitto, "gw-kariadi", "gw-pw") as gw:
        assert gw.publish(STATUS, status.model_dump_json().encode(), retain=True) == 16
    code, out = _run(mosquitto, "list")
    assert code == 0
    assert out.splitlines() == [
        "gw-kariadi client-id=gw-kariadi roles=device-gw-kariadi online since 2025-11-24 16:00:00Z",
        "kiosk-candisari client-id=kiosk-candisari roles=device-kiosk-candisari no status",
        "pantau-admin client-id=pantau-admin roles=pantau-admin",
        "pantau-api client-id=pantau-api roles=pantau-api",
        "pantau-health client-id=pantau-health roles=pantau-health",
        "pantau-ingest client-id=pantau-ingest-1 roles=pantau-ingest",
        "pantau-ops client-id=pantau-ops roles=pantau-ops",
        "pantau-replay client-id=pantau-replay roles=pantau-replay",
    ]

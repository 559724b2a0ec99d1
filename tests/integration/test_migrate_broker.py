"""The previous release's broker accounts (a mosquitto_passwd file, git 5ecc6cb) carried into
the dynamic security file: on a real Mosquitto every device and service logs in with the
password it had, bound to its id with its rights from the registry; names outside the
registry are left out; accounts the old file lacked get a new password, printed once."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from contract import Channel, topics
from pantau.cli import app
from pantau.services import Mosquitto, require_binary
from tests.broker_support import NO_MATCHING_SUBSCRIBERS, NOT_AUTHORIZED, Peer

pytestmark = pytest.mark.integration

OLD = {"gw-kariadi": "kariadi-old-pw-1", "pantau-ingest": "ingest-old-pw-2", "gw-gone": "x-3"}


def _old_passwd(path: Path) -> None:
    """Written by the real mosquitto_passwd, as 5ecc6cb's `pantau broker passwd` did."""
    for user, password in OLD.items():
        argv = [require_binary("mosquitto_passwd"), "-b", str(path), user, password]
        if not path.exists():
            argv.insert(1, "-c")
        subprocess.run(argv, check=True, capture_output=True)


def test_every_old_password_still_logs_in_bound_to_its_id_with_registry_rights(
    tmp_path: Path,
) -> None:
    passwd = tmp_path / "passwd"
    _old_passwd(passwd)
    broker = Mosquitto(workdir=tmp_path / "mosquitto")
    result = CliRunner().invoke(app, ["migrate-broker", str(passwd), str(broker.identity_file)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "kept the password of 2 account(s): pantau-ingest, gw-kariadi"
    assert lines[-1] == "not in the registry, left out: gw-gone"
    fresh = {u: pw for u, _, pw in (line.split(" ") for line in lines[1:-1])}
    assert "pantau-admin" in fresh
    assert "gw-wongsonegoro" in fresh  # a registry device the old file did not have
    broker.users["pantau-admin"] = fresh["pantau-admin"]

    with broker:
        with Peer(broker, "gw-kariadi", OLD["gw-kariadi"]) as gw:
            assert gw.accepted
            own = topics.build("rs-kariadi", "gw-kariadi", Channel.READINGS)
            assert gw.publish(own, b"{}") == NO_MATCHING_SUBSCRIBERS  # accepted, nobody listens
            # Rights come from the registry: not another site's topics.
            other = topics.build("rsud-wongsonegoro", "gw-kariadi", Channel.READINGS)
            assert gw.publish(other, b"{}") == NOT_AUTHORIZED
        with Peer(broker, "pantau-ingest", OLD["pantau-ingest"], client_id="pantau-ingest-1") as p:
            assert p.accepted
        with Peer(broker, "gw-kariadi", OLD["gw-kariadi"], client_id="pantau-gw-gw-kariadi") as p:
            assert not p.accepted  # 5ecc6cb's client id: the agent must be upgraded too
        with Peer(broker, "gw-gone", OLD["gw-gone"]) as p:
            assert not p.accepted
        with Peer(broker, "pantau-admin", fresh["pantau-admin"]) as p:
            assert p.accepted

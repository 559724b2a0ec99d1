"""``pantau deploy secrets``: the compose stack's secret files, made once, never overwritten."""

from __future__ import annotations

import io
import stat
from pathlib import Path

from pantau.deploy import GENERATED, write_secrets

BROKER_INIT = """\
pantau-ingest pantau-ingest-1 ingest-pw-0123456789ab
pantau-api pantau-api api-pw-0123456789abcd
pantau-admin pantau-admin admin-pw-0123456789ab
pantau-health pantau-health health-pw-0123456789a
gw-kariadi gw-kariadi kariadi-pw-0123456789
gw-elisabeth gw-elisabeth elisabeth-pw-01234567
"""


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_stacks_accounts_go_to_files_and_the_others_come_back(tmp_path: Path) -> None:
    folder = tmp_path / "secrets"
    written, unused = write_secrets(folder, io.StringIO(BROKER_INIT))
    assert written == [
        *GENERATED,
        "mqtt_ingest_password",
        "mqtt_api_password",
        "mosquitto_sub",
        "mqtt_gw_kariadi_password",
    ]
    assert unused == [
        "pantau-admin pantau-admin admin-pw-0123456789ab",
        "gw-elisabeth gw-elisabeth elisabeth-pw-01234567",
    ]
    assert (folder / "mqtt_ingest_password").read_text() == "ingest-pw-0123456789ab"
    assert (folder / "mosquitto_sub").read_text() == "-P health-pw-0123456789a\n"
    assert len((folder / "influx_writer_password").read_text()) == 32
    # The folder shuts other host users out; the files are readable by the containers' users.
    assert _mode(folder) == 0o700
    assert {_mode(p) for p in folder.iterdir()} == {0o444}


def test_a_second_run_keeps_every_live_password(tmp_path: Path) -> None:
    folder = tmp_path / "secrets"
    write_secrets(folder, io.StringIO(BROKER_INIT))
    before = {p.name: p.read_text() for p in folder.iterdir()}
    written, _ = write_secrets(folder, io.StringIO(BROKER_INIT.replace("-pw-", "-new-")))
    assert written == []
    assert {p.name: p.read_text() for p in folder.iterdir()} == before

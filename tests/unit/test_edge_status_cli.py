"""``pantau edge status`` reads a status file named on the command line with no agent settings
and no password (a technician on a production gateway), and still finds it from the settings
when no file is named."""

from __future__ import annotations

import os
from pathlib import Path

import orjson
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode
from typer.testing import CliRunner

from contract import reason_words, reasons_words
from edge.cli import app

STATUS = {
    "v": 1,
    "gw": "gw-kariadi",
    "state": "online",
    "ts": 1_700_000_000_000,
    "stats": {
        "link": "down",
        "link_reason": "connection refused: Not authorized (reason code 135)",
    },
}


@pytest.fixture(autouse=True)
def _production_without_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """No PANTAU_* but production mode: loading the agent's settings would fail (no gateway
    id, no password), so a passing test proves the settings were not needed."""
    for name in list(os.environ):
        if name.upper().startswith("PANTAU_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("PANTAU_MODE", "production")


@pytest.fixture
def status_file(tmp_path: Path) -> Path:
    path = tmp_path / "gw-kariadi.spool.status.json"
    path.write_bytes(orjson.dumps(STATUS))
    return path


@pytest.mark.parametrize("how", ["positional", "--file"])
def test_status_reads_the_named_file_without_settings_or_password(
    status_file: Path, how: str
) -> None:
    args = [str(status_file)] if how == "positional" else ["--file", str(status_file)]
    result = CliRunner().invoke(app, ["status", *args, "--summary"])
    assert result.exit_code == 0, result.output
    assert orjson.loads(result.stdout) == STATUS
    assert "gw-kariadi: agent online, status written 2023-11-14 22:13:20Z" in result.stderr
    # Never connected: no loss, only the latest attempt's refusal.
    assert "  latest attempt: connection refused: Not authorized (reason code 135)" in result.stderr
    assert "last loss" not in result.stderr


def test_status_without_a_file_still_needs_the_settings_that_locate_it() -> None:
    result = CliRunner().invoke(app, ["status"])
    assert result.exit_code == 2
    assert "gateway_id (PANTAU_GATEWAY_ID): Field required" in result.stderr


def test_a_missing_named_file_says_where_it_looked(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["status", str(tmp_path / "nope.status.json")])
    assert result.exit_code == 1
    assert f"no status yet at {tmp_path / 'nope.status.json'}" in result.stderr


def test_two_different_files_are_refused(status_file: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.status.json"
    result = CliRunner().invoke(app, ["status", str(status_file), "--file", str(other)])
    assert result.exit_code == 2
    assert "give the status file once" in result.stderr


def test_reason_codes_are_paho_names_with_the_number() -> None:
    refused = ReasonCode(PacketTypes.CONNACK, identifier=135)
    quota = ReasonCode(PacketTypes.SUBACK, identifier=0x97)
    assert reason_words(refused) == "Not authorized (reason code 135)"
    assert reasons_words([refused, quota]) == (
        "Not authorized (reason code 135); Quota exceeded (reason code 151)"
    )

"""MQTT refusals in words where an operator reads them: the edge agent's status file,
``pantau edge status`` and ``pantau ingest replay``'s error say ``Not authorized (reason code
135)``, not ``reason 135``. Real Mosquitto, real agent."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from pydantic import SecretStr
from typer.testing import CliRunner

from cloud.ingest.replay import Broker, ReplayError, publish_all
from contract import GatewayStatus
from edge import EdgeAgent
from edge.cli import app
from pantau.services import Mosquitto
from tests.edge_support import make_settings, running, wait_for

# The agent and the CLI read PANTAU_*: these tests must see only their own settings.
pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("no_pantau_env")]

WRONG = "not-the-password"  # a test credential, refused on purpose


def test_a_wrong_password_is_not_authorized_in_words_in_the_status_file_and_the_cli(
    mosquitto: Mosquitto,
    pty_pair: tuple[int, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _master, port = pty_pair
    settings = make_settings(mosquitto, tmp_path, {"bus0": port}, mqtt_password=WRONG)
    status_file = settings.status_file

    def link_reason() -> str:
        try:
            return str(
                GatewayStatus.model_validate_json(status_file.read_bytes()).stats["link_reason"]
            )
        except (OSError, ValueError, KeyError):
            return ""

    with running(EdgeAgent(settings=settings)):
        wait_for(lambda: link_reason() != "", "a status file with the refusal")
    assert link_reason() == "connection refused: Not authorized (reason code 135)"
    # Reading it needs no settings and no password, even on a production gateway.
    monkeypatch.setenv("PANTAU_MODE", "production")
    shown = CliRunner().invoke(app, ["status", str(status_file), "--summary"])
    assert shown.exit_code == 0, shown.output
    assert "  latest attempt: connection refused: Not authorized (reason code 135)" in shown.output
    assert orjson.loads(shown.stdout)["stats"]["link_reason"] == link_reason()


def test_replay_with_a_wrong_password_says_not_authorized_in_words(mosquitto: Mosquitto) -> None:
    mosquitto.add_user("pantau-replay", "right-password")
    broker = Broker(
        host="127.0.0.1",
        port=mosquitto.port,
        tls=False,
        username="pantau-replay",
        password=SecretStr("wrong-password"),
    )
    with pytest.raises(ReplayError) as refused:
        publish_all(broker, [("pantau/v1/rs-x/gw-x/readings", b"{}")])
    assert (
        str(refused.value) == "the broker refused 'pantau-replay': Not authorized (reason code 135)"
    )

"""The edge agent as a process (``python -m edge run``): its retained online status and
last-will, a clean SIGTERM, and a spool that survives SIGKILL and is sent after a restart."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import orjson
import pytest

from contract import (
    GatewayState,
    encode_frame,
)
from pantau.services import Mosquitto, free_port
from tests.edge_support import (
    GW,
    REPO,
    T0,
    Watcher,
    agent_env,
    agent_process,
    bed,
    wait_for,
)

# The agent and the CLI read PANTAU_*: these tests must see only their own settings.
pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("no_pantau_env")]


def test_online_status_is_retained_and_the_last_will_says_offline_after_sigkill(
    mosquitto: Mosquitto, pty_pair: tuple[int, str], tmp_path: Path
) -> None:
    _master, path = pty_pair
    log = tmp_path / "agent.log"
    with (
        Watcher(mosquitto) as watcher,
        agent_process(agent_env(mosquitto, tmp_path, path), log) as proc,
    ):
        wait_for(lambda: len(watcher.statuses()) > 0, "online status")
        assert watcher.statuses()[0].state is GatewayState.ONLINE
        with Watcher(mosquitto, client_id="late-watcher") as late:
            wait_for(lambda: len(late.statuses()) > 0, "retained status")
            assert late.statuses()[0].state is GatewayState.ONLINE
            assert late.messages[0][2] is True  # delivered as retained
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        wait_for(lambda: watcher.statuses()[-1].state is GatewayState.OFFLINE, "last-will offline")
    with Watcher(mosquitto, client_id="after-watcher") as after:
        wait_for(lambda: len(after.statuses()) > 0, "retained offline status")
        assert [s.state for s in after.statuses()] == [GatewayState.OFFLINE]


def test_sigterm_exits_0_after_publishing_offline_and_status_command_shows_it(
    mosquitto: Mosquitto, pty_pair: tuple[int, str], tmp_path: Path
) -> None:
    master, path = pty_pair
    env = agent_env(mosquitto, tmp_path, path)
    metrics_port = free_port()
    env["PANTAU_METRICS_PORT"] = str(metrics_port)
    with Watcher(mosquitto) as watcher, agent_process(env, tmp_path / "agent.log") as proc:
        wait_for(
            lambda: any(st.stats["ports_open"] == 1 for st in watcher.statuses()),
            "online status with the port open",
        )
        os.write(master, encode_frame(bed("icu-1", 0, T0)))
        wait_for(lambda: len(watcher.readings()) == 1, "one reading")

        def scraped() -> bool:
            try:
                text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=1).text
            except httpx.HTTPError:
                return False
            return 'pantau_edge_readings_acked{gateway="gw-test"} 1.0' in text

        wait_for(scraped, "metrics with the acked reading")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
        wait_for(lambda: watcher.statuses()[-1].state is GatewayState.OFFLINE, "offline")
    last = watcher.statuses()[-1]
    assert last.stats["readings_acked"] == 1
    assert last.stats["spool_depth"] == 0
    shown = subprocess.run(
        [sys.executable, "-m", "edge", "status"],
        env=env,
        cwd=REPO,
        capture_output=True,
        check=True,
    )
    doc = orjson.loads(shown.stdout)
    assert doc["state"] == "offline"
    assert doc["gw"] == GW
    assert doc["stats"]["frames"] == 1


def test_the_spool_survives_sigkill_and_is_sent_after_restart_with_the_same_batch_seq(
    mosquitto: Mosquitto, pty_pair: tuple[int, str], tmp_path: Path
) -> None:
    master, path = pty_pair
    env = agent_env(mosquitto, tmp_path, path)
    env["PANTAU_STATUS_INTERVAL_S"] = "0.2"
    status_file = Path(env["PANTAU_SPOOL_PATH"] + ".status.json")

    def stat(name: str) -> int:
        try:
            return int(orjson.loads(status_file.read_bytes())["stats"][name])
        except (OSError, orjson.JSONDecodeError):
            return -1

    mosquitto.stop()  # the uplink is down: readings can only go to the spool
    with agent_process(env, tmp_path / "agent1.log") as proc:
        # Opening a tty flushes its input, so the sensor talks only once the port is open.
        wait_for(lambda: stat("ports_open") == 1, "port open")
        for i in range(6):
            os.write(master, encode_frame(bed("icu-1", i, T0 + i)))
        wait_for(lambda: stat("spool_depth") == 6, "6 readings in the spool")
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    mosquitto.start()
    with Watcher(mosquitto) as watcher, agent_process(env, tmp_path / "agent2.log"):
        wait_for(lambda: len(watcher.readings()) == 6, "the spooled readings")
    assert [r.seq for r in watcher.readings()] == list(range(6))
    seqs = [b.seq for b in watcher.batches()]
    assert seqs == sorted(set(seqs))

"""One real city run shared by the end-to-end tests: PTYs -> edge -> Mosquitto -> ingester ->
InfluxDB -> API, driven by the firmware simulator's finite e2e scenario. One gateway is left out
of the stack and attached from outside, exactly as docs/protocol.md ("Trying it against the
demo") tells a device maker, so every test also checks that path."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from city import DEMO_CITY
from pantau.paths import ROOT
from pantau.stack import LocalStack

E2E_SCENARIO = ROOT / "firmware-sim" / "scenarios" / "e2e.yaml"
PROTOCOL = (ROOT / "docs" / "protocol.md").read_text(encoding="utf-8")
#: the gateway whose agent runs outside the stack (its ward names carry quotes and `=`)
OUTSIDE_GATEWAY = "gw-iso-kauman"


@pytest.fixture(scope="module")
def city_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """The demo city's full stack, after the e2e scenario has run to its end. Module-scoped:
    its gateways keep reopening their serial paths, and /dev/pts numbers are reused by later
    tests, so the stack must be gone before other tests open pseudo-terminals."""
    workdir = tmp_path_factory.mktemp("city")
    with (
        LocalStack(
            city_file=DEMO_CITY,
            scenario_file=E2E_SCENARIO,
            workdir=workdir,
            without=frozenset({OUTSIDE_GATEWAY}),
        ) as stack,
        outside_gateway(stack, workdir / "outside") as outside,
    ):
        deadline = time.monotonic() + 120
        while not stack.simulator_finished():
            stack.check_alive()
            assert outside.poll() is None, (workdir / "outside" / "edge.log").read_text()
            assert time.monotonic() < deadline, "the e2e scenario did not finish in 120 s"
            time.sleep(0.2)
        yield stack


@contextmanager
def outside_gateway(stack: LocalStack, cwd: Path) -> Iterator[subprocess.Popen[bytes]]:
    """The documented lines that attach an outside gateway to the demo, run as written with
    ``$DEMO_DIR`` set and this venv's ``pantau`` on the PATH; stopped (SIGTERM) afterwards."""
    block = re.search(r"<!-- demo: outside gateway -->\n```sh\n(.*?)\n```", PROTOCOL, re.DOTALL)
    assert block is not None
    cwd.mkdir(parents=True)
    bin_dir = str(Path(sys.executable).parent)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PANTAU_")}
    env |= {"DEMO_DIR": str(stack.dir), "PATH": f"{bin_dir}:{env.get('PATH', '')}"}
    with (cwd / "edge.log").open("wb") as log:
        proc = subprocess.Popen(
            ["bash", "-c", block[1]],
            cwd=cwd,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(20)


def ground_truth(stack: LocalStack) -> dict[str, Any]:
    """What each sensor really counted, as the simulator recorded it."""
    truth: dict[str, Any] = json.loads(Path(stack.truth_path).read_text())
    return truth

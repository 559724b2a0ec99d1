"""One real city run shared by the end-to-end tests: PTYs -> edge -> Mosquitto -> ingester ->
InfluxDB -> API, driven by the firmware simulator's finite e2e scenario."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from city import DEMO_CITY
from pantau.paths import ROOT
from pantau.stack import LocalStack

E2E_SCENARIO = ROOT / "firmware-sim" / "scenarios" / "e2e.yaml"


@pytest.fixture(scope="module")
def city_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """The demo city's full stack, after the e2e scenario has run to its end. Module-scoped:
    its gateways keep reopening their serial paths, and /dev/pts numbers are reused by later
    tests, so the stack must be gone before other tests open pseudo-terminals."""
    workdir = tmp_path_factory.mktemp("city")
    with LocalStack(city_file=DEMO_CITY, scenario_file=E2E_SCENARIO, workdir=workdir) as stack:
        deadline = time.monotonic() + 120
        while not stack.simulator_finished():
            stack.check_alive()
            assert time.monotonic() < deadline, "the e2e scenario did not finish in 120 s"
            time.sleep(0.2)
        yield stack


def ground_truth(stack: LocalStack) -> dict[str, Any]:
    """What each sensor really counted, as the simulator recorded it."""
    truth: dict[str, Any] = json.loads(Path(stack.truth_path).read_text())
    return truth

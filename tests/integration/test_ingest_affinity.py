"""``pantau ingest run`` keeps its threads on one CPU (cloud/ingest/affinity.py, ADR 0035):
the GIL then never moves between cores, which cost a quiet machine's drain of single
readings 65-69 us of CPU per message against 35-37 pinned."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from pantau.services import InfluxDB, Mosquitto
from tests.ingest_process_support import ingest_process


def _cpus_of_threads(pid: int) -> dict[int, str]:
    """Each thread's Cpus_allowed_list, from /proc."""
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        for line in (task / "status").read_text().splitlines():
            if line.startswith("Cpus_allowed_list:"):
                out[int(task.name)] = line.split(":", 1)[1].strip()
    return out


def _cpu_list(cpus: set[int]) -> str:
    """A CPU set as /proc writes a list of single CPUs and ranges (0-1, 3)."""
    ordered, runs = sorted(cpus), []
    start = prev = ordered[0]
    for c in [*ordered[1:], None]:
        if c is not None and c == prev + 1:
            prev = c
            continue
        runs.append(str(start) if start == prev else f"{start}-{prev}")
        if c is not None:
            start = prev = c
    return ",".join(runs)


def test_the_ingester_runs_every_thread_on_one_cpu(
    mosquitto: Mosquitto, influxdb: InfluxDB, tmp_path: Path
) -> None:
    """Subscribed (paho's thread, the metrics server, the writer and the registry watch are
    up), every thread of the process may run on one and the same CPU, one it may use."""
    allowed = os.sched_getaffinity(0)
    with ingest_process(mosquitto, influxdb, tmp_path) as ing:
        cpus = _cpus_of_threads(ing.pid)
    assert len(cpus) >= 4  # main, paho, metrics server, registry watch at least
    (only,) = set(cpus.values())
    assert int(only) in allowed
    assert len(allowed) < 2 or only != _cpu_list(allowed)


def test_pin_one_cpu_false_leaves_every_cpu_to_the_ingester(
    mosquitto: Mosquitto, influxdb: InfluxDB, tmp_path: Path
) -> None:
    """``PANTAU_PIN_ONE_CPU=false``: the threads may run wherever the process was allowed."""
    allowed = _cpu_list(os.sched_getaffinity(0))
    with ingest_process(mosquitto, influxdb, tmp_path, PANTAU_PIN_ONE_CPU="false") as ing:
        cpus = _cpus_of_threads(ing.pid)
    assert set(cpus.values()) == {allowed}


def test_pin_to_one_cpu_picks_the_cpu_it_runs_on_and_threads_started_later_inherit_it() -> None:
    """In a fresh interpreter (the test process itself stays free): the CPU returned is the
    one it was running on, and a thread started afterwards is held to it too."""
    code = (
        "import os, threading\n"
        "from cloud.ingest.affinity import current_cpu, pin_to_one_cpu\n"
        "before = current_cpu()\n"
        "cpu = pin_to_one_cpu()\n"
        "seen = []\n"
        "t = threading.Thread(target=lambda: seen.append(sorted(os.sched_getaffinity(0))))\n"
        "t.start(); t.join()\n"
        "print(before, cpu, sorted(os.sched_getaffinity(0)), seen[0])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split(maxsplit=2)
    before, cpu, rest = out
    if len(os.sched_getaffinity(0)) < 2:
        assert cpu == "None"
        return
    assert cpu == before
    assert rest.strip() == f"[{cpu}] [{cpu}]"

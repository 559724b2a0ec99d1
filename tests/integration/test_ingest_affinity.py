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


def test_pin_to_one_cpu_picks_the_cpu_it_runs_on_and_threads_started_later_inherit_it(
    tmp_path: Path,
) -> None:
    """In a fresh interpreter (the test process itself stays free): the CPU returned is the
    one it was running on, and a thread started afterwards is held to it too."""
    code = (
        "import os, pathlib, sys, threading\n"
        "from cloud.ingest.affinity import claim_cpu, current_cpu, pin_to_one_cpu\n"
        "claims = pathlib.Path(sys.argv[1])\n"
        "claim_cpu([], claims)\n"  # the directory exists: less to do between the two reads
        "before = current_cpu()\n"
        "cpu = pin_to_one_cpu(claims)\n"
        "seen = []\n"
        "t = threading.Thread(target=lambda: seen.append(sorted(os.sched_getaffinity(0))))\n"
        "t.start(); t.join()\n"
        "print(before, cpu, sorted(os.sched_getaffinity(0)), seen[0])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "claims")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split(maxsplit=2)
    before, cpu, rest = out
    if len(os.sched_getaffinity(0)) < 2:
        assert cpu == "None"
        return
    assert cpu == before
    assert rest.strip() == f"[{cpu}] [{cpu}]"


_HOLDER = (
    "import sys, pathlib\n"
    "from cloud.ingest.affinity import pin_to_one_cpu\n"
    "print(pin_to_one_cpu(pathlib.Path(sys.argv[1])), flush=True)\n"
    "sys.stdin.read()\n"  # holds its claim until the test closes stdin
)


def _holder(claims: Path) -> tuple[subprocess.Popen[str], str]:
    """A process that pinned itself with ``claims`` and keeps living; and what it returned."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(claims)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


def test_ingesters_on_one_host_claim_different_cpus_and_a_dead_ones_cpu_is_free_again(
    tmp_path: Path,
) -> None:
    """As many ingesters as CPUs each pin a CPU of their own; one more finds every CPU
    claimed and stays unpinned; once a holder dies, however, its CPU is claimed again."""
    allowed = os.sched_getaffinity(0)
    holders = []
    try:
        for _ in allowed:
            holders.append(_holder(tmp_path))
        got = [cpu for _, cpu in holders]
        if len(allowed) < 2:
            assert got == ["None"]
            return
        assert sorted(int(c) for c in got) == sorted(allowed)
        extra, cpu = _holder(tmp_path)
        holders.append((extra, cpu))
        assert cpu == "None"
        first, freed = holders[0]
        first.kill()  # no clean-up of its own: the kernel drops the lock with the process
        first.wait()
        again, cpu = _holder(tmp_path)
        holders.append((again, cpu))
        assert cpu == freed
    finally:
        for proc, _ in holders:
            if proc.poll() is None:
                assert proc.stdin is not None
                proc.stdin.close()
                proc.wait()

"""CPU seconds per thread of running processes, from ``/proc``: where a drain's CPU goes.

``python -m bench.thread_cpu --match "$PWD/.venv/bin/python -m cloud.ingest run"`` (beside a bench
that starts ingesters, e.g. ``python -m bench.ingest_throughput --modes b --paced 0``) samples
every process whose command line contains ``--match`` every 0.1 s until ``--seconds`` pass or
``--stop-file`` appears, then prints each process's CPU by thread over its life, and each
thread's voluntary context switches (a wait for the GIL is one). Python does
not give its threads OS names, so each process is dumped once by ``py-spy dump`` (if it is
installed: ``pip install py-spy``, not a project dependency) to name them. A thread that ended
before the last sample (e.g. one per HTTP request) counts under ``ended``.

A process's startup is its main thread's CPU before the first line: the bench's first
ingester of a drain only subscribes and stops, so its main thread is what startup costs.
docs/adr/0035-drain-path-outside-the-decoder.md quotes it.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.ingest_throughput.procstat import cpu_seconds_of

_THREAD_LINE = re.compile(r'Thread (\d+) \([^)]*\): "([^"]*)"')


@dataclass
class _Process:
    pid: int
    first: float
    last: float = 0.0
    cpu: float = 0.0
    threads: dict[int, float] = field(default_factory=dict)
    #: voluntary context switches per thread: each wait for the GIL held by another thread
    #: is one (as is every other blocking wait)
    switches: dict[int, int] = field(default_factory=dict)
    names: dict[int, str] = field(default_factory=dict)


def _voluntary_switches(task: Path) -> int:
    for line in (task / "status").read_text().splitlines():
        if line.startswith("voluntary_ctxt_switches:"):
            return int(line.split()[1])
    return 0


def _matching(match: str) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if match in cmd and "bench.thread_cpu" not in cmd:
            out.append(int(entry.name))
    return out


def _name_threads(proc: _Process, py_spy: str, after_s: float) -> None:
    time.sleep(after_s)
    try:
        dump = subprocess.run(
            [py_spy, "dump", "--pid", str(proc.pid)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return
    proc.names.update({int(t): n for t, n in _THREAD_LINE.findall(dump)})


def sample(match: str, seconds: float, stop_file: Path | None) -> list[_Process]:
    """Sample until ``seconds`` pass or ``stop_file`` exists; every process seen."""
    seen: dict[int, _Process] = {}
    # py-spy installed into the venv is next to its python, which need not be on PATH
    beside = Path(sys.executable).parent / "py-spy"
    py_spy = str(beside) if beside.exists() else shutil.which("py-spy")
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not (stop_file is not None and stop_file.exists()):
        for pid in _matching(match):
            proc = seen.get(pid)
            try:
                cpu = cpu_seconds_of(f"/proc/{pid}/stat", live=True)
                threads, switches = {}, {}
                for task in Path(f"/proc/{pid}/task").iterdir():
                    try:
                        threads[int(task.name)] = cpu_seconds_of(task / "stat", live=True)
                        switches[int(task.name)] = _voluntary_switches(task)
                    except OSError:
                        continue
            except OSError:
                continue
            if proc is None:
                proc = seen[pid] = _Process(pid=pid, first=time.monotonic())
                if py_spy is not None:
                    for after in (1.5, 4.0):  # once started, and once its threads are up
                        threading.Thread(
                            target=_name_threads, args=(proc, py_spy, after), daemon=True
                        ).start()
            proc.last, proc.cpu = time.monotonic(), cpu
            proc.threads.update(threads)
            proc.switches.update(switches)
        time.sleep(0.1)
    return list(seen.values())


def main() -> None:
    """Sample and print."""
    p = argparse.ArgumentParser(prog="python -m bench.thread_cpu", description=__doc__)
    p.add_argument("--match", default="-m cloud.ingest run")
    p.add_argument("--seconds", type=float, default=300.0)
    p.add_argument("--stop-file", type=Path, default=None)
    a = p.parse_args()
    for proc in sample(a.match, a.seconds, a.stop_file):
        known = sum(proc.threads.values())
        print(f"pid {proc.pid}: {proc.last - proc.first:.1f} s seen, {proc.cpu:.2f} s CPU")
        for tid, cpu in sorted(proc.threads.items(), key=lambda kv: -kv[1]):
            if cpu >= 0.005:
                name = "MainThread" if tid == proc.pid else proc.names.get(tid, "?")
                waits = proc.switches.get(tid, 0)
                print(f"  {tid:>8} {name:<40} {cpu:7.2f} s {waits:>9,} voluntary switches")
        print(f"  {'':>8} {'ended':<40} {proc.cpu - known:7.2f}")


if __name__ == "__main__":
    main()

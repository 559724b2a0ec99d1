"""``pantau demo`` leaves nothing behind (issue 13): a closed terminal (SIGHUP) stops its whole
stack like SIGTERM, a SIGKILL takes every child with it (PR_SET_PDEATHSIG), and the next demo
removes the temp dir a killed demo could not."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pantau.lifecycle import claim, remove_stale
from pantau.stack import DEMO_DIR_PREFIX
from tests.ingest_support import wait_for

pytestmark = pytest.mark.integration

#: Mosquitto, InfluxDB, ingester, API, simulator and the demo city's 13 edge agents, less
#: the gateways that publish directly (no agent): at least this many children.
MIN_CHILDREN = 15


def alive(pid: int) -> bool:
    """``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def children_of(pid: int) -> set[int]:
    """Live processes whose parent is ``pid``."""
    out = set()
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            out.add(int(d.name))
    return out


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path, set[int]]]:
    """A running ``pantau demo`` (temp dirs under ``tmp_path``), its temp dir and children."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PANTAU_")}
    env["TMPDIR"] = str(tmp_path)
    out = tmp_path / "demo.out"
    with out.open("wb") as f:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pantau.cli", "demo", "--duration", "600"],
            stdout=f,
            stderr=subprocess.STDOUT,
            env=env,
        )
    children: set[int] = set()
    try:
        wait_for(lambda: b"Ctrl-C to stop" in out.read_bytes() or proc.poll() is not None,
                 "the demo to start", 120)  # fmt: skip
        assert proc.poll() is None, out.read_text(errors="replace")
        (workdir,) = tmp_path.glob(f"{DEMO_DIR_PREFIX}*")
        children = children_of(proc.pid)
        assert len(children) >= MIN_CHILDREN, children
        yield proc, workdir, children
    finally:
        for pid in [proc.pid, *children]:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        proc.wait()


def test_sighup_stops_the_whole_demo_and_removes_its_temp_dir(
    demo: tuple[subprocess.Popen[bytes], Path, set[int]],
) -> None:
    proc, workdir, children = demo
    proc.send_signal(signal.SIGHUP)
    assert proc.wait(60) == 0
    wait_for(lambda: not any(alive(p) for p in children), "every child to exit", 30)
    assert not workdir.exists()


def test_sigkill_takes_every_child_along_and_the_next_demo_removes_the_temp_dir(
    demo: tuple[subprocess.Popen[bytes], Path, set[int]], tmp_path: Path
) -> None:
    proc, workdir, children = demo
    live_owner = tmp_path / f"{DEMO_DIR_PREFIX}live"
    live_owner.mkdir()
    claim(live_owner)  # this test process: alive
    unclaimed = tmp_path / f"{DEMO_DIR_PREFIX}unclaimed"
    unclaimed.mkdir()
    proc.kill()
    proc.wait()
    wait_for(lambda: not any(alive(p) for p in children), "every child to die with the demo", 30)
    assert workdir.exists()  # nobody could clean up
    # What the next `pantau demo` does first (LocalStack.start).
    assert remove_stale(tmp_path, DEMO_DIR_PREFIX) == [workdir]
    assert not workdir.exists()
    assert live_owner.exists()
    assert unclaimed.exists()

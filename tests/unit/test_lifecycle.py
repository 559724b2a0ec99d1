"""Demo temp dirs are removed only when the process that claimed them is gone
(pantau/lifecycle.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from pantau.lifecycle import OWNER_FILE, claim, owner_alive, remove_stale, start_time


def test_a_dir_claimed_by_a_running_process_is_kept(tmp_path: Path) -> None:
    d = tmp_path / "pantau-demo-live"
    d.mkdir()
    claim(d)
    assert owner_alive(d) is True
    assert remove_stale(tmp_path, "pantau-demo-") == []
    assert d.exists()


def test_a_dir_whose_owner_exited_is_removed(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    dead = int(done.stdout)
    d = tmp_path / "pantau-demo-dead"
    d.mkdir()
    (d / OWNER_FILE).write_text(f"{dead} 12345\n")
    assert owner_alive(d) is False
    assert remove_stale(tmp_path, "pantau-demo-") == [d]
    assert not d.exists()


def test_a_recycled_pid_does_not_keep_a_dir_alive(tmp_path: Path) -> None:
    """Our own pid, but another start time: the owner was an earlier process with that pid."""
    d = tmp_path / "pantau-demo-recycled"
    d.mkdir()
    started = start_time(os.getpid())
    assert started is not None
    (d / OWNER_FILE).write_text(f"{os.getpid()} {int(started) - 1}\n")
    assert owner_alive(d) is False


def test_unclaimed_dirs_and_other_prefixes_are_left_alone(tmp_path: Path) -> None:
    unclaimed = tmp_path / "pantau-demo-old"
    unclaimed.mkdir()
    other = tmp_path / "something-else"
    other.mkdir()
    (other / OWNER_FILE).write_text("1 1\n")
    assert owner_alive(unclaimed) is None
    assert remove_stale(tmp_path, "pantau-demo-") == []
    assert unclaimed.exists()
    assert other.exists()

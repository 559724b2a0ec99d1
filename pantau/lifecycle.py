"""Children that die with the process that started them, and temp dirs that outlive a dead
owner only until the next ``pantau demo``.

The demo starts every part in a session of its own (``start_new_session``), so that Ctrl-C
reaches only the demo, which then stops the parts in order. The price: when the demo itself
dies without running its cleanup (SIGKILL, an OOM kill, a crash of the interpreter), nothing
tells those sessions. Linux can: ``PR_SET_PDEATHSIG`` asks the kernel to send a signal to a
process when the thread that forked it exits. :func:`die_with_parent` sets it in the child,
between fork and exec, so no window is left in which the parent could die unnoticed.

A demo's temp dir is the other leftover. :func:`claim` writes the owner's pid and start time
(``/proc/<pid>/stat`` field 22, so a recycled pid is not mistaken for the owner) into the
dir; :func:`remove_stale` removes the dirs whose owner is gone.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import shutil
import signal
import threading
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

#: linux/prctl.h
PR_SET_PDEATHSIG = 1
OWNER_FILE = "owner"


def die_with_parent(sig: int = signal.SIGKILL) -> Callable[[], None]:
    """A ``preexec_fn`` for :class:`subprocess.Popen`: the child gets ``sig`` when the thread
    that started it exits. Start children from the main thread (a worker thread's exit would
    kill them early). A no-op off Linux."""
    libc_name = ctypes.util.find_library("c")
    libc = ctypes.CDLL(libc_name, use_errno=True) if libc_name else None
    parent = os.getpid()

    def preexec() -> None:
        if libc is None:
            return
        libc.prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)
        # The parent may have died between fork and prctl: then nobody will signal us.
        if os.getppid() != parent:
            os.kill(os.getpid(), sig)

    return preexec


def child_preexec() -> Callable[[], None] | None:
    """The ``preexec_fn`` for a child of this thread: :func:`die_with_parent` when called from
    the main thread, None from any other (its exit, long before ours, would kill the child)."""
    return die_with_parent() if threading.current_thread() is threading.main_thread() else None


def start_time(pid: int) -> str | None:
    """When ``pid`` started (clock ticks since boot, as text), None if it does not exist."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 2 (comm) may contain spaces and parentheses: split after its closing one.
    return stat.rsplit(")", 1)[1].split()[19]


def claim(directory: Path) -> None:
    """Mark ``directory`` as owned by this process (see :func:`remove_stale`)."""
    pid = os.getpid()
    (directory / OWNER_FILE).write_text(f"{pid} {start_time(pid)}\n")


def owner_alive(directory: Path) -> bool | None:
    """True if the process that claimed ``directory`` still runs, False if it is gone, None if
    the dir was never claimed (or the claim is unreadable): then nobody can tell."""
    try:
        pid_text, started = (directory / OWNER_FILE).read_text().split()
        pid = int(pid_text)
    except (OSError, ValueError):
        return None
    return start_time(pid) == started


def remove_stale(parent: Path, prefix: str) -> list[Path]:
    """Remove the dirs ``parent/prefix*`` whose claiming process is dead; returns them. Dirs
    of live owners and unclaimed dirs are left alone."""
    removed: list[Path] = []
    for d in sorted(parent.glob(f"{prefix}*")):
        if d.is_dir() and owner_alive(d) is False:
            shutil.rmtree(d, ignore_errors=True)
            log.info("removed %s, left by a demo that is no longer running", d)
            removed.append(d)
    return removed

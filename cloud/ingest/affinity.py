"""Keep the ingester's threads on one CPU, so the GIL does not move between cores.

The ingester runs Python on two threads at once: paho's network thread and the consumer.
Only one can hold the GIL. On a quiet machine they sit on two cores, and the GIL moves
between them many times a second: paho releases it around every socket call, and numpy
releases it around every large array operation. Each move is a futex wake-up on the other
core, and the interpreter's state follows in that core's caches. Drains of mode (a) (one
reading per message) measured that directly:

* on a busy machine the consumer thread made a few hundred voluntary context switches and
  the drain cost 38-42 us of CPU per message;
* on a quiet one it made 38 000-50 000, and the drain cost 68-69 us per message, with
  paho's thread alone 3.1 s instead of 1.8 s for 60 000 messages.

Pinned to one CPU, the same quiet drains cost 37-38 us per message and ran at 26 000
instead of 16 000-19 000 messages a second. A JSON-batch drain went from 1.64 to 1.54 us
per reading (docs/adr/0035-drain-path-outside-the-decoder.md). The ingester cannot use a
second core for Python anyway, since the GIL allows one thread at a time.

Members of a scale-out group on one host must not share a CPU while another idles: two
members pinned to the same one drained single readings at half the rate of one
(docs/adr/0044-one-cpu-per-ingester-on-a-host.md). So an ingester *claims* its CPU: an
exclusive ``flock`` on ``cpu<N>.lock`` in ``PANTAU_CPU_CLAIMS_DIR`` (default
``<tmp>/pantau-ingest-cpus``), held as long as the process lives and released by the kernel
when it dies, however it dies. It takes the CPU it is running on if no other ingester holds
it, else the next free one; if every CPU it may use is claimed, it does not pin at all (the
scheduler then shares the cores better than two members pinned to one). ``PANTAU_PIN_ONE_CPU``
turns pinning off, e.g. where a container's CPU set or an operator's ``taskset`` already
decides. Process-wide, so only the ingester's entry point (``pantau ingest run``) calls it,
before it starts its own threads (they inherit the CPU set of the thread that starts them);
threads already running, such as numpy's BLAS workers, are moved one by one.
"""

from __future__ import annotations

import fcntl
import logging
import os
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

#: /proc/<pid>/stat field 39, "processor" (CPU number last executed on), counted from the
#: field after the command name in parentheses (field 3)
_PROCESSOR_FIELD = 39 - 3
#: Where ingesters on one host claim their CPUs, unless PANTAU_CPU_CLAIMS_DIR says otherwise.
DEFAULT_CLAIMS_DIR = Path(tempfile.gettempdir()) / "pantau-ingest-cpus"
#: The open claim of this process: its lock lasts as long as the descriptor stays open.
_claims: list[int] = []


def current_cpu() -> int | None:
    """The CPU this process last ran on, from ``/proc/self/stat``; None where unreadable."""
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[_PROCESSOR_FIELD])
    except (OSError, IndexError, ValueError):
        return None


def _thread_ids() -> list[int]:
    """This process's threads (0, the calling thread, where /proc is not there)."""
    try:
        return [int(task.name) for task in Path("/proc/self/task").iterdir()]
    except OSError:
        return [0]


def claim_cpu(candidates: list[int], claims_dir: Path) -> int | None:
    """The first of ``candidates`` no other live process has claimed in ``claims_dir``, now
    claimed by this one for as long as it lives; None if every one is taken. Raises OSError
    when the directory cannot be used."""
    claims_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    for cpu in candidates:
        # O_NOFOLLOW: a lock file another local user replaced with a symlink is not followed
        path = claims_dir / f"cpu{cpu}.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        for old in _claims:  # a second claim replaces the first
            os.close(old)
        _claims[:] = [fd]
        return cpu
    return None


def pin_to_one_cpu(claims_dir: Path = DEFAULT_CLAIMS_DIR) -> int | None:
    """Restrict this process's threads, and every thread started from now on, to one of the
    CPUs it may use that no other ingester on this host has claimed in ``claims_dir`` (the
    one it is on now if it can, else the lowest free one). Returns that CPU; None if the OS
    has no CPU affinity, one CPU is all there is, or every CPU is claimed (then: not pinned)."""
    if not hasattr(os, "sched_setaffinity"):
        log.info("no CPU affinity on this OS: the ingester's threads may use every CPU")
        return None
    allowed = os.sched_getaffinity(0)
    if len(allowed) <= 1:
        return None
    here = current_cpu()
    candidates = ([here] if here in allowed else []) + sorted(allowed - {here})
    try:
        cpu = claim_cpu(candidates, claims_dir)
    except OSError as exc:  # an unusable claims directory must not stop the ingester
        log.warning("cannot claim a CPU in %s (%s): pinned without a claim", claims_dir, exc)
        cpu = candidates[0]
    if cpu is None:
        log.info(
            "every CPU this process may use is claimed by another ingester on this host: "
            "not pinned (claims in %s)",
            claims_dir,
        )
        return None
    # Threads started before this call too: numpy's BLAS starts its own at import time.
    for tid in _thread_ids():
        try:
            os.sched_setaffinity(tid, {cpu})
        except OSError:  # ended meanwhile
            continue
    log.info("pinned to CPU %d of %d allowed (PANTAU_PIN_ONE_CPU=false: not)", cpu, len(allowed))
    return cpu

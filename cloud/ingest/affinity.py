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

The CPU is the one the process is running on when it pins itself, so members of a
scale-out group started side by side usually land on different CPUs. ``PANTAU_PIN_ONE_CPU``
turns pinning off, e.g. where a container's CPU set or an operator's ``taskset`` already
decides. Process-wide, so only the ingester's entry point (``pantau ingest run``) calls it,
before it starts its own threads (they inherit the CPU set of the thread that starts them);
threads already running, such as numpy's BLAS workers, are moved one by one.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

#: /proc/<pid>/stat field 39, "processor" (CPU number last executed on), counted from the
#: field after the command name in parentheses (field 3)
_PROCESSOR_FIELD = 39 - 3


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


def pin_to_one_cpu() -> int | None:
    """Restrict this process's threads, and every thread started from now on, to one of the
    CPUs it may use (the one it is on now if allowed, else the lowest). Returns that CPU; None if
    the OS has no CPU affinity or one CPU is all there is."""
    if not hasattr(os, "sched_setaffinity"):
        log.info("no CPU affinity on this OS: the ingester's threads may use every CPU")
        return None
    allowed = os.sched_getaffinity(0)
    if len(allowed) <= 1:
        return None
    cpu = current_cpu()
    if cpu not in allowed:
        cpu = min(allowed)
    # Threads started before this call too: numpy's BLAS starts its own at import time.
    for tid in _thread_ids():
        try:
            os.sched_setaffinity(tid, {cpu})
        except OSError:  # ended meanwhile
            continue
    log.info("pinned to CPU %d of %d allowed (PANTAU_PIN_ONE_CPU=false: not)", cpu, len(allowed))
    return cpu

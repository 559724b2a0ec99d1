"""What the bench reads off the processes it runs: the ingester's Prometheus text, CPU seconds
and memory from ``/proc``."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from bench.exposition import parse_exposition

_CLK = os.sysconf("SC_CLK_TCK")


class BenchError(Exception):
    """A case could not be measured (its ingester died, never subscribed, or stalled)."""


def scrape(url: str, client: httpx.Client | None = None) -> dict[str, float]:
    """The exposition at ``url``, parsed (:func:`parse_exposition`)."""
    return parse_exposition(
        (client.get(url) if client is not None else httpx.get(url, timeout=5)).text
    )


def stored_of(metrics: dict[str, float], *, raw: bool) -> float:
    """Readings the ingester has handled for good: stored raw (raw mode), or folded into the
    state whose rollups it writes before acknowledging (aggregates-only: the lag histogram
    observes each such reading once, and there is no raw-stored count to read)."""
    names = ["pantau_ingest_readings_stored_total"] if raw else []
    names += ["pantau_ingest_lag_seconds_count"]
    for name in names:
        if name in metrics:
            return metrics[name]
    raise BenchError(f"the ingester exports none of {names}")


def dead_letters(metrics: dict[str, float]) -> dict[str, float]:
    """Dead-lettered messages/readings by reason (non-zero only)."""
    out = {}
    for key, value in metrics.items():
        m = re.match(r'pantau_ingest_dead_letters_total\{reason="([^"]*)"\}', key)
        if m and value:
            out[m.group(1)] = value
    return out


def histogram_quantiles(
    before: dict[str, float], after: dict[str, float], name: str, qs: tuple[float, ...]
) -> list[float] | None:
    """Upper bucket bounds holding the quantiles ``qs`` of observations between two scrapes."""
    buckets: list[tuple[float, float]] = []
    for key, value in after.items():
        m = re.match(rf'{name}_bucket\{{.*le="([^"]+)".*\}}', key)
        if m:
            buckets.append((float(m.group(1)), value - before.get(key, 0.0)))
    buckets.sort()
    total = buckets[-1][1] if buckets else 0.0
    if total <= 0:
        return None
    return [next(le for le, count in buckets if count >= q * total) for q in qs]


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (its threads included); 0 once it is gone."""
    try:
        return cpu_seconds_of(f"/proc/{pid}/stat")
    except OSError:
        return 0.0


def cpu_seconds_of(stat: str | Path, *, live: bool = False) -> float:
    """User + system CPU seconds in a ``/proc/<pid>/stat`` or ``/proc/<pid>/task/<tid>/stat``
    file (utime and stime, fields 14 and 15, after the command name in parentheses). OSError
    if it is gone, and with ``live`` also for a zombie, whose counts no longer move."""
    fields = Path(stat).read_text().rsplit(")", 1)[1].split()
    if live and fields[0] == "Z":
        raise OSError("zombie")
    return (int(fields[11]) + int(fields[12])) / _CLK


def settled_cpu(
    read: Callable[[], float],
    *,
    step_s: float = 0.05,
    quiet_steps: int = 4,
    idle_share: float = 0.02,
    limit_s: float = 10.0,
    sleep: Callable[[float], None] = time.sleep,
) -> float:
    """``read()`` (a process's CPU seconds) once the process has gone quiet: less than
    ``idle_share`` of a core over the last ``quiet_steps`` steps of ``step_s``, or after
    ``limit_s``. InfluxDB snapshots and compacts what it was sent after its last answer: read
    this way, a drain's and a limit's influxd CPU both include that work (ADR 0043)."""
    seen = [read()]
    for _ in range(int(limit_s / step_s)):
        sleep(step_s)
        seen.append(read())
        if len(seen) > quiet_steps and seen[-1] - seen[-1 - quiet_steps] < (
            idle_share * step_s * quiet_steps
        ):
            break
    return seen[-1]


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent busy (not idle or waiting for I/O) since boot."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / _CLK


def vm_kb(pid: int, key: str) -> int:
    """A ``/proc/<pid>/status`` memory line (VmHWM, VmRSS) in kB; 0 if gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def load_average() -> float:
    """The machine's 1-minute load average (how busy the shared cores were)."""
    return os.getloadavg()[0]

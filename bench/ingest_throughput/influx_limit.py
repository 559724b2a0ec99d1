"""InfluxDB alone storing the lines a raw-mode drain writes: the limit of modes (d).

The lines come from the ingester's own window pipeline (``replay.record_windows``: its decoder,
its point builder, windows of its default payload bytes, the rollup lines it computes per
window) on the very payloads of the backlog, cut into request bodies as its ``PointWriter``
cuts them (``--chunk-lines``), and are written from ``--writers`` threads with nothing else
running. Two limits come of them (docs/adr/0043-the-raw-limit-writes-every-line.md):

- ``InfluxDB, raw lines``: the raw points only;
- ``InfluxDB, every line`` (the goal's): the raw points and the rollup lines the drain wrote beside
  them. The drain coalesces rollup writes (ADR 0038), so it usually writes fewer than one rollup
  write per window: the limit writes the rollups of evenly spread windows until it has written as
  many rollup lines as the drain did, each beside the next window's raw bodies, as the writer's
  pool runs them. A drain that crosses a rollup bucket's end writes more: each window after it
  also rewrites the past bucket its late readings change (docs/schema.md, "Late data"). The
  limit then sends some windows' rollups more than once (the same points again, as the rewrite
  of a past bucket is), so it still writes as many rollup lines as the drain.

Each limit writes to a database of its own, dropped afterwards, as the drains' are: every
measurement starts from the same InfluxDB (a database left behind kept its points in influxd's
cache and its series in the in-memory index).
"""

from __future__ import annotations

import functools
import threading
import time
from dataclasses import dataclass

import numpy as np

from bench.ingest_throughput.env import Bench
from bench.ingest_throughput.limits import Limit
from bench.ingest_throughput.procstat import cpu_seconds, settled_cpu
from bench.ingest_throughput.replay import Window, record_windows
from cloud.influx import InfluxHTTP
from cloud.ingest.writer import body, chunk_bounds
from contract.errors import StorageError

RAW_ONLY = "InfluxDB, raw lines"
EVERY_LINE = "InfluxDB, every line"


@dataclass(kw_only=True)
class Recorded:
    """The drain's writes, as request bodies: one line per series (written before the clock
    starts, so the series exist as they do for the drain, whose ingester bootstraps first),
    then per window the raw bodies and the rollup bodies."""

    first: list[bytes]
    raw: list[list[bytes]]
    rollups: list[list[bytes]]
    raw_points: int
    rollup_lines: list[int]


def record(bench: Bench, payloads: list[tuple[str, bytes, int]], key: str) -> Recorded:
    """The request bodies of the ingester's writes for ``payloads``."""
    windows = record_windows(
        bench.city_file, [(t, p) for t, p, _ in payloads], bench.tmp / f"limit-dead-{key}"
    )
    cut = functools.partial(
        chunk_bounds, chunk_lines=bench.args.chunk_lines, parallelism=bench.args.writers
    )
    first, raw = _split_first(windows[0]) if windows else ([], [])
    rec = Recorded(first=[body(first)] if first else [], raw=[], rollups=[], raw_points=0,
                   rollup_lines=[])  # fmt: skip
    for i, w in enumerate(windows):
        lines = raw if i == 0 else w.raw
        rec.raw.append([body(lines[lo:hi]) for lo, hi in cut(len(lines))])
        rec.rollups.append([body(w.rollups[lo:hi]) for lo, hi in cut(len(w.rollups))])
        rec.rollup_lines.append(len(w.rollups))
        rec.raw_points += len(lines)
    return rec


def _split_first(w: Window) -> tuple[list[bytes], list[bytes]]:
    """(each series' first line, the rest) of a window whose lines come sensor by sensor."""
    new = np.flatnonzero(np.diff(w.sensors, prepend=-1) != 0)
    untimed = set(new.tolist())
    return [w.raw[i] for i in new], [x for i, x in enumerate(w.raw) if i not in untimed]


def rollup_windows(rollup_lines: list[int], target: int) -> list[int]:
    """How many times to send each window's rollup write so that their lines come to about
    ``target`` (the drain's): that many windows' worth, spread evenly, the last always (a
    drain ends with its write); more than once each when the drain wrote more than one set
    per window (late data's rewrites of a past bucket)."""
    n, total = len(rollup_lines), sum(rollup_lines)
    if n == 0 or total == 0 or target <= 0:
        return [0] * n
    k = max(1, round(target * n / total))
    # window i is sent once for each of the k evenly spaced marks over the n windows that
    # falls in its step
    return [(i + 1) * k // n - i * k // n for i in range(n)]


def bodies_in_order(rec: Recorded, rollup_lines: int | None) -> tuple[list[bytes], int]:
    """The request bodies in the order the writer's pool sends them, and the rollup lines among
    them: each window's raw bodies, after them the rollups of the window before (if sent)."""
    send = rollup_windows(rec.rollup_lines, rollup_lines) if rollup_lines is not None else []
    out: list[bytes] = []
    carried: list[bytes] = []
    lines = 0
    for i, raw in enumerate(rec.raw):
        out += raw + carried
        times = send[i] if send else 0
        carried = rec.rollups[i] * times
        lines += rec.rollup_lines[i] * times
    return out + carried, lines


def influx_alone(bench: Bench, key: str, rec: Recorded, rollup_lines: int | None) -> Limit:
    """InfluxDB stores ``rec``'s raw bodies (and, given the drain's ``rollup_lines``, as many
    rollup lines beside them) from ``--writers`` threads: raw points/s, and influxd's CPU per
    raw point."""
    bodies, rollups = bodies_in_order(rec, rollup_lines)
    writers = bench.args.writers
    db = f"limit_{key.replace('-', '_')}_{'all' if rollup_lines is not None else 'raw'}"
    clients = [InfluxHTTP(url=bench.influx.url, database=db, timeout=60) for _ in range(writers)]
    for c in clients:
        c.start()
    clients[0].ensure_database()
    for b in rec.first:  # the series exist before the clock starts
        clients[0].write(b, precision="u")
    todo = iter(bodies)
    lock = threading.Lock()

    def work(client: InfluxHTTP) -> None:
        while True:
            with lock:
                data = next(todo, None)
            if data is None:
                return
            for attempt in range(3):
                try:
                    client.write(data, precision="u")
                    break
                except StorageError:
                    # a busy InfluxDB answers 500 "timeout" and may still store the points;
                    # writing them again is idempotent (same series, same times)
                    if attempt == 2:
                        raise

    pid = bench.influx.proc.pid if bench.influx.proc else 0
    started, cpu0 = time.monotonic(), cpu_seconds(pid)
    threads = [threading.Thread(target=work, args=(c,), daemon=True) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    # with the work influxd does after its last answer (snapshots), as the drain's is counted
    cpu = settled_cpu(lambda: cpu_seconds(pid)) - cpu0
    clients[0].execute([f'DROP DATABASE "{db}"'])
    for c in clients:
        c.close()
    points = rec.raw_points
    beside = ""
    if rollup_lines is not None:
        beside = f", {rollups:,} rollup lines beside them (the drain: {rollup_lines:,})"
    detail = (
        f"{points:,} raw points{beside} in {len(bodies):,} "
        f"writes (<= {bench.args.chunk_lines:,} lines each, as the ingester cuts its windows), "
        f"{writers} writers, {elapsed:.1f} s; CPU of influxd per raw point"
    )
    name = EVERY_LINE if rollup_lines is not None else RAW_ONLY
    return Limit(name=name, rate=points / elapsed, detail=detail, cpu_us=cpu * 1e6 / points)

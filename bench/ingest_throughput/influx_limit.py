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
- ``InfluxDB + decode``: every line again, while this process decodes the backlog's payloads
  with the mode's own decode limit, each body held until its readings are decoded
  (``decode_gate``): the rate the cheapest conceivable ingester could keep on these two cores,
  printed beside the goal's limit to show how much of it is left to an ingester at all.

Each limit writes to a database of its own, dropped afterwards, as the drains' are: every
measurement starts from the same InfluxDB (a database left behind kept its points in influxd's
cache and its series in the in-memory index). The raw series exist before the clock starts, in
the limits (each series' first line) and in the drains alike (:func:`series_seed`, a minute
earlier): a drain after an outage writes to series that exist, and creating 8 000 of them was
about 7 % of a 3 s binary drain
(docs/adr/0052-raw-series-exist-before-the-clock-and-the-drain-is-a-median.md).
"""

from __future__ import annotations

import functools
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from bench.ingest_throughput.decode_gate import DecodeGate, readings_needed
from bench.ingest_throughput.env import Bench
from bench.ingest_throughput.limits import Limit
from bench.ingest_throughput.procstat import cpu_seconds, settled_cpu
from bench.ingest_throughput.replay import Window, record_windows
from cloud.influx import InfluxHTTP
from cloud.ingest.writer import body, chunk_bounds
from contract.errors import StorageError

RAW_ONLY = "InfluxDB, raw lines"
EVERY_LINE = "InfluxDB, every line"
BESIDE_DECODE = "InfluxDB + decode"


@dataclass(frozen=True, kw_only=True)
class Beside:
    """The decode that runs beside InfluxDB for the bound of a decode-only ingester."""

    name: str
    decode: Callable[[bytes], object]
    #: (payload, readings) of the backlog, in order
    payloads: list[tuple[bytes, int]]


@dataclass(kw_only=True)
class Recorded:
    """The drain's writes, as request bodies: one line per series (written before the clock
    starts, so the series exist as they do for the drain, whose ingester bootstraps first),
    then per window the raw bodies and the rollup bodies."""

    first: list[bytes]
    raw: list[list[bytes]]
    #: raw points in each of ``raw``'s bodies, window by window
    raw_counts: list[list[int]]
    rollups: list[list[bytes]]
    rollup_lines: list[int]

    @property
    def raw_points(self) -> int:
        """Raw points in every window's raw bodies (each series' first line not counted)."""
        return sum(map(sum, self.raw_counts))


def record(bench: Bench, payloads: list[tuple[str, bytes, int]], key: str) -> Recorded:
    """The request bodies of the ingester's writes for ``payloads``."""
    windows = record_windows(
        bench.city_file, [(t, p) for t, p, _ in payloads], bench.tmp / f"limit-dead-{key}"
    )
    cut = functools.partial(
        chunk_bounds, chunk_lines=bench.args.chunk_lines, parallelism=bench.args.writers
    )
    first, raw = _split_first(windows[0]) if windows else ([], [])
    rec = Recorded(first=[body(first)] if first else [], raw=[], raw_counts=[], rollups=[],
                   rollup_lines=[])  # fmt: skip
    for i, w in enumerate(windows):
        lines = raw if i == 0 else w.raw
        bounds = cut(len(lines))
        rec.raw.append([body(lines[lo:hi]) for lo, hi in bounds])
        rec.raw_counts.append([hi - lo for lo, hi in bounds])
        rec.rollups.append([body(w.rollups[lo:hi]) for lo, hi in cut(len(w.rollups))])
        rec.rollup_lines.append(len(w.rollups))
    return rec


def series_seed(rec: Recorded, *, earlier_us: int = 60_000_000) -> list[bytes]:
    """Request bodies that create the drain's raw series before its clock starts, as the limit's
    first lines do for its own: each series' first line, ``earlier_us`` (microseconds, the
    raw lines' precision) before it, so no point of the backlog is overwritten and the drain
    stores all of its own (the check counts these apart)."""
    out = []
    for b in rec.first:
        lines = []
        for line in b.split(b"\n"):
            if line:
                head, _, ts = line.rpartition(b" ")
                lines.append(b"%s %d" % (head, int(ts) - earlier_us))
        out.append(b"\n".join(lines))
    return out


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


@dataclass(kw_only=True)
class Plan:
    """The request bodies in the order the writer's pool sends them: each window's raw bodies,
    after them the rollups of the window before (if sent)."""

    bodies: list[bytes]
    #: raw points in each body (0 in a rollup body)
    raw_lines: list[int]
    #: rollup lines among the bodies
    rollup_lines: int


def bodies_in_order(rec: Recorded, rollup_lines: int | None) -> Plan:
    """The plan of ``rec``'s writes, with as many rollup lines as ``rollup_lines`` (None:
    none)."""
    send = rollup_windows(rec.rollup_lines, rollup_lines) if rollup_lines is not None else []
    plan = Plan(bodies=[], raw_lines=[], rollup_lines=0)
    carried: list[bytes] = []
    for i, raw in enumerate(rec.raw):
        plan.bodies += raw + carried
        plan.raw_lines += rec.raw_counts[i] + [0] * len(carried)
        times = send[i] if send else 0
        carried = rec.rollups[i] * times
        plan.rollup_lines += rec.rollup_lines[i] * times
    plan.bodies += carried
    plan.raw_lines += [0] * len(carried)
    return plan


def influx_alone(
    bench: Bench, key: str, rec: Recorded, rollup_lines: int | None, beside: Beside | None = None
) -> Limit:
    """InfluxDB stores ``rec``'s raw bodies (and, given the drain's ``rollup_lines``, as many
    rollup lines beside them) from ``--writers`` threads: raw points/s, and influxd's CPU per
    raw point. ``beside``: the payloads' decode runs in this process and gates the writes
    (``decode_gate``); the CPU per point then counts this process's too."""
    plan = bodies_in_order(rec, rollup_lines)
    writers = bench.args.writers
    kind = "raw" if rollup_lines is None else "all" if beside is None else "decode"
    db = f"limit_{key.replace('-', '_')}_{kind}"
    clients = [InfluxHTTP(url=bench.influx.url, database=db, timeout=60) for _ in range(writers)]
    for c in clients:
        c.start()
    clients[0].ensure_database()
    for b in rec.first:  # the series exist before the clock starts
        clients[0].write(b, precision="u")
    gate, needed = None, []
    if beside is not None:
        readings = sum(n for _, n in beside.payloads)
        needed = readings_needed(plan.raw_lines, readings)
        # one window's readings ahead: the ingester decodes window k+1 while k is written
        window = max(map(sum, rec.raw_counts), default=1)
        ahead = max(1, window * readings // max(rec.raw_points, 1))
        gate = DecodeGate(beside.payloads, beside.decode, ahead=ahead)
    todo = iter(enumerate(plan.bodies))
    lock = threading.Lock()

    def work(client: InfluxHTTP) -> None:
        while True:
            with lock:
                i, data = next(todo, (-1, b""))
            if i < 0:
                return
            if gate is not None:
                gate.take(needed[i])
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
    started, cpu0, own0 = time.monotonic(), cpu_seconds(pid), cpu_seconds(os.getpid())
    threads = [threading.Thread(target=work, args=(c,), daemon=True) for c in clients]
    if gate is not None:
        gate.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    own = cpu_seconds(os.getpid()) - own0
    if gate is not None:
        gate.join()
    # with the work influxd does after its last answer (snapshots), as the drain's is counted
    cpu = settled_cpu(lambda: cpu_seconds(pid)) - cpu0
    clients[0].execute([f'DROP DATABASE "{db}"'])
    for c in clients:
        c.close()
    points = rec.raw_points
    extra = ""
    if rollup_lines is not None:
        extra = f", {plan.rollup_lines:,} rollup lines beside them (the drain: {rollup_lines:,})"
    whose = "influxd"
    if beside is not None:
        extra += f", {beside.name} of {gate.decoded if gate else 0:,} readings beside them"
        cpu += own
        whose = "influxd and this process (the decode, the writers)"
    detail = (
        f"{points:,} raw points{extra} in {len(plan.bodies):,} "
        f"writes (<= {bench.args.chunk_lines:,} lines each, as the ingester cuts its windows), "
        f"{writers} writers, {elapsed:.1f} s; CPU of {whose} per raw point"
    )
    name = RAW_ONLY if rollup_lines is None else EVERY_LINE if beside is None else BESIDE_DECODE
    return Limit(name=name, rate=points / elapsed, detail=detail, cpu_us=cpu * 1e6 / points)

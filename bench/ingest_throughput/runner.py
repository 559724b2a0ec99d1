"""The subject: ingester processes drain a pre-filled backlog.

The members subscribe (their persistent sessions exist) and stop; in the raw modes the raw
series are created (each series' first point a minute early, as the limits create theirs
before their clock); the backlog is published and acknowledged by the broker while they are
away, then they start and the clock runs until their counters say every reading was stored raw
(``pantau_ingest_readings_stored_total``) or folded into acknowledged state
(``pantau_ingest_lag_seconds_count``, aggregates-only). The rate is readings over the span from
the moment a member received its first message (bootstrap done, the broker delivering; polled
every 5 ms) to the last counter step, which the members time themselves
(``pantau_ingest_last_stored_timestamp_seconds``, ``..._last_folded_...``); the counters are
read over /metrics every 50-250 ms (InfluxDB is not queried during the drain: it is the raw
modes' bottleneck). Afterwards the bench checks the result exactly (:func:`check`).
"""

from __future__ import annotations

import math
import os
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from bench.drain_support import Member, stop_members, stored, until, watch
from bench.ingest_throughput.env import Bench
from bench.ingest_throughput.procstat import (
    BenchError,
    cpu_seconds,
    dead_letters,
    machine_busy_seconds,
    settled_cpu,
    vm_kb,
)
from bench.ingest_throughput.workload import Workload
from cloud.influx import InfluxHTTP, ident
from contract import KIND_FIELDS, SensorKind


@dataclass(kw_only=True)
class Drain:
    """What one drain by ``members`` ingester processes measured."""

    workload: Workload
    members: int
    sent: int = 0
    counted: int = 0
    rate: float = float("nan")
    empty_s: float | None = None
    rss_mb: float = float("nan")
    #: CPU of each member over the drain, 100 % = one core
    cpu: list[float] = field(default_factory=list)
    #: CPU microseconds per reading: of the members, and of the members plus InfluxDB
    cpu_us: float = float("nan")
    cpu_us_with_influx: float = float("nan")
    #: CPU of the broker, InfluxDB, this bench and everything else on the machine, likewise
    others_cpu: dict[str, float] = field(default_factory=dict)
    exact: bool = False
    checks: list[str] = field(default_factory=list)
    #: raw points written before the clock to create the series (influx_limit.series_seed)
    seeded: int = 0
    #: every run's rate, in the order they ran, when this is the median of several
    run_rates: list[float] = field(default_factory=list)
    #: what the members wrote: windows, /write requests, points InfluxDB accepted (raw and
    #: the rest: rollups, statuses), summed over the members once the drain settled
    windows: int = 0
    writes: int = 0
    points_written: int = 0


def _side_cpu(bench: Bench) -> dict[str, float]:
    """CPU seconds of the services and this bench, and of everything else on the machine."""
    out = {
        "broker": cpu_seconds(bench.broker.proc.pid) if bench.broker.proc else 0.0,
        "influxd": cpu_seconds(bench.influx.proc.pid) if bench.influx.proc else 0.0,
        "bench": cpu_seconds(os.getpid()),
    }
    out["others"] = machine_busy_seconds() - sum(out.values())
    return out


#: How often the start of a drain is looked for: a scrape is ~0.6 ms of the member's CPU,
#: spent while it bootstraps, before the measured span
_READY_POLL_S = 0.005


def _ready(members: list[Member], timeout: float) -> tuple[float, float]:
    """Wait until a member has received its first message of the backlog (its bootstrap is
    done and the broker delivers), to within :data:`_READY_POLL_S`; return that moment as
    (monotonic, Unix) time.

    Not ``pantau_ingest_subscribed``: on a resumed session the broker sends the queued
    messages before the SUBACK, and the ingester reads the SUBACK only after tens of MB of
    backlog (its network thread pauses at ``held_max_bytes``), so it reports itself subscribed
    long after the drain began."""
    names = ("pantau_ingest_unacked_messages", "pantau_ingest_messages_total")
    deadline = time.monotonic() + timeout
    while not any(m.metrics(*names).get(n, 0.0) > 0 for m in members for n in names):
        if time.monotonic() > deadline:
            raise BenchError(f"no member received a message within {timeout:.0f} s")
        time.sleep(_READY_POLL_S)
    return time.monotonic(), time.time()


def _settle(members: list[Member], sent: int, timeout: float) -> None:
    """Wait (at most ``timeout`` s) until the members acknowledged every message and folded
    every reading: raw readings are counted stored when their chunk is written, before the
    window's rollups are written and its messages acknowledged."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        metrics = [m.metrics() for m in members]
        folded = sum(x.get("pantau_ingest_lag_seconds_count", 0.0) for x in metrics)
        held = sum(x.get("pantau_ingest_unacked_messages", 1.0) for x in metrics)
        if folded >= sent and held == 0:
            return
        time.sleep(0.05)


def _last_progress(members: list[Member], *, raw: bool) -> float:
    """The Unix time the members last moved the counter a drain watches (0 if none says):
    the end of the drain to the moment, where the polling sees it up to 50 ms late."""
    name = (
        "pantau_ingest_last_stored_timestamp_seconds"
        if raw
        else "pantau_ingest_last_folded_timestamp_seconds"
    )
    return max((m.metrics(name).get(name, 0.0) for m in members), default=0.0)


def drain(bench: Bench, w: Workload, n: int, seed: Sequence[bytes] = ()) -> Drain:
    """``n`` members drain ``w``'s backlog, queued while they were stopped. ``seed``: request
    bodies (microsecond precision) written to their database once it exists, before the
    backlog: the raw series, as they exist after an outage (``influx_limit.series_seed``)."""
    db = f"drain_{w.key.replace('-', '_')}_{n}"
    members = bench.members(w, n, db)
    res = Drain(workload=w, members=n)
    try:
        for m in members:
            m.start()
        until(lambda: all(m.subscribed() for m in members), 90, "members to subscribe")
        for m in members:
            m.signal(signal.SIGTERM)
        for m in members:
            if m.wait(30) is None:
                raise BenchError("a member did not stop in 30 s")
        if seed:
            with InfluxHTTP(url=bench.influx.url, database=db, timeout=60) as influx:
                for b in seed:
                    influx.write(b, precision="u")
            res.seeded = sum(len([x for x in b.split(b"\n") if x]) for b in seed)
        res.sent = bench.fill(w)
        t0 = time.monotonic()
        for m in members:
            m.start()
        ready, ready_wall = _ready(members, 90)
        cpu0 = [cpu_seconds(m.proc.pid) if m.proc else 0.0 for m in members]
        side0, c0 = _side_cpu(bench), time.monotonic()
        got, _first, last = watch(
            lambda: stored(members, raw=w.store_raw), res.sent, bench.args.stall
        )
        c1 = time.monotonic()
        res.cpu = [
            ((cpu_seconds(m.proc.pid) if m.proc else 0.0) - c) / (c1 - c0)
            for m, c in zip(members, cpu0, strict=True)
        ]
        side1 = _side_cpu(bench)
        res.others_cpu = {k: (side1[k] - side0[k]) / (c1 - c0) for k in side1}
        res.others_cpu["others"] -= sum(res.cpu)
        if got:
            res.cpu_us = sum(res.cpu) * (c1 - c0) * 1e6 / got
            # influxd's, with what it does after its last answer (snapshots), as its limit's
            pid = bench.influx.proc.pid if bench.influx.proc else 0
            influx_s = settled_cpu(lambda: cpu_seconds(pid)) - side0["influxd"]
            res.cpu_us_with_influx = res.cpu_us + influx_s * 1e6 / got
        res.counted = got
        span = (last - ready) if last is not None else 0.0
        if got >= res.sent and (end := _last_progress(members, raw=w.store_raw)) > ready_wall:
            span = end - ready_wall  # the members' own clock: not the poll's 50 ms late
        if got >= res.sent and last is not None:
            res.empty_s = last - t0
            res.rate = got / span if span > 0 else float("nan")
        res.rss_mb = max(vm_kb(m.proc.pid, "VmHWM") if m.proc else 0 for m in members) / 1024
        _settle(members, res.sent, bench.args.stall)
        check(bench, w, members, db, res)
    finally:
        stop_members(members)
        for m in members:
            bench.forget(m.client_id)
    return res


def median_drain(runs: list[Drain]) -> Drain:
    """The run with the median rate of ``runs`` (an odd number), as ``limits.median_run``
    reads a limit that scatters: a drain on InfluxDB scatters as much as InfluxDB alone does.
    Exact only if every run was; its RSS the highest of them; a run that was not exact
    (no rate) counts as the slowest."""
    ordered = sorted(runs, key=lambda d: float("-inf") if math.isnan(d.rate) else d.rate)
    return replace(
        ordered[len(ordered) // 2],
        exact=all(d.exact for d in runs),
        rss_mb=max(d.rss_mb for d in runs),
        run_rates=[d.rate for d in runs] if len(runs) > 1 else [],
    )


def check(bench: Bench, w: Workload, members: list[Member], db: str, res: Drain) -> None:
    """Every reading sent was stored raw or aggregated exactly once, nothing refused:
    the members' counters equal the readings sent, InfluxDB holds exactly that many raw points
    (raw modes), and the newest rollups count every sensor of the province (aggregates)."""
    metrics = [m.metrics() for m in members]
    res.windows = int(sum(x.get("pantau_ingest_windows_total", 0.0) for x in metrics))
    res.writes = int(sum(x.get("pantau_ingest_write_seconds_count", 0.0) for x in metrics))
    res.points_written = int(sum(x.get("pantau_ingest_points_written_total", 0.0) for x in metrics))
    decoded = int(sum(x.get("pantau_ingest_readings_total", 0.0) for x in metrics))
    folded = int(sum(x.get("pantau_ingest_lag_seconds_count", 0.0) for x in metrics))
    dead: dict[str, float] = {}
    for x in metrics:
        for k, v in dead_letters(x).items():
            dead[k] = dead.get(k, 0.0) + v
    ok = decoded == res.sent and folded == res.sent and not dead
    res.checks.append(
        f"sent {res.sent:,}; decoded {decoded:,}; folded into state {folded:,}; "
        f"dead letters {dead or 0}"
    )
    with InfluxHTTP(url=bench.influx.url, database=db, timeout=120) as influx:
        if w.store_raw:
            points = raw_points(influx) - res.seeded
            ok = ok and points == res.sent
            seeded = f" (beside the {res.seeded:,} written before)" if res.seeded else ""
            res.checks.append(f"InfluxDB holds {points:,} raw points for {res.sent:,} sent{seeded}")
        sensors = rollup_sensors(influx)
        want = len(bench.registry.sensors)
        ok = ok and sensors == want
        res.checks.append(f"newest rollups count {sensors:,} of the {want:,} sensors")
        # every measurement starts from the same InfluxDB: a database left behind keeps its
        # points in influxd's cache and its series in the in-memory index
        influx.execute([f'DROP DATABASE "{db}"'])
    res.exact = ok


def raw_points(influx: InfluxHTTP) -> int:
    """Raw points stored (every kind)."""
    total = 0
    for kind in SensorKind:
        first = ident(KIND_FIELDS[kind][0])
        for series in influx.query(f"SELECT count({first}) FROM {ident(kind.value)}"):  # noqa: S608
            total += sum(int(r["count"]) for r in series.rows())
    return total


def rollup_sensors(influx: InfluxHTTP) -> int:
    """Sensors the newest rollups were computed from: bed sensors of the province-level
    ``bed_rollup``, plus crowd gates and queue kiosks of every site's newest point."""
    total = 0
    q = (
        "SELECT last(sensors) FROM bed_rollup WHERE level = 'provinsi' "
        "AND bed_type = 'all' AND facility = 'all'"
    )
    for series in influx.query(q):
        total += sum(int(r["last"]) for r in series.rows())
    for measurement, fld in (("crowd_site", "gates"), ("queue_site", "kiosks")):
        for series in influx.query(f"SELECT last({fld}) FROM {measurement} GROUP BY site"):  # noqa: S608
            total += sum(int(r["last"]) for r in series.rows())
    return total

"""The table: each subject's drain rate beside its limit from the same run, the ratio, the
issue's goal and whether it was met, the exactness check and the ingester's peak RSS."""

from __future__ import annotations

import math
from dataclasses import dataclass

from bench.ingest_throughput.limits import Limit
from bench.ingest_throughput.paced import Paced
from bench.ingest_throughput.runner import Drain
from bench.ingest_throughput.workload import (
    CONSUMER,
    INFLUX,
    INFLUX_DECODE,
    INFLUX_RAW,
    RSS_GOAL_MB,
    Workload,
)


@dataclass(kw_only=True)
class Case:
    """One workload's results: its limits, its drains (one per member count), its paced lag."""

    workload: Workload
    limits: dict[str, Limit]
    drains: list[Drain]
    paced: Paced | None = None


def _rate(x: float) -> str:
    if math.isnan(x):
        return "n/a"
    return f"{x / 1e6:,.2f} M" if x >= 1e6 else f"{x:,.0f}"


def verdict(w: Workload, d: Drain, limit: Limit | None) -> tuple[float, str]:
    """(ratio to the limit, per process for the trivial consumer; 'pass' or 'MISS ...')."""
    per = d.rate / d.members if w.limit == CONSUMER else d.rate
    ratio = per / limit.rate if limit is not None and limit.rate > 0 else float("nan")
    need = 1.0
    if w.goal_ratio is not None:
        need = max(need, w.goal_ratio / ratio if ratio > 0 else math.inf)
    if w.goal_rate is not None:
        need = max(need, w.goal_rate / d.rate if d.rate > 0 else math.inf)
    if math.isnan(ratio) and w.goal_ratio is not None:
        return ratio, "n/a"
    return ratio, "pass" if need <= 1.0 else f"MISS (x{need:.2f} needed)"


def cpu_ratio(w: Workload, d: Drain, limit: Limit | None) -> float:
    """The limit's CPU per reading over the subject's (1.0: as cheap as the limit); against
    InfluxDB alone the subject's CPU includes InfluxDB's during the drain."""
    if limit is None:
        return float("nan")
    subject = d.cpu_us_with_influx if w.limit == INFLUX else d.cpu_us
    return limit.cpu_us / subject if subject > 0 else float("nan")


def _against(w: Workload, d: Drain, limit: Limit | None) -> tuple[str, str]:
    """The table's cells of ``d`` against ``limit`` (its name, rate, ratio and CPU ratio),
    and the verdict."""
    ratio, result = verdict(w, d, limit)
    by_cpu = cpu_ratio(w, d, limit)
    cells = (
        f"{limit.name if limit else '-':<20}{_rate(limit.rate) if limit else '-':>10}"
        f"{'' if math.isnan(ratio) else f'{ratio:.2f}':>7}"
        f"{'' if math.isnan(by_cpu) else f'{by_cpu:.2f}':>10}"
    )
    return cells, result


def table(cases: list[Case]) -> list[str]:
    """The summary table, one row per drain."""
    head = (
        f"{'mode':<44}{'members':>7}{'readings/s':>13}  {'limit':<20}{'limit/s':>10}"
        f"{'ratio':>7}{'cpu ratio':>10}  {'goal':<47}{'result':<22}{'exact':<6}{'RSS MB':>7}"
        "  lag p50/p99"
    )
    rows = [head]
    for c in cases:
        w = c.workload
        limit = c.limits.get(w.limit)
        for d in c.drains:
            cells, result = _against(w, d, limit)
            rss_ok = d.rss_mb <= RSS_GOAL_MB
            lag = ""
            if c.paced is not None and c.paced.lag is not None and d.members == 1:
                lag = f"{c.paced.lag[0] * 1000:,.0f} / {c.paced.lag[1] * 1000:,.0f} ms"
            rows.append(
                f"{w.title:<44}{d.members:>7}{_rate(d.rate):>13}  {cells}  {w.goal_text():<47}"
                f"{result:<22}{'yes' if d.exact else 'NO':<6}"
                f"{d.rss_mb:>6,.0f}{'' if rss_ok else '!'}  {lag}"
            )
            # beside the goal's limit: the stricter one (raw lines alone), and the bound of a
            # decode-only ingester (InfluxDB with the payloads' decode beside it)
            for shown in (INFLUX_RAW, INFLUX_DECODE):
                if shown in c.limits:
                    cells, result = _against(w, d, c.limits[shown])
                    rows.append(
                        f"{'':<44}{'':>7}{'':>13}  {cells}  {'(shown beside the goal)':<47}"
                        f"{result:<22}"
                    )
    rows.append(
        "ratio: subject / limit (per process against the trivial consumer); cpu ratio: the "
        "limit's CPU per reading / the subject's (with InfluxDB's for raw storage); exact: every "
        f"reading sent was stored or aggregated, checked; RSS: ingester peak (! = over "
        f"{RSS_GOAL_MB} MB); lag: paced phase. Measured, never asserted."
    )
    return rows


def describe(c: Case) -> list[str]:
    """The detailed lines of one workload."""
    w = c.workload
    out = [f"[{w.key}] {w.title}"]
    for limit in c.limits.values():
        out.append(
            f"  limit {limit.name}: {_rate(limit.rate)}/s, {limit.cpu_us:.2f} us CPU per reading "
            f"({limit.detail})"
        )
    bound, goal = c.limits.get(INFLUX_DECODE), c.limits.get(INFLUX)
    if bound is not None and goal is not None and goal.rate > 0:
        out.append(
            f"  a decode-only ingester's bound: {bound.rate / goal.rate:.2f} of {goal.name} "
            f"(the subject's goal: {w.goal_ratio or 0:.2f})"
        )
    for d in c.drains:
        empty = "STALLED" if d.empty_s is None else f"empty after {d.empty_s:.1f} s"
        cpu = ", ".join(f"{x * 100:.0f}%" for x in d.cpu)
        # 'others' is a difference of counters read microseconds apart: a tiny negative is 0
        side = ", ".join(f"{k} {max(v, 0.0) * 100:.0f}%" for k, v in d.others_cpu.items())
        runs = ""
        if d.run_rates:
            rates = ", ".join(_rate(r) for r in d.run_rates)
            runs = f" (median of {len(d.run_rates)} drains: {rates}; the rest is the median's)"
        out.append(
            f"  {d.members} ingester{'s' if d.members > 1 else ''}: {_rate(d.rate)} readings/s"
            f"{runs}, {d.counted:,} of {d.sent:,}, {empty}; RSS peak {d.rss_mb:,.0f} MB"
        )
        out.append(
            f"    CPU (100% = one core): ingester {cpu}; {side}; {d.cpu_us:.2f} us per reading "
            f"({d.cpu_us_with_influx:.2f} with influxd's)"
        )
        if d.writes:
            # the points beyond the raw ones (rollups, statuses) are InfluxDB's work too
            raw = d.sent if w.store_raw else 0
            out.append(
                f"    wrote {d.points_written:,} points ({raw:,} raw, "
                f"{d.points_written - raw:,} others) in {d.writes:,} requests over "
                f"{d.windows:,} windows"
            )
        verdict_s = "every reading accounted for" if d.exact else "NOT EXACT"
        out.append(f"    check ({verdict_s}): " + "; ".join(d.checks))
    if c.paced is not None:
        p = c.paced
        lag = "n/a" if p.lag is None else f"{p.lag[0] * 1000:,.0f} / {p.lag[1] * 1000:,.0f} ms"
        hist = ""
        if p.hist:
            hist = f" (ingester histogram p50 <= {p.hist[0] * 1000:,.0f}, p99 <= "
            hist += f"{p.hist[1] * 1000:,.0f} ms)"
        out.append(
            f"  paced at {_rate(p.offered)}/s: {_rate(p.stored_rate)} stored/s, lag p50/p99 "
            f"{lag}{hist}; {'drained' if p.drained else 'NOT drained'} after"
        )
    return out

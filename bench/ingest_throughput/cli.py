"""Command line of the ingester capacity bench: run the workloads, print the table."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.host_probe import wakeups_line
from bench.ingest_throughput import influx_limit, limits
from bench.ingest_throughput.env import Bench, close_bench, open_bench
from bench.ingest_throughput.limits import Limit
from bench.ingest_throughput.paced import paced
from bench.ingest_throughput.procstat import BenchError, load_average
from bench.ingest_throughput.report import Case, describe, table
from bench.ingest_throughput.runner import Drain, drain, median_drain
from bench.ingest_throughput.workload import (
    BINARY,
    CONSUMER,
    INFLUX,
    INFLUX_DECODE,
    INFLUX_RAW,
    ORJSON,
    WORKLOADS,
    Workload,
    sample_payloads,
)


def _revision() -> str:
    """The commit the figures belong to, marked when the tree has uncommitted changes."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + (" + uncommitted changes" if dirty else "")


def run_case(bench: Bench, w: Workload) -> Case:
    """The limits of ``w`` on its backlog's payloads, its drains, InfluxDB's limits (raw lines
    alone on a warmed InfluxDB before the drains; every line and the decode-only bound after
    them, as they write as many rollup lines as the drain did) and its paced phase."""
    a = bench.args
    found: dict[str, Limit] = {}
    payloads = sample_payloads(bench.loads(), w.channel, bench.batch(w.channel), bench.messages(w))
    found[BINARY if w.channel == "binary" else ORJSON] = limits.decode_alone(payloads, w.channel)
    recorded = influx_limit.record(bench, payloads, w.key) if w.store_raw else None
    beside = None
    if recorded is not None:
        name, decode = limits.decoder(w.channel)
        beside = influx_limit.Beside(
            name=name, decode=decode, payloads=[(p, n) for _, p, n in payloads]
        )
    del payloads
    if recorded is not None:
        # influxd's first heavy write run after its start is about a tenth slower than every
        # later one (docs/adr/0048-influxdb-warmed-before-a-raw-drain.md): an untimed run of
        # the raw lines first, so that the drain does not pay for it and its limits do not
        # escape it. The raw-only limit needs nothing from the drain: it is measured next.
        influx_limit.influx_alone(bench, w.key, recorded, None)
        found[INFLUX_RAW] = influx_limit.influx_alone(bench, w.key, recorded, None)
    found[CONSUMER] = limits.consumer_drain(bench, w)
    drains: list[Drain] = []
    seed = influx_limit.series_seed(recorded) if recorded is not None else []
    # a raw mode's limit is the median of runs (InfluxDB scatters), and so is its drain
    runs = a.drain_runs if w.store_raw else 1
    for n in w.members:
        try:
            drains.append(median_drain([drain(bench, w, n, seed) for _ in range(runs)]))
        except (BenchError, TimeoutError) as exc:
            print(f"  [{w.key}] {n} members: failed: {exc}", flush=True)
    if recorded is not None:
        # after the drain: the limit writes as many rollup lines as the drain did
        first = next((d for d in drains if d.members == 1 and d.exact), None)
        if first is not None:
            others = first.points_written - first.sent
            found[INFLUX] = limits.median_run(
                [
                    influx_limit.influx_alone(bench, w.key, recorded, others)
                    for _ in range(a.limit_runs)
                ]
            )
            if beside is not None:
                found[INFLUX_DECODE] = influx_limit.influx_alone(
                    bench, w.key, recorded, others, beside
                )
    case = Case(workload=w, limits=found, drains=drains)
    one = next((d for d in drains if d.members == 1), None)
    if a.paced > 0 and one is not None and one.rate > 0:
        try:
            case.paced = paced(bench, w, one.rate)
        except (BenchError, TimeoutError) as exc:
            print(f"  [{w.key}] paced phase failed: {exc}", flush=True)
    return case


def main() -> None:
    """Run the workloads and print the figures."""
    p = argparse.ArgumentParser(
        prog="python -m bench.ingest_throughput",
        description="Ingester capacity by draining a pre-filled backlog, against the limits "
        "measured on the same backlog in the same run (issue 14).",
    )
    p.add_argument("--quick", action="store_true", help="a quarter of the backlogs, no paced")
    p.add_argument("--scale", type=float, default=1.0, help="multiply every backlog")
    p.add_argument("--modes", default="", help="comma-separated keys: a,b,c,d-json,d-binary")
    p.add_argument("--gateways", type=int, default=16)
    p.add_argument("--sensors-per-gateway", type=int, default=500)
    p.add_argument("--json-batch", type=int, default=500, help="readings per JSON batch")
    p.add_argument("--binary-batch", type=int, default=2000, help="readings per binary batch")
    p.add_argument("--writers", type=int, default=2, help="PANTAU_WRITE_PARALLELISM (raw)")
    p.add_argument(
        "--chunk-lines",
        type=int,
        default=5000,
        help="PANTAU_WRITE_CHUNK_LINES (raw), and the lines per write of InfluxDB alone",
    )
    p.add_argument(
        "--limit-runs",
        type=int,
        default=3,
        help="runs of InfluxDB alone (every line) per raw mode; the median is the limit (odd)",
    )
    p.add_argument(
        "--drain-runs",
        type=int,
        default=3,
        help="drains per raw mode; the median is the subject (odd), as the limit's",
    )
    p.add_argument("--paced", type=float, default=5.0, help="s of paced phase (0: none)")
    p.add_argument("--paced-fraction", type=float, default=0.7)
    p.add_argument("--load-procs", type=int, default=2, help="paced load processes")
    p.add_argument("--scrape", type=float, default=0.025, help="s between scrapes (paced)")
    p.add_argument("--stall", type=float, default=30.0, help="s without progress = a stall")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (logs)")
    args = p.parse_args()
    for name in ("limit_runs", "drain_runs"):
        if getattr(args, name) < 1 or getattr(args, name) % 2 == 0:
            p.error(f"--{name.replace('_', '-')} must be odd and at least 1: the middle run counts")
    if args.quick:
        args.scale *= 0.25
        args.paced = 0.0
    wanted = [w for w in WORKLOADS if not args.modes or w.key in args.modes.split(",")]
    tmp = Path(tempfile.mkdtemp(prefix="pantau-bench-ingest-"))
    started = time.monotonic()
    bench = open_bench(args, tmp)
    cases: list[Case] = []
    try:
        print(
            f"pantau ingester capacity (drain of a pre-filled backlog), "
            f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} cores, "
            f"commit {_revision()}, load average {load_average():.1f}\n"
            f"{wakeups_line()}\n"
            f"command: python -m bench.ingest_throughput {' '.join(sys.argv[1:])}\n"
            f"province: {len(bench.registry.gateways)} gateways x {args.sensors_per_gateway} "
            f"sensors = {len(bench.registry.sensors):,} sensors; JSON batch {args.json_batch}, "
            f"binary batch {args.binary_batch} readings; backlog scale {args.scale:g}\n",
            flush=True,
        )
        for w in wanted:
            case = run_case(bench, w)
            cases.append(case)
            print("\n".join(describe(case)), flush=True)
        print()
        print("\n".join(table(cases)))
        print(f"total {time.monotonic() - started:.0f} s, load average {load_average():.1f}")
    finally:
        close_bench(bench)
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

"""Whole-pipeline benchmark: readings/s end to end and sensor-to-API latency.

Runs the demo city on this machine exactly as ``pantau demo`` does (firmware simulator on
PTYs -> one edge agent per gateway -> Mosquitto -> ingester -> InfluxDB -> API), with every
sensor reporting every ``--interval`` seconds for ``--duration`` seconds. Prints figures; never
asserted in tests. Everything shares the machine's cores, so the figure is for the whole city
on one box, load generator included.

    .venv/bin/python -m bench.pipeline --interval 0.01 --duration 30

Latency: the API is polled every ``--poll`` seconds; each time a ward's ``observed_at`` changes,
``poll time - observation time`` is one sample (an upper bound, by at most one poll period).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from city import DEMO_CITY
from cloud.influx import InfluxHTTP
from pantau.stack import LocalStack


def _stored(influx: InfluxHTTP) -> int:
    series = influx.query("SELECT count(seq) FROM bed, crowd, queue")
    return sum(int(s.values[0][1]) for s in series if s.values)


def _percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--interval", type=float, default=0.01, help="s between readings")
    parser.add_argument("--duration", type=float, default=30.0, help="s of sensor traffic")
    parser.add_argument("--poll", type=float, default=0.05, help="s between API polls")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pantau-bench-") as tmp:
        scenario = Path(tmp) / "bench.yaml"
        scenario.write_text(
            f"name: bench\nseed: 1\nspeedup: 60\ninterval_s: {args.interval}\n"
            f"duration_s: {args.duration}\ndrain_timeout_s: 60\n"
        )
        with (
            LocalStack(
                city_file=DEMO_CITY, scenario_file=scenario, workdir=Path(tmp) / "city"
            ) as stack,
            InfluxHTTP(url=stack.influx) as influx,
            httpx.Client(base_url=stack.api_url, timeout=5) as api,
        ):
            latencies: list[float] = []
            last_seen: dict[str, int] = {}
            counts: list[tuple[float, int]] = []
            started = time.monotonic()
            while not stack.simulator_finished():
                stack.check_alive()
                now_ms = time.time() * 1000
                for ward in api.get("/v1/beds").json()["items"]:
                    seen = ward["observed_at_ms"]
                    if seen is not None and last_seen.get(ward["sensor"]) != seen:
                        if ward["sensor"] in last_seen:  # skip the first sight of each ward
                            latencies.append(now_ms - seen)
                        last_seen[ward["sensor"]] = seen
                counts.append((time.monotonic(), _stored(influx)))
                time.sleep(args.poll)
            sent_s = time.monotonic() - started
            # wait for the tail to land
            stable_since, last = time.monotonic(), -1
            while time.monotonic() - stable_since < 3:
                total = _stored(influx)
                if total != last:
                    stable_since, last = time.monotonic(), total
                time.sleep(0.2)
            truth = stack.truth_path.read_text()

    doc = json.loads(truth)
    frames = int(doc["frames_written"])
    sensors = len(doc["sensors"])
    steady = [c for c in counts if c[0] - started > 5]
    rate = (
        (steady[-1][1] - steady[0][1]) / (steady[-1][0] - steady[0][0])
        if len(steady) > 1 and steady[-1][0] > steady[0][0]
        else float("nan")
    )
    print(f"sensors                 {sensors} (offered {sensors / args.interval:,.0f} readings/s)")
    print(f"frames written          {frames:,} in {sent_s:.1f} s ({frames / sent_s:,.0f}/s)")
    print(f"distinct points stored  {last:,} ({last / max(frames, 1):.2%} of frames written)")
    print(f"stored rate, steady     {rate:,.0f} readings/s end to end into InfluxDB")
    if latencies:
        print(
            f"sensor->API latency     p50 {_percentile(latencies, 0.5):.0f} ms, "
            f"p99 {_percentile(latencies, 0.99):.0f} ms, max {max(latencies):.0f} ms "
            f"({len(latencies)} samples, mean {statistics.fmean(latencies):.0f} ms, "
            f"poll {args.poll * 1000:.0f} ms)"
        )


if __name__ == "__main__":
    main()

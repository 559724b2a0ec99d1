"""Disk per stored point on InfluxDB 1.x: what a day of the demo city costs once compacted.

``python -m bench.influx_disk [--hours 24] [--interval 10]``

Builds the points exactly as the ingester does (``cloud.ingest.writer.PointBuilder`` from the
demo city's registry, ``cloud.ingest.rollup_points`` of a ``SensorState``): every sensor
reports every ``--interval`` seconds for ``--hours`` of observation time (values drift like the
simulator's: beds by one patient, crowds and queues by a few people), and each 60 s rollup
bucket gets one point per rollup series, as the ingester leaves it. Raw points and aggregates
go to two databases of a real ``influxd`` whose caches are snapshotted and fully compacted
after 2 s of quiet, so the bytes counted are the TSM files InfluxDB keeps (shard data only: no
WAL, no index). Prints bytes per point and per day; docs/operations.md's capacity table quotes
it. Measured, never asserted.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import numpy.typing as npt

from city import DEMO_CITY, load_registry
from cloud.influx import InfluxHTTP
from cloud.ingest.aggregate import SensorState
from cloud.ingest.decode import Readings
from cloud.ingest.rollup_points import RollupPoints
from cloud.ingest.topology import MAX_FIELDS, CityIndex
from cloud.ingest.writer import PointBuilder, body
from contract import KIND_CODES, SensorKind
from pantau.services import free_port, require_binary

BUCKET_MS = 60_000
CHUNK = 5_000


def _config(d: Path, http_port: int, rpc_port: int) -> Path:
    conf = d / "influxdb.conf"
    conf.write_text(
        "reporting-disabled = true\n"
        f'bind-address = "127.0.0.1:{rpc_port}"\n'
        f'[meta]\n  dir = "{d / "meta"}"\n'
        f'[data]\n  dir = "{d / "data"}"\n  wal-dir = "{d / "wal"}"\n'
        "  query-log-enabled = false\n"
        # Snapshot and fully compact soon after the writes stop, so the files are what a
        # long-running server keeps, not its write-ahead log.
        '  cache-snapshot-write-cold-duration = "2s"\n'
        '  compact-full-write-cold-duration = "2s"\n'
        f'[http]\n  enabled = true\n  bind-address = "127.0.0.1:{http_port}"\n'
        "  log-enabled = false\n"
        "[monitor]\n  store-enabled = false\n"
    )
    return conf


def _bytes(d: Path, suffix: str) -> int:
    return sum(p.stat().st_size for p in d.rglob(f"*{suffix}") if p.is_file())


def _initial(index: CityIndex, rng: np.random.Generator) -> npt.NDArray[np.int64]:
    values = np.zeros((index.n_sensors, MAX_FIELDS), dtype=np.int64)
    for i, kind in enumerate(index.sensor_kind.tolist()):
        if kind == KIND_CODES[SensorKind.BED]:
            values[i, :5] = (20, rng.integers(5, 18), 2, 3, 1)  # capacity occupied suspect ...
        elif kind == KIND_CODES[SensorKind.CROWD]:
            values[i, :3] = (0, 0, 0)  # entries exits occupancy
        else:
            values[i, :3] = (0, 0, 2)  # issued served counters_open
    return values


def _step(values: npt.NDArray[np.int64], index: CityIndex, rng: np.random.Generator) -> None:
    bed = index.sensor_kind == KIND_CODES[SensorKind.BED]
    crowd = index.sensor_kind == KIND_CODES[SensorKind.CROWD]
    queue = ~(bed | crowd)
    n = len(values)
    values[bed, 1] = np.clip(values[bed, 1] + rng.integers(-1, 2, n)[bed], 0, values[bed, 0])
    came, left = rng.integers(0, 8, n), rng.integers(0, 8, n)
    values[crowd, 0] += came[crowd]
    values[crowd, 1] += np.minimum(left[crowd], values[crowd, 0] - values[crowd, 1])
    values[crowd, 2] = values[crowd, 0] - values[crowd, 1]
    values[queue, 0] += came[queue] // 3
    values[queue, 1] = np.minimum(values[queue, 0], values[queue, 1] + left[queue] // 3)


def run(hours: float, interval_s: float) -> None:
    """Write the points, wait for compaction, print the figures."""
    registry = load_registry(DEMO_CITY)
    index = CityIndex.from_registry(registry)
    builder = PointBuilder(index=index)
    rollups = RollupPoints(index=index)
    rng = np.random.default_rng(7)
    n = index.n_sensors
    steps = int(hours * 3600 / interval_s)
    start_ms = (int(time.time() * 1000) - int(hours * 3600 * 1000)) // BUCKET_MS * BUCKET_MS
    with tempfile.TemporaryDirectory(prefix="pantau-disk-") as tmp:
        d = Path(tmp)
        http_port, rpc_port = free_port(), free_port()
        log = (d / "influxd.log").open("wb")
        proc = subprocess.Popen(
            [require_binary("influxd"), "run", "-config", str(_config(d, http_port, rpc_port))],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            url = f"http://127.0.0.1:{http_port}"
            while True:
                try:
                    if httpx.get(f"{url}/ping", timeout=0.5).status_code == 204:
                        break
                except httpx.HTTPError:
                    time.sleep(0.2)
            raw_db = InfluxHTTP(url=url, database="raw").start()
            agg_db = InfluxHTTP(url=url, database="agg").start()
            raw_db.ensure_database()
            agg_db.ensure_database()
            state = SensorState(n_sensors=n)
            values = _initial(index, rng)
            raw_points = agg_points = 0
            raw_buf: list[bytes] = []
            agg_buf: list[str] = []
            last_bucket = None
            sensors = np.arange(n, dtype=np.int32)
            for k in range(steps):
                ts_ms = start_ms + int(k * interval_s * 1000)
                _step(values, index, rng)
                ts = np.full(n, ts_ms, dtype=np.int64) + rng.integers(0, 999, n)
                seq = np.full(n, k + 1, dtype=np.int64)
                readings = Readings(
                    message=np.zeros(n, dtype=np.int32),
                    index=sensors.copy(),
                    sensor=sensors,
                    kind=index.sensor_kind.astype(np.int8),
                    ts=ts,
                    seq=seq,
                    values=values.copy(),
                )
                raw_buf += builder.raw(readings).lines
                state.update(sensors, ts, seq, values.copy())
                bucket = ts_ms // BUCKET_MS * BUCKET_MS
                if bucket != last_bucket:
                    # One point per rollup series per bucket: what the ingester leaves after
                    # rewriting the bucket's points in place.
                    agg_buf += rollups.lines(state, bucket)
                    last_bucket = bucket
                for db, buf in ((raw_db, raw_buf), (agg_db, agg_buf)):
                    if len(buf) >= CHUNK:
                        db.write(body(buf), precision="u")
                        if db is raw_db:
                            raw_points += len(buf)
                        else:
                            agg_points += len(buf)
                        buf.clear()
            if raw_buf:
                raw_db.write(body(raw_buf), precision="u")
                raw_points += len(raw_buf)
            if agg_buf:
                agg_db.write(agg_buf, precision="u")
                agg_points += len(agg_buf)
            # Wait until the caches are on disk and compaction has settled.
            sizes: list[tuple[int, int]] = []
            while len(sizes) < 4 or len(set(sizes[-4:])) > 1 or _bytes(d / "wal", ".wal") > 0:
                time.sleep(2)
                sizes.append(
                    (_bytes(d / "data" / "raw", ".tsm"), _bytes(d / "data" / "agg", ".tsm"))
                )
                if len(sizes) > 150:
                    break
            raw_bytes, agg_bytes = sizes[-1]
        finally:
            proc.terminate()
            proc.wait(30)
            log.close()
    days = hours / 24
    print(f"pantau InfluxDB disk benchmark, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print(f"command: python -m bench.influx_disk --hours {hours:g} --interval {interval_s:g}")
    print(
        f"demo city: {n} sensors, one reading each every {interval_s:g} s for {hours:g} h;"
        f" one rollup point per series per 60 s bucket"
    )
    for what, points, size in (
        ("raw readings", raw_points, raw_bytes),
        ("aggregates", agg_points, agg_bytes),
    ):
        print(
            f"{what}: {points:,} points, {size:,} bytes of TSM = {size / points:.1f} bytes/point,"
            f" {size / days / 1e6:.2f} MB/day"
        )


def main() -> None:
    """Command line: ``--hours`` of observation time, a reading every ``--interval`` s."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--interval", type=float, default=10.0)
    args = parser.parse_args()
    os.environ.setdefault("TZ", "UTC")
    run(args.hours, args.interval)


if __name__ == "__main__":
    main()

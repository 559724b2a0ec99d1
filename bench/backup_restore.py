"""What ``pantau backup`` and ``pantau restore`` cost for a given amount of history, on the real
InfluxDB 1.x: seconds to back up, archive bytes, seconds to restore into a fresh server.

``--days`` days of one reading a minute from ``--sensors`` bed sensors are written (raw ``bed``
points as docs/schema.md), then the archive is made with the registry and a dead-letter store
(the broker part is left out: it is one small file).

    .venv/bin/python -m bench.backup_restore                     # 100 sensors x 7 days
    .venv/bin/python -m bench.backup_restore --sensors 500 --days 30

Printed, never asserted. Measured 2026-11-29 on the shared 2-core development machine (load
average about 19 from parallel test runs): 1 008 000 points (100 sensors x 7 d) backed up in
0.57 s into a 1 497 458-byte archive (about 1.5 bytes a point: InfluxDB's TSM compression of
regular timestamps and small integers), restored into a fresh server in 0.21 s, all 1 008 000
points back.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

from city import DEMO_CITY
from cloud.influx import InfluxHTTP, format_line, series_key
from cloud.ingest.migrations import migrate_dead_letters
from pantau.backup import make_backup
from pantau.backup_settings import BackupSettings
from pantau.restore import restore_archive
from pantau.services import InfluxDB

MINUTE_MS = 60_000


def fill(influx: InfluxHTTP, *, sensors: int, days: int, chunk: int = 20_000) -> int:
    """Write ``sensors`` x one reading a minute for ``days``; returns the points written."""
    end = int(time.time() * 1000) // MINUTE_MS * MINUTE_MS
    start = end - days * 86_400_000
    lines: list[str] = []
    total = 0
    rng = random.Random(11)
    keys = [
        series_key("bed", {"sensor": f"bed-{i:04d}", "site": "rs-bench"}) for i in range(sensors)
    ]
    for t in range(start, end, MINUTE_MS):
        for key in keys:
            # Random occupancy: a regular pattern would compress far better than real wards.
            occupied = rng.randint(0, 20)
            seq = (t - start) // MINUTE_MS
            fields = {"capacity": 20, "occupied": occupied, "free": 20 - occupied, "seq": seq}
            lines.append(format_line(key, fields, t))
        if len(lines) >= chunk:
            influx.write(lines)
            total += len(lines)
            lines = []
    if lines:
        influx.write(lines)
        total += len(lines)
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sensors", type=int, default=100)
    parser.add_argument("--days", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-backup-") as tmp:
        root = Path(tmp)
        dead = root / "dead"
        migrate_dead_letters(dead)
        with InfluxDB(workdir=root / "influx-a") as server:
            with InfluxHTTP(url=server.url) as influx:
                influx.ensure_database()
                points = fill(influx, sensors=args.sensors, days=args.days)
            settings = BackupSettings(
                influx_rpc=f"{server.host}:{server.rpc_port}",
                city_file=DEMO_CITY,
                dead_letter_dir=dead,
            )
            archive = root / "city.tar.gz"
            began = time.perf_counter()
            make_backup(archive, settings, skip=frozenset({"broker"}))
            backup_s = time.perf_counter() - began
        with InfluxDB(workdir=root / "influx-b") as server:
            target = BackupSettings(
                influx_rpc=f"{server.host}:{server.rpc_port}",
                city_file=root / "restored" / "city.yaml",
                dead_letter_dir=root / "restored" / "dead",
            )
            began = time.perf_counter()
            restore_archive(archive, target, skip=frozenset({"broker"}))
            restore_s = time.perf_counter() - began
            with InfluxHTTP(url=server.url) as influx:
                (series,) = influx.query("SELECT count(occupied) FROM bed")
                restored = int(series.rows()[0]["count"])
        print(f"points        {points:>12,d} ({args.sensors} sensors x {args.days} d, 1/min)")
        print(f"backup        {backup_s:>12.2f} s")
        print(f"archive       {archive.stat().st_size:>12,d} bytes")
        print(f"restore       {restore_s:>12.2f} s")
        print(f"restored      {restored:>12,d} points")


if __name__ == "__main__":
    main()

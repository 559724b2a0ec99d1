"""InfluxDB's CPU per raw point for the writes a drain makes, replayed without the ingester.

``python -m bench.ingest_throughput.replay [--channel json|binary] [--messages 600]
[--repeat 3] [--variants reading,series,series+rollups,reading@20000]``

The window pipeline (``WindowPipeline``, the bench's province, windows of the ingester's
default payload bytes, messages observed 2 ms apart as a backlog is) runs once with a writer
that records every write: each window's raw lines (in the order ``PointBuilder.raw`` gives
them) and its rollup lines. Each variant then writes them to a fresh database of one InfluxDB
1.6 from ``--writers`` threads, window by window, and prints influxd's CPU (from /proc) per raw
point; the database is dropped after it, and the variants run interleaved ``--repeat`` times.
On a shared machine this separates InfluxDB's cost from the ingester's far better than a drain
(docs/adr/0037-influxdb-inside-the-drain.md). A variant is ``ORDER[+rollups][@LINES]``:

- ``series``: the raw lines as the ingester sends them (by kind, then sensor);
- ``reading``: the same lines in the window's reading order (the ingester before ADR 0037);
- ``+rollups``: each window's rollup write goes out with the next window's raw chunks;
- ``@LINES``: at most LINES per request (default ``--chunk-lines``), cut as ``PointWriter``
  cuts a window.
"""

from __future__ import annotations

import argparse
import functools
import shutil
import tempfile
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import cast

import numpy as np
import yaml

from bench.ingest_load import backlog_payloads, gateway_loads, synthetic_province
from bench.ingest_throughput.procstat import cpu_seconds
from city import load_registry
from cloud.influx import InfluxHTTP
from cloud.ingest.aggregate import SensorState
from cloud.ingest.deadletter import DeadLetterStore
from cloud.ingest.decode import Message
from cloud.ingest.dedup import BatchDedup
from cloud.ingest.health import IngestHealth
from cloud.ingest.metrics import IngestMetrics
from cloud.ingest.pipeline import WindowPipeline
from cloud.ingest.settings import IngestSettings
from cloud.ingest.topology import CityIndex
from cloud.ingest.writer import PointWriter, Refused, body, chunk_bounds
from pantau.services import InfluxDB


class Window:
    """One window's recorded writes: raw lines (as sent, and in reading order), the sensor
    index of each line as sent, and the window's rollup lines."""

    def __init__(self) -> None:
        self.raw: list[bytes] = []
        self.raw_by_reading: list[bytes] = []
        self.sensors: np.ndarray = np.zeros(0, np.int64)
        self.rollups: list[bytes] = []


class _Recorder:
    """Stands for ``PointWriter``: keeps what each write carried, stores nothing."""

    def __init__(self) -> None:
        self.into: list[bytes] = []

    def write(self, lines: Sequence[str] | Sequence[bytes]) -> list[Refused]:
        self.into += [x if isinstance(x, bytes) else x.encode() for x in lines]
        return []

    def submit(self, lines: Sequence[str] | Sequence[bytes]) -> _Done:
        self.write(lines)
        return _Done()


class _Done:
    def result(self) -> list[Refused]:
        return []

    def done(self) -> bool:
        return True


def record(channel: str, messages: int) -> list[Window]:
    """The writes of a backlog of ``messages`` of ``channel``, window by window."""
    with tempfile.TemporaryDirectory(prefix="pantau-bench-replay-") as tmp:
        doc = synthetic_province(gateways=16, sensors_per_gateway=500)
        city = Path(tmp) / "province.yaml"
        city.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False))
        passwords = {g["id"]: "unused" for g in doc["gateways"]}
        batch = 500 if channel == "json" else 2000
        loads = gateway_loads(doc, passwords)
        payloads = backlog_payloads(loads, channel, batch, messages, step_ms=2)
        return record_windows(city, [(t, p) for t, p, _ in payloads], Path(tmp) / "dead")


def record_windows(city: Path, payloads: list[tuple[str, bytes]], dead: Path) -> list[Window]:
    """The writes the window pipeline makes for ``payloads`` (topic, payload) of the city in
    ``city``, in windows of the ingester's default payload bytes, window by window."""
    index = CityIndex.from_registry(load_registry(city))
    state = SensorState(n_sensors=index.n_sensors)
    settings = IngestSettings(city_file=city, store_raw=True, dead_letter_dir=dead)
    rec = _Recorder()
    pipeline = WindowPipeline(
        settings=settings, index=index, state=state, writer=cast(PointWriter, rec),
        dead=cast(DeadLetterStore, None), metrics=IngestMetrics(),
        health=IngestHealth(ingester="bench"), dedup=BatchDedup(per_gateway=1024), history=None,
        clock_ms=lambda: time.time_ns() // 1_000_000,
    )  # fmt: skip
    out: list[Window] = []
    window: list[Message] = []
    size = 0
    for i, (t, p) in enumerate(payloads):
        window.append(Message(topic=t, payload=p, received_ms=0, mid=i, qos=1, generation=1))
        size += len(p)
        if size < settings.window_max_bytes and i < len(payloads) - 1:
            continue
        w = Window()
        storing = pipeline.prepare(window)
        w.raw = list(storing.lines.lines)
        # by kind as raw() gives them, and within a kind in the window's order of readings
        row = storing.lines.row
        w.sensors = storing.decoded.readings.sensor[row]
        kind = storing.decoded.readings.kind[row]
        block = np.cumsum(np.diff(kind, prepend=kind[:1]) != 0)
        w.raw_by_reading = [w.raw[j] for j in np.lexsort((row, block))]
        rec.into = []
        pipeline.submit(storing)  # the raw write: recorded above, from the lines
        rec.into = w.rollups
        pipeline.finish(storing)
        pipeline.settle(storing)
        out.append(w)
        window, size = [], 0
    return out


def replay(
    influx: InfluxDB, db: str, requests: list[list[bytes]], writers: int
) -> tuple[float, float]:
    """Write each group of bodies on ``writers`` threads, group after group (a window's writes
    settle before the next window's start, as the ingester's raw writes do); influxd's CPU
    seconds and the wall seconds it took."""
    clients = [InfluxHTTP(url=influx.url, database=db, timeout=120).start() for _ in range(writers)]
    clients[0].ensure_database()
    mine = threading.local()
    free = iter(clients)
    lock = threading.Lock()

    def send(data: bytes) -> None:
        if not hasattr(mine, "client"):
            with lock:
                mine.client = next(free)
        mine.client.write(data, precision="u")

    pid = influx.proc.pid if influx.proc else 0
    t0, c0 = time.monotonic(), cpu_seconds(pid)
    with ThreadPoolExecutor(writers) as pool:
        for group in requests:
            list(pool.map(send, group))
    wall, cpu = time.monotonic() - t0, cpu_seconds(pid) - c0
    clients[0].execute([f'DROP DATABASE "{db}"'])
    for c in clients:
        c.close()
    return cpu, wall


def requests_of(
    windows: list[Window], variant: str, *, chunk_lines: int, writers: int
) -> list[list[bytes]]:
    """The request bodies of ``variant``, grouped by window (cut as ``PointWriter`` cuts a
    window: at most ``chunk_lines``, or the variant's ``@LINES``, on ``writers`` threads)."""
    order, _, lines = variant.partition("@")
    cut = functools.partial(
        chunk_bounds, chunk_lines=int(lines) if lines else chunk_lines, parallelism=writers
    )
    out: list[list[bytes]] = []
    rollups: list[bytes] = []
    for w in windows:
        raw = w.raw_by_reading if order.startswith("reading") else w.raw
        group = [body(raw[lo:hi]) for lo, hi in cut(len(raw))]
        if order.endswith("+rollups"):
            group += rollups  # the window before's, written beside this one's raw points
            rollups = [body(w.rollups[lo:hi]) for lo, hi in cut(len(w.rollups))]
        out.append(group)
    if rollups:
        out.append(rollups)
    return out


def main() -> None:
    """Record once, replay every variant ``--repeat`` times, interleaved."""
    p = argparse.ArgumentParser(
        prog="python -m bench.ingest_throughput.replay", description=__doc__
    )
    p.add_argument("--channel", choices=("json", "binary"), default="json")
    p.add_argument("--messages", type=int, default=600)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--writers", type=int, default=2)
    p.add_argument("--chunk-lines", type=int, default=5000)
    p.add_argument("--variants", default="reading,series,series+rollups,reading@20000")
    a = p.parse_args()
    windows = record(a.channel, a.messages)
    n_raw = sum(len(w.raw) for w in windows)
    n_rollups = sum(len(w.rollups) for w in windows)
    print(f"{a.channel}: {len(windows)} windows, {n_raw:,} raw lines, {n_rollups:,} rollup lines")
    tmp = Path(tempfile.mkdtemp(prefix="pantau-bench-replay-"))
    influx = InfluxDB(workdir=tmp / "influxdb")
    influx.start()
    try:
        for r in range(a.repeat):
            for i, variant in enumerate(a.variants.split(",")):
                requests = requests_of(
                    windows, variant, chunk_lines=a.chunk_lines, writers=a.writers
                )
                cpu, wall = replay(influx, f"replay_{r}_{i}", requests, a.writers)
                print(
                    f"  {variant:<24} influxd {cpu * 1e6 / n_raw:5.2f} us per raw point, "
                    f"{sum(map(len, requests))} requests, {n_raw / wall:9,.0f} raw points/s",
                    flush=True,
                )
    finally:
        influx.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

"""CPU of the ingester's window pipeline alone, in process: no broker, InfluxDB replaced by a
writer that only counts lines. What is left of a drain's CPU once MQTT is taken out.

``python -m bench.ingest_window --mode a --window 600 [--profile] [--raw]``

The synthetic province of issue 5 (16 gateways x 500 sensors) and the payloads of
``bench.ingest_throughput``'s backlog (the same templates, round-robin over the gateways):
mode ``a`` single readings, ``b`` JSON batches of 500, ``c`` binary batches of 2 000 readings;
``--window`` messages per window (a drain's windows hold 600-1 500 single readings at 0.2 s,
or 8 MiB aggregates-only: about 102 JSON or 110 binary batches, ``--window 110``). As in a
drain's backlog, each message is observed ``--step-ms`` after the one before (it was published
then), so every window moves its sensors' newest times and the rollup cells change and are
written, as they are in a drain. The heap is padded as ``pantau ingest run`` pads it
(``cloud/ingest/allocator.py``; ``--no-heap-pad``: not).
Prints CPU microseconds per reading (``time.process_time``) and the rollup lines written;
``--profile`` adds cProfile's top functions; ``--guard`` the crash-loop guard's hashing of each
window (``PoisonGuard.plan``), which the service runs before decoding (ADR 0039).
docs/performance.md ("Modes (a) and (c) after ...", "Mode (c) after whole-window binary
columns", "Mode (b)'s decoder after ADR 0030") quotes it. ``--raw`` stores raw points too (mode
(d)): the writer then also builds each request body from its lines, as ``PointWriter`` does, so
the formatting and encoding of the lines are in the figure.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import cast

import yaml

from bench.ingest_load import (
    backlog_payloads,
    gateway_loads,
    synthetic_province,
)
from city import load_registry
from cloud.ingest.aggregate import SensorState
from cloud.ingest.allocator import keep_heap_top
from cloud.ingest.bootstrap import start_history
from cloud.ingest.deadletter import DeadLetterStore
from cloud.ingest.decode import Message
from cloud.ingest.dedup import BatchDedup
from cloud.ingest.guard import PoisonGuard
from cloud.ingest.health import IngestHealth
from cloud.ingest.metrics import IngestMetrics
from cloud.ingest.pipeline import WindowPipeline
from cloud.ingest.settings import IngestSettings
from cloud.ingest.topology import CityIndex
from cloud.ingest.writer import PointWriter, Refused, body

_MODES = {"a": ("reading", 1), "b": ("json", 500), "c": ("binary", 2000)}


class _CountingWriter:
    """Stands for ``PointWriter``: counts the lines and builds the request bodies, stores
    nothing."""

    def __init__(self, *, chunk_lines: int) -> None:
        self.lines = 0
        self.chunk_lines = chunk_lines

    def write(self, lines: Sequence[str]) -> list[Refused]:
        self.lines += len(lines)
        for lo in range(0, len(lines), self.chunk_lines):
            body(lines[lo : lo + self.chunk_lines])
        return []

    def submit(self, lines: Sequence[str]) -> _Done:
        """As ``PointWriter.submit``, settled at once (the rollup write of ADR 0032)."""
        return _Done(self.write(lines))


class _Done:
    """A write already settled: ``PendingWrite``'s one method."""

    def __init__(self, refused: list[Refused]) -> None:
        self.refused = refused

    def result(self) -> list[Refused]:
        return self.refused


def main() -> None:
    """Run the windows and print the figures."""
    p = argparse.ArgumentParser(prog="python -m bench.ingest_window", description=__doc__)
    p.add_argument("--mode", choices=sorted(_MODES), default="a")
    p.add_argument("--window", type=int, default=600, help="messages per window")
    p.add_argument("--windows", type=int, default=20)
    p.add_argument(
        "--step-ms", type=float, default=2.0, help="observation time between two messages"
    )
    p.add_argument("--profile", action="store_true")
    p.add_argument("--sort", default="tottime", help="cProfile order: tottime, cumulative")
    p.add_argument(
        "--no-heap-pad", action="store_true", help="leave glibc's heap trimming as it is"
    )
    p.add_argument("--raw", action="store_true", help="store raw points too (mode d)")
    p.add_argument(
        "--guard",
        action="store_true",
        help="the crash-loop guard's plan (its hashes) before each window, as the service runs it",
    )
    a = p.parse_args()
    if not a.no_heap_pad:
        keep_heap_top()  # as `pantau ingest run` does
    channel, batch = _MODES[a.mode]
    tmp = Path(tempfile.mkdtemp(prefix="pantau-bench-window-"))
    doc = synthetic_province(gateways=16, sensors_per_gateway=500)
    city = tmp / "province.yaml"
    city.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False))
    index = CityIndex.from_registry(load_registry(city))
    state = SensorState(n_sensors=index.n_sensors)
    n = a.window * (a.windows + 1)
    passwords = {g["id"]: "unused" for g in doc["gateways"]}
    payloads = backlog_payloads(gateway_loads(doc, passwords), channel, batch, n, step_ms=a.step_ms)
    settings = IngestSettings(city_file=city, store_raw=a.raw, dead_letter_dir=tmp / "dead")
    writer = _CountingWriter(chunk_lines=settings.write_chunk_lines)
    pipeline = WindowPipeline(
        settings=settings,
        index=index,
        state=state,
        writer=cast(PointWriter, writer),
        dead=cast(DeadLetterStore, None),  # nothing in these payloads is refused
        metrics=IngestMetrics(),
        health=IngestHealth(ingester="bench"),
        dedup=BatchDedup(per_gateway=1024),
        history=start_history(settings, index, state),
        clock_ms=lambda: time.time_ns() // 1_000_000,
    )
    msgs = [
        Message(topic=t, payload=b, received_ms=0, mid=i, qos=1, generation=1)
        for i, (t, b, _) in enumerate(payloads)
    ]
    windows = [msgs[i : i + a.window] for i in range(0, len(msgs), a.window)]
    guard = PoisonGuard(path=tmp / "guard.sqlite", max_attempts=3) if a.guard else None
    pipeline.store(windows[0])  # the first window lays out every cell: not the steady state
    writer.lines = 0
    profile = cProfile.Profile() if a.profile else None
    started = time.process_time()
    if profile is not None:
        profile.enable()
    for w in windows[1:]:
        if guard is not None:
            guard.plan(w)
        pipeline.store(w)
    if profile is not None:
        profile.disable()
    cpu = time.process_time() - started
    readings = sum(r for _, _, r in payloads[a.window :])
    print(
        f"mode {a.mode}: {len(windows) - 1} windows of {a.window} messages, {readings:,} "
        f"readings: {cpu / readings * 1e6:.2f} us CPU per reading, {writer.lines:,} lines"
    )
    if profile is not None:
        pstats.Stats(profile).sort_stats(a.sort).print_stats(25)


if __name__ == "__main__":
    main()

"""The limits every subject is held against, measured on the same backlog in the same run:

- a trivial paho consumer that only counts and acknowledges (manual acks, QoS 1) draining the
  same backlog from the broker (``bench.drain_support.CountingConsumer``);
- ``orjson.loads`` alone on the same JSON payloads, in this process on one core;
- the binary decode alone (``contract.binary.decode_binary_batch``) on the same payloads;
- InfluxDB alone storing the same raw lines, exactly as the ingester formats and orders them
  (its own decoder and ``PointBuilder``, on windows of the ingester's default payload bytes)
  in the same request bodies (each window cut as ``PointWriter`` cuts it, ``--chunk-lines``
  at most, as the ingester's ``PANTAU_WRITE_CHUNK_LINES`` in the same run), from
  ``--writers`` threads.

The last one is the only place the bench imports the ingester's internals.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import orjson

from bench.drain_support import CountingConsumer, watch
from bench.ingest_throughput.env import Bench
from bench.ingest_throughput.procstat import cpu_seconds
from bench.ingest_throughput.workload import Workload
from cloud.influx import InfluxHTTP
from cloud.ingest.decode import Message, decode_window
from cloud.ingest.settings import IngestSettings
from cloud.ingest.topology import CityIndex
from cloud.ingest.writer import PointBuilder, PointWriter
from cloud.ingest.writer import body as write_body
from contract.binary import decode_binary_batch
from contract.errors import StorageError
from contract.topics import Channel

#: best of this many passes for the in-process limits (a shared machine steals some)
ROUNDS = 3


@dataclass(kw_only=True)
class Limit:
    """One limit's rate (readings/s, or points/s for InfluxDB) and how it was taken."""

    name: str
    rate: float
    detail: str
    #: CPU microseconds per reading (per point for InfluxDB): unlike the rate, a machine
    #: shared with other work hardly moves it
    cpu_us: float = float("nan")


def consumer_drain(bench: Bench, w: Workload) -> Limit:
    """The trivial consumer drains ``w``'s backlog: readings/s from its reconnect to its last
    message (messages x readings per message)."""
    client_id = f"bench-trivial-{w.key}"
    bench.consumer_account(client_id)
    ch = Channel.READING if w.channel == "reading" else Channel.READINGS
    consumer = CountingConsumer(
        host=bench.broker.host,
        port=bench.broker.port,
        client_id=client_id,
        password=bench.passwords["pantau-ingest"],
        channel=ch,
    )
    consumer.subscribe()
    messages = bench.messages(w)
    sent = bench.fill(w)
    per_msg = sent // messages
    cpu0 = cpu_seconds(os.getpid())
    consumer.start()
    try:
        got, first, last = watch(lambda: consumer.count * per_msg, sent, bench.args.stall)
        cpu = cpu_seconds(os.getpid()) - cpu0
    finally:
        consumer.stop()
    start = consumer.connected_at if consumer.connected_at is not None else first
    span = (last - start) if start is not None and last is not None else 0.0
    rate = got / span if span > 0 and got == sent else float("nan")
    detail = (
        f"counted {got:,} of {sent:,} readings ({got // per_msg:,} messages acknowledged); "
        f"CPU of this process (the consumer's paho thread, and the 50 ms poll)"
    )
    return Limit(name="paho count + ack", rate=rate, detail=detail, cpu_us=cpu * 1e6 / got)


def _best(work: Callable[[], int]) -> tuple[float, float]:
    """Items/s of the fastest of ROUNDS calls of ``work`` (which returns its item count), and
    the least CPU microseconds per item (process time: what other work does not inflate)."""
    best, cpu_us = 0.0, float("inf")
    for _ in range(ROUNDS):
        t0, c0 = time.perf_counter(), time.process_time()
        n = work()
        best = max(best, n / (time.perf_counter() - t0))
        cpu_us = min(cpu_us, (time.process_time() - c0) * 1e6 / n)
    return best, cpu_us


def orjson_alone(payloads: list[tuple[str, bytes, int]]) -> Limit:
    """``orjson.loads`` of every JSON payload, nothing else: readings/s."""
    bodies = [p for _, p, _ in payloads]
    readings = sum(n for _, _, n in payloads)

    def work() -> int:
        for body in bodies:
            orjson.loads(body)
        return readings

    rate, cpu_us = _best(work)
    detail = f"{len(bodies):,} payloads, {readings:,} readings, best of {ROUNDS}, one core"
    return Limit(name="orjson.loads alone", rate=rate, detail=detail, cpu_us=cpu_us)


def binary_alone(payloads: list[tuple[str, bytes, int]]) -> Limit:
    """``contract.binary.decode_binary_batch`` of every binary payload: readings/s."""
    bodies = [p for _, p, _ in payloads]
    readings = sum(n for _, _, n in payloads)

    def work() -> int:
        for body in bodies:
            decode_binary_batch(body)
        return readings

    rate, cpu_us = _best(work)
    detail = f"{len(bodies):,} payloads, {readings:,} readings, best of {ROUNDS}, one core"
    return Limit(name="binary decode alone", rate=rate, detail=detail, cpu_us=cpu_us)


def raw_bodies(
    bench: Bench, payloads: list[tuple[str, bytes, int]]
) -> tuple[list[bytes], list[bytes]]:
    """The ``/write`` bodies the ingester sends for the raw points of ``payloads``: windows of
    the ingester's default payload bytes, its decoder and point builder, each window cut into
    chunks as its writer cuts them. Returned as (bodies of one line per series of the first
    window, written before the clock starts so the series exist, and the bodies of the rest)."""
    index = CityIndex.from_registry(bench.registry)
    builder = PointBuilder(index=index)
    cut = PointWriter(
        influx=InfluxHTTP(url=bench.influx.url, database="unused"),  # never started
        stopping=threading.Event(),
        chunk_lines=bench.args.chunk_lines,
        parallelism=bench.args.writers,
    )
    window_bytes = IngestSettings.model_fields["window_max_bytes"].default
    now = time.time_ns() // 1_000_000
    first: list[bytes] = []
    bodies: list[bytes] = []
    window: list[Message] = []
    size = 0
    for i, (t, p, _) in enumerate(payloads):
        window.append(Message(topic=t, payload=p, received_ms=now))
        size += len(p)
        if size < window_bytes and i < len(payloads) - 1:
            continue
        readings = decode_window(window, index, now).readings
        out = builder.raw(readings)
        lines: Sequence[bytes] = out.lines
        window, size = [], 0
        if not first:  # each series' first line (raw() puts a sensor's lines together)
            sensor = readings.sensor[out.row]
            new = np.flatnonzero(np.diff(sensor, prepend=-1) != 0)
            every = list(lines)
            first = [write_body([every[i] for i in new])]
            untimed = set(new.tolist())
            lines = [x for i, x in enumerate(every) if i not in untimed]
        bodies += [write_body(lines[lo:hi]) for lo, hi in cut.chunk_bounds(len(lines))]
    return first, bodies


def influx_alone(bench: Bench, w: Workload, payloads: list[tuple[str, bytes, int]]) -> Limit:
    """InfluxDB stores the raw lines of ``payloads`` from ``--writers`` threads, in the
    ingester's request bodies (nothing else running): points/s."""
    chunk = bench.args.chunk_lines
    first, bodies = raw_bodies(bench, payloads)
    writers = bench.args.writers
    db = f"limit_{w.key.replace('-', '_')}"
    clients = [InfluxHTTP(url=bench.influx.url, database=db, timeout=60) for _ in range(writers)]
    for c in clients:
        c.start()
    clients[0].ensure_database()
    for body in first:  # the series exist before the clock starts
        clients[0].write(body, precision="u")
    todo = iter(bodies)
    lock = threading.Lock()
    done = [0]

    def work(client: InfluxHTTP) -> None:
        while True:
            with lock:
                body = next(todo, None)
            if body is None:
                return
            for attempt in range(3):
                try:
                    client.write(body, precision="u")
                    break
                except StorageError:
                    # a busy InfluxDB answers 500 "timeout" and may still store the points;
                    # writing them again is idempotent (same series, same times)
                    if attempt == 2:
                        raise
            with lock:
                done[0] += body.count(b"\n") + 1

    pid = bench.influx.proc.pid if bench.influx.proc else 0
    started, cpu0 = time.monotonic(), cpu_seconds(pid)
    threads = [threading.Thread(target=work, args=(c,), daemon=True) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed, cpu = time.monotonic() - started, cpu_seconds(pid) - cpu0
    for c in clients:
        c.close()
    per_line = len(bodies[0]) // max(1, bodies[0].count(b"\n") + 1) if bodies else 0
    detail = (
        f"{done[0]:,} points of ~{per_line} bytes in {len(bodies):,} writes (<= {chunk:,} lines "
        f"each, as the ingester cuts its windows), {writers} writers, {elapsed:.1f} s; CPU of "
        "influxd"
    )
    cpu_us = cpu * 1e6 / done[0]
    return Limit(name="InfluxDB alone", rate=done[0] / elapsed, detail=detail, cpu_us=cpu_us)

"""The limits every subject is held against, measured on the same backlog in the same run:

- a trivial paho consumer that only counts and acknowledges (manual acks, QoS 1) draining the
  same backlog from the broker (``bench.drain_support.CountingConsumer``);
- ``orjson.loads`` alone on the same JSON payloads, in this process on one core;
- the binary decode alone (``contract.binary.decode_binary_batch``) on the same payloads;
- InfluxDB alone storing the lines the ingester writes (``influx_limit``: with ``replay``, the
  only modules of the bench that use the ingester's internals).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import orjson

from bench.drain_support import CountingConsumer, watch
from bench.ingest_throughput.env import Bench
from bench.ingest_throughput.procstat import cpu_seconds
from bench.ingest_throughput.workload import Workload
from contract.binary import decode_binary_batch
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


def median_run(runs: list[Limit]) -> Limit:
    """The run with the median rate of ``runs`` (an odd number), its detail naming every
    run's rate: a limit that scatters from one run to the next (InfluxDB alone, by up to a
    tenth over 3 s) is read from the middle run, neither the luckiest nor the unluckiest."""
    ordered = sorted(runs, key=lambda r: r.rate)
    mid = ordered[len(ordered) // 2]
    rates = ", ".join(f"{r.rate:,.0f}" for r in runs)
    return Limit(
        name=mid.name,
        rate=mid.rate,
        detail=f"median of {len(runs)} runs ({rates}/s); {mid.detail}",
        cpu_us=mid.cpu_us,
    )


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


def decoder(channel: str) -> tuple[str, Callable[[bytes], object]]:
    """The decode limit of a channel's payloads, (its name, the call): the fastest decode
    there is of them, ``orjson.loads`` of JSON, ``contract.binary.decode_binary_batch`` of
    binary batches."""
    if channel == "binary":
        return "binary decode", decode_binary_batch
    return "orjson.loads", orjson.loads


def decode_alone(payloads: list[tuple[str, bytes, int]], channel: str) -> Limit:
    """The :func:`decoder` of ``channel`` on every payload, nothing else: readings/s."""
    name, decode = decoder(channel)
    bodies = [p for _, p, _ in payloads]
    readings = sum(n for _, _, n in payloads)

    def work() -> int:
        for body in bodies:
            decode(body)
        return readings

    rate, cpu_us = _best(work)
    detail = f"{len(bodies):,} payloads, {readings:,} readings, best of {ROUNDS}, one core"
    return Limit(name=f"{name} alone", rate=rate, detail=detail, cpu_us=cpu_us)

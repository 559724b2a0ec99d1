"""The limits ``bench.edge_gateway`` prints beside the agent: the same work done in this
process, in one thread, with nothing else to wait for.

- ``floor_pct``: the serial side on the bytes the sensors write (the frame decoder alone,
  and ``PortReader.feed``, which the agent's hub thread calls per port read);
- ``publisher_floor_pct``: the publisher loop's work on the readings those bytes make (the
  batch window, ``SqliteOutbox`` settle/take on a real spool file, each window's put with
  the previous batches' acks in one transaction, the batch envelope),
  without its wake-ups, the MQTT client or the status.

Thread CPU time over the traffic of ``seconds``, best of ``rounds``: the machine is shared,
and the least disturbed round is the closest to the cost.

Each limit is also measured **at the sensors' cadence** (``pace_s``): the same steps, with the
thread asleep between them as the agent's threads are (the sleep is not counted). On this
virtual machine work that follows a sleep costs several times its cost in a tight loop (a
spool settle and take: 0.49 ms hot, 2.6 ms after 100 ms asleep, 3.1 ms after 200 ms; even a
spin loop 65 % more after 200 ms), so the paced figure is what the same work costs in the
agent's wake-up pattern, and the agent's ratio to it is what its own overhead adds.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from contract import SensorKind, SerialFrame, encode_frame
from contract.serial_frame import FrameDecoder
from edge import PortReader, serial_opener
from edge.batcher import Batcher
from edge.envelope import batch_payload
from edge.reading import EdgeReading
from edge.spool import PendingBatch, SpoolLimits, SqliteOutbox

#: The agent's defaults (edge.config): the window, the in-flight cap, a week's age bound.
_WINDOW = 200
_IN_FLIGHT = 64
_MAX_AGE_MS = 7 * 24 * 3600 * 1000


def bed_frame(i: int, step: int, now_ms: int) -> bytes:
    """Sensor ``i``'s frame at ``step``: bed wards with clocks, the heaviest frame and value
    rules there are."""
    occupied = (step + i) % 40
    frame = SerialFrame(
        sensor=f"bed-{i:03d}",
        kind=SensorKind.BED,
        seq=step,
        ts_ms=now_ms,
        values=(40, occupied, occupied // 4, occupied // 8, 0),
    )
    return encode_frame(frame)


def _bursts(n: int, ports: int, rate: float, seconds: float) -> list[list[bytes]]:
    """Per step, each port's bytes: what the bench's sensors write in ``seconds``."""
    steps = max(1, round(rate * seconds))
    now_ms = time.time_ns() // 1_000_000
    return [
        [b"".join(bed_frame(i, step, now_ms) for i in range(p, n, ports)) for p in range(ports)]
        for step in range(steps)
    ]


def _readers(ports: int) -> list[PortReader]:
    return [
        PortReader(label=f"bus{p}", url="", opener=serial_opener(baudrate=115200))
        for p in range(ports)
    ]


def _pause(pace_s: float) -> None:
    if pace_s > 0:
        time.sleep(pace_s)


def floor_pct(
    n: int, ports: int, rate: float, *, seconds: float = 5.0, rounds: int = 3, pace_s: float = 0
) -> tuple[float, float]:
    """% of one core that decoding ``rate`` steps/s of ``n`` sensors over ``ports`` costs,
    (a) the frame decoder alone and (b) the decoder plus the agent's per-frame work
    (``PortReader.feed``: health, value rules, the reading); ``pace_s`` asleep before each
    step (0: a tight loop)."""
    bursts = _bursts(n, ports, rate, seconds)
    decode = feed = float("inf")
    for _round in range(rounds):
        decoders = [FrameDecoder() for _ in range(ports)]
        spent = 0.0
        for burst in bursts:
            _pause(pace_s)
            t0 = time.thread_time()
            for decoder, chunk in zip(decoders, burst, strict=True):
                decoder.feed_columns(chunk)  # what PortReader.feed calls
            spent += time.thread_time() - t0
        decode = min(decode, spent)
        readers = _readers(ports)
        spent = 0.0
        for burst in bursts:
            _pause(pace_s)
            t0 = time.thread_time()
            for reader, chunk in zip(readers, burst, strict=True):
                reader.feed(chunk)
            spent += time.thread_time() - t0
        feed = min(feed, spent)
    return 100 * decode / seconds, 100 * feed / seconds


def publisher_floor_pct(
    n: int,
    ports: int,
    rate: float,
    workdir: Path,
    *,
    seconds: float = 5.0,
    rounds: int = 3,
    pace_s: float = 0,
) -> float:
    """% of one core the publisher loop's own work on those readings costs: each burst into
    the batch window (full at 200), each closed batch put in a SQLite spool in one
    transaction with the acks of the batches before it, taken and wrapped in the envelope,
    as a connected agent whose PUBACKs come before its next window closes; ``pace_s`` asleep
    before each burst (0: a tight loop)."""
    readings: list[list[EdgeReading]] = []
    readers = _readers(ports)
    for burst in _bursts(n, ports, rate, seconds):
        readings.append(
            [r for reader, chunk in zip(readers, burst, strict=True) for r in reader.feed(chunk)]
        )
    best = float("inf")
    for round_no in range(rounds):
        box = SqliteOutbox(
            path=workdir / f"floor-{round_no}.spool",
            limits=SpoolLimits(max_readings=1_000_000, max_age_ms=_MAX_AGE_MS),
        ).open()

        acked: list[PendingBatch] = []

        def store(
            window: Sequence[EdgeReading],
            box: SqliteOutbox = box,
            acked: list[PendingBatch] = acked,
        ) -> None:
            # As the loop does (ADR 0036): the previous batches' PUBACKs and this window in
            # one transaction.
            box.settle(acked=acked, batches=[window])
            skip = {pending.seq for pending in acked}
            acked.clear()
            for pending in box.take(limit=_IN_FLIGHT, skip=skip):
                batch_payload(
                    gw="gw", seq=pending.seq, sent=0, clock_offset_ms=None, body=pending.body
                )
                acked.append(pending)

        batcher = Batcher(max_readings=_WINDOW, max_delay_s=3600.0, store=store)
        spent = 0.0
        for step in readings:
            _pause(pace_s)
            t0 = time.thread_time()
            batcher.add(step)
            spent += time.thread_time() - t0
        t0 = time.thread_time()
        batcher.close()
        box.settle(acked=acked, batches=[])
        best = min(best, spent + time.thread_time() - t0)
        box.close()
    return 100 * best / seconds

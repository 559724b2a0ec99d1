"""Edge spool benchmark: live load CPU, write and drain rates, a 1M-reading backlog's drain.

All through the real path (``split_lanes`` -> ``SqliteOutbox.put`` / ``take`` /
``mark_acked``) on a temporary spool file; the last part drains a backlog through a real
``EdgeAgent`` to a real Mosquitto (QoS 1, a PUBACK per batch) started on a free port.

    .venv/bin/python -m bench.edge_spool                      # about 40 s
    .venv/bin/python -m bench.edge_spool --backlog 200000 --live-s 5 --broker-backlog 50000

1. **live**: one gateway of 200 sensors x 10 readings/s (2000 readings/s) in the agent's batch
   windows (200 readings, closed every 0.1 s, split into a bed, a queue and a crowd batch),
   each batch taken and acked at once as a connected agent does; CPU time of the process over
   wall time is the spool's share of a core (the goal: <= 5 %).
2. **write / drain**: a ``--backlog`` of readings put as fast as possible (the write rate),
   then taken 64 batches at a time and acked (the spool's drain rate; the goal: >= 20x the
   live rate, 40 000 readings/s, and the time to drain the backlog).
3. **broker**: a ``--broker-backlog`` spool drained by an ``EdgeAgent`` to Mosquitto: readings/s
   end to end of the gateway (spool + JSON encode + MQTT), the figure that matters in an outage.

Figures are printed, never asserted. Default arguments on the 2-core development machine while
other engineers ran tests on it (2026-11-23; docs/adr/0005-edge-spool.md compares layouts)::

    live           2,000 readings/s for 10.0 s: CPU 2.70 % of one core (goal <= 5 %), ...
    write        221,362 readings/s (1,000,000 readings in 4.5 s, 169 bytes/reading on disk)
    drain        105,056 readings/s (1,000,000 readings in 9.5 s, 53x the live rate; ...)
    broker        59,029 readings/s (200,000 readings to Mosquitto, 3.4 s from the first
                  PUBACK; agent CPU 73 % of one core)
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import resource
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from contract.payload import KIND_FIELDS, SensorKind
from edge.agent import MAX_IN_FLIGHT, EdgeAgent
from edge.config import EdgeSettings
from edge.reading import EdgeReading
from edge.spool import SpoolLimits, SqliteOutbox, split_lanes
from pantau.services import Mosquitto

SENSORS = 200
RATE_HZ = 10
WINDOW = 200  # the agent's default batch_max_readings
T0 = 1_700_000_000_000
_VALUES = {
    SensorKind.BED: (40, 10, 2, 1, 3),
    SensorKind.QUEUE: (30, 20, 2),
    SensorKind.CROWD: (500, 400, 100),
}


def _kind(sensor: int) -> SensorKind:
    # A hospital-heavy gateway: 60 % bed sensors, 20 % queue kiosks, 20 % crowd counters.
    return (SensorKind.BED, SensorKind.BED, SensorKind.BED, SensorKind.QUEUE, SensorKind.CROWD)[
        sensor % 5
    ]


def window(round_no: int) -> list[EdgeReading]:
    """One batch window: every sensor's reading of one 0.1 s slice (200 readings), as the
    serial reader makes them."""
    out = []
    for i in range(WINDOW):
        kind = _kind(i)
        values = dict(zip(KIND_FIELDS[kind], _VALUES[kind], strict=True))
        out.append(
            EdgeReading(
                sensor=f"s-{i:03d}",
                kind=kind,
                ts=T0 + round_no * 100,
                seq=round_no,
                values=values,
            )
        )
    return out


def cpu_s() -> float:
    """User + system CPU seconds of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def rss_mb() -> float:
    """Peak resident set size of this process, MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def drain(box: SqliteOutbox) -> int:
    """Take and ack everything, 64 batches at a time; returns readings drained."""
    done = 0
    while batches := box.take(limit=MAX_IN_FLIGHT):
        for batch in batches:
            done += box.mark_acked(batch)
    return done


def fill(box: SqliteOutbox, readings: int) -> None:
    """Put ``readings`` readings as the agent does in an outage (windows split by lane)."""
    windows = [split_lanes(window(r)) for r in range(16)]
    for n in range(readings // WINDOW):
        for lane in windows[n % len(windows)]:
            box.put(lane)


def bench_live(tmp: Path, seconds: float) -> None:
    """2000 readings/s through put/take/mark_acked at the live pace; CPU share of one core."""
    windows = [split_lanes(window(r)) for r in range(16)]
    box = SqliteOutbox(path=tmp / "live.spool", limits=SpoolLimits(max_readings=1_000_000))
    box.open()
    period = WINDOW / (SENSORS * RATE_HZ)  # 0.1 s
    ticks = round(seconds / period)
    start_wall, start_cpu = time.perf_counter(), cpu_s()
    for n in range(ticks):
        for lane in windows[n % len(windows)]:
            box.put(lane)
        for batch in box.take(limit=MAX_IN_FLIGHT):
            box.mark_acked(batch)
        next_at = start_wall + (n + 1) * period
        time.sleep(max(0.0, next_at - time.perf_counter()))
    wall, cpu = time.perf_counter() - start_wall, cpu_s() - start_cpu
    left = box.depth()
    box.close()
    print(
        f"live      {ticks * WINDOW / wall:>10,.0f} readings/s for {wall:.1f} s: "
        f"CPU {100 * cpu / wall:.2f} % of one core (goal <= 5 %), spool left {left}, "
        f"process peak RSS {rss_mb():.0f} MB"
    )


def bench_backlog(tmp: Path, readings: int) -> None:
    """Write rate, then drain rate and time, of a ``readings`` backlog."""
    box = SqliteOutbox(path=tmp / "backlog.spool").open()
    t = time.perf_counter()
    fill(box, readings)
    put_s = time.perf_counter() - t
    size = (tmp / "backlog.spool").stat().st_size + (tmp / "backlog.spool-wal").stat().st_size
    print(
        f"write     {readings / put_s:>10,.0f} readings/s ({readings:,} readings in {put_s:.1f} s,"
        f" {size / readings:.0f} bytes/reading on disk)"
    )
    t = time.perf_counter()
    done = drain(box)
    drain_s = time.perf_counter() - t
    box.close()
    live = SENSORS * RATE_HZ
    print(
        f"drain     {done / drain_s:>10,.0f} readings/s ({done:,} readings in {drain_s:.1f} s,"
        f" {done / drain_s / live:.0f}x the live rate; goal >= 20x)"
    )


@contextlib.contextmanager
def _agent(settings: EdgeSettings) -> Iterator[EdgeAgent]:
    agent = EdgeAgent(settings=settings)
    thread = threading.Thread(target=agent.run, name="bench-agent", daemon=True)
    thread.start()
    try:
        yield agent
    finally:
        agent.request_stop()
        thread.join(30)


def bench_broker(tmp: Path, readings: int) -> None:
    """A backlog drained by an EdgeAgent to a real Mosquitto."""
    spool = tmp / "agent" / "gw.spool"
    box = SqliteOutbox(path=spool).open()
    fill(box, readings)
    box.close()
    master, slave = os.openpty()
    try:
        with Mosquitto(workdir=tmp / "mosquitto") as broker:
            broker.add_user("gw-bench", "gw-bench-pw", site="rs-bench")
            settings = EdgeSettings(
                gateway_id="gw-bench",
                site_id="rs-bench",
                mqtt_url=broker.url,
                mqtt_password="gw-bench-pw",  # noqa: S106 - a throwaway broker user
                serial_ports={"bus0": os.ttyname(slave)},
                spool_path=spool,
                status_interval_s=1.0,
            )
            with _agent(settings) as agent:
                deadline = time.perf_counter() + 300
                acked = 0
                # Timed from the first PUBACK, so the agent's start and connect are left out.
                while acked == 0 or acked < readings:
                    if time.perf_counter() > deadline:
                        print(f"broker    did not drain in 300 s ({acked:,} acked)")
                        return
                    time.sleep(0.002)
                    was, acked = acked, int(agent.status().stats.get("readings_acked", 0))
                    if was == 0 and acked:
                        start_wall, start_cpu, first = time.perf_counter(), cpu_s(), acked
                wall, cpu = time.perf_counter() - start_wall, cpu_s() - start_cpu
    finally:
        os.close(master)
        os.close(slave)
    print(
        f"broker    {(readings - first) / wall:>10,.0f} readings/s ({readings:,} readings to "
        f"Mosquitto, {wall:.1f} s from the first PUBACK; agent CPU {100 * cpu / wall:.0f} % of "
        "one core)"
    )


def main() -> None:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--live-s", type=float, default=10.0, help="s of live load")
    parser.add_argument("--backlog", type=int, default=1_000_000, help="readings to spool")
    parser.add_argument(
        "--broker-backlog", type=int, default=200_000, help="readings the agent drains"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="pantau-spool-bench-") as name:
        tmp = Path(name)
        print(f"edge spool: {SENSORS} sensors x {RATE_HZ} readings/s, windows of {WINDOW}")
        bench_live(tmp, args.live_s)
        bench_backlog(tmp, args.backlog)
        if args.broker_backlog:
            bench_broker(tmp, args.broker_backlog)


if __name__ == "__main__":
    main()

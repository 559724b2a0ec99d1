"""What a wake-up costs on this machine, printed beside a benchmark's figures.

Every figure that crosses threads or processes pays for wake-ups: a timed wait that ends, a
thread woken by a pipe or a socket (paho's messages, the writers' answers from influxd, the
edge agent's hub and network thread). On the shared 2-core VM these runs use, the edge agent
measured 3.75 % of a core at 08:04 and 14-22 % from 11:18 with the same code while its frame
decoder alone stayed at 0.57 %, and a wake-up across the two CPUs then cost 69-87 us
(docs/performance.md, "The host's wake-ups"). So the benchmarks print what a wake-up costs,
measured the same way each run, and a figure can be read against the machine it was taken on.
"""

from __future__ import annotations

import os
import select
import threading
import time

#: timed waits and round trips per probe: about 0.1 s and 0.05 s here
_WAITS, _TRIPS = 200, 2000


def timed_wait_cpu_us(waits: int = _WAITS) -> float:
    """CPU microseconds of this process per 1 ms ``select`` timeout (a timer armed, the
    thread asleep, woken): a few on bare metal."""
    started = time.process_time()
    for _ in range(waits):
        select.select([], [], [], 0.001)
    return (time.process_time() - started) * 1e6 / waits


def round_trip_cpu_us(trips: int = _TRIPS, *, cross: bool = False) -> float:
    """CPU microseconds of this process per pipe round trip between two of its threads (a
    write that wakes the other thread, its answer waking this one), both on one CPU, or with
    ``cross`` on two (each wake-up then an interrupt to the other CPU: a VM exit on a VM).
    NaN when there are not two CPUs to use."""
    allowed = sorted(os.sched_getaffinity(0))
    if cross and len(allowed) < 2:
        return float("nan")
    here, there = allowed[0], allowed[1] if cross else allowed[0]
    there_r, there_w = os.pipe()
    back_r, back_w = os.pipe()

    def echo() -> None:
        os.sched_setaffinity(0, {there})  # this thread only
        for _ in range(trips):
            os.read(there_r, 1)
            os.write(back_w, b"x")

    os.sched_setaffinity(0, {here})
    try:
        peer = threading.Thread(target=echo, daemon=True)
        peer.start()
        started = time.process_time()
        for _ in range(trips):
            os.write(there_w, b"x")
            os.read(back_r, 1)
        cpu = time.process_time() - started
        peer.join()
    finally:
        os.sched_setaffinity(0, allowed)
        for fd in (there_r, there_w, back_r, back_w):
            os.close(fd)
    return cpu * 1e6 / trips


def wakeups_line() -> str:
    """One line for a benchmark's header."""
    return (
        f"host wake-ups: {timed_wait_cpu_us():.1f} us CPU per 1 ms timed wait; per round trip "
        f"between two threads {round_trip_cpu_us():.1f} us on one CPU, "
        f"{round_trip_cpu_us(cross=True):.1f} us across two (python -m bench.host_probe)"
    )


if __name__ == "__main__":
    print(wakeups_line())

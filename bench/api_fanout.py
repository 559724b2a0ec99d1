"""The live stream's fan-out cost in process: CPU microseconds per event per client of
:class:`cloud.api.live.LiveHub`, without sockets, the broker or HTTP.

``--clients`` streams (``LiveHub.frames``) are read by tasks on one event loop; ``--events``
events are published one at a time, each once every client has read the previous one. CPU
time of this process (``time.process_time``), so a shared machine changes it little; what
``bench/api_sse.py`` adds on top is uvicorn's write per client and the network.

    .venv/bin/python -m bench.api_fanout                  # 1 000 clients, 200 events

Printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from city import DEMO_CITY, load_registry
from cloud.api.live import LiveHub


async def fanout_us(clients: int, events: int) -> float:
    """CPU microseconds per (event, client)."""
    hub = LiveHub(registry=load_registry(DEMO_CITY), mqtt_url="mqtt://127.0.0.1:1", flush_s=0.0)
    read = 0

    async def client() -> None:
        nonlocal read
        async for _ in hub.frames():
            read += 1

    tasks = [asyncio.create_task(client()) for _ in range(clients)]
    while read < clients:  # every client has its retry hint: all are waiting
        await asyncio.sleep(0)
    t0 = time.process_time()
    for n in range(events):
        target = read + clients
        hub.publish("change", {"n": n})
        while read < target:
            await asyncio.sleep(0)
    spent = time.process_time() - t0
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return spent / (clients * events) * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=int, default=1000)
    ap.add_argument("--events", type=int, default=200)
    args = ap.parse_args()
    us = asyncio.run(fanout_us(args.clients, args.events))
    print(f"{args.clients} clients, {args.events} events: {us:.1f} us CPU per event per client")


if __name__ == "__main__":
    main()

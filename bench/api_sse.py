"""SSE fan-out benchmark: ``--clients`` Server-Sent Events clients held on one real
``pantau api run`` process while a gateway publishes ``--rate`` batches/s for ``--duration`` s.

A real Mosquitto (Pantau's ACL, the API logged in as ``pantau-api``) on a free port; the API
process is started here (its InfluxDB is never asked: the stream does not read it). The clients
are raw HTTP/1.1 sockets in one asyncio loop of this process (a browser's ``EventSource`` is no
more than that), so the load generator costs little next to the server. Each batch carries its
publish time as the newest observation, so every client can measure, per event, the delay from
the gateway's publish to the event's last byte on its socket.

    .venv/bin/python -m bench.api_sse                       # 1 000 clients, 20 batches/s, 10 s
    .venv/bin/python -m bench.api_sse --clients 2000 --rate 50

Printed (never asserted): clients held, events published and delivered (per client and in
total), delivered events/s over all clients, delay p50/p99/max and the share within 1 s, the API
process's CPU seconds and RSS. Goal (issue 10): 1 000 clients held, events delivered within 1 s.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from bench.ingest_throughput.procstat import cpu_seconds_of
from city import DEMO_CITY, load_registry
from contract import Batch, Channel, Reading, SensorKind, encode, topics
from pantau.services import Mosquitto, free_port

SENSOR = "bed-kariadi-icu"


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of every thread of ``pid`` so far."""
    return cpu_seconds_of(f"/proc/{pid}/stat")


def rss_mb(pid: int) -> float:
    """Resident set size of ``pid`` in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def own_cpu() -> float:
    """User + system CPU seconds of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Client:
    """One SSE client on a raw socket: records (event observed_ms, arrival ms) per event."""

    def __init__(self) -> None:
        self.got: list[tuple[int, int]] = []
        self.ready = asyncio.Event()

    async def run(self, port: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /v1/stream HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\n\r\n")
        await writer.drain()
        try:
            rest = b""
            while True:
                chunk = await reader.read(65536)
                if not chunk:
                    return
                now = time.time_ns() // 1_000_000
                *lines, rest = (rest + chunk).split(b"\n")
                for line in lines:
                    if line.startswith(b"retry:"):
                        self.ready.set()
                    elif line.startswith(b"data: {"):
                        observed = orjson.loads(line[6:]).get("observed_ms")
                        if observed is not None:
                            self.got.append((observed, now))
        finally:
            writer.close()


def publisher(broker: Mosquitto, gateway: str) -> mqtt.Client:
    """A connected MQTT v5 client with ``gateway``'s account."""
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=gateway,  # the broker binds a device's account to its own id (ADR 0010)
        protocol=MQTTProtocolVersion.MQTTv5,
    )
    client.username_pw_set(gateway, f"{gateway}-pw")
    client.connect(broker.host, broker.port)
    client.loop_start()
    return client


async def bench(args: argparse.Namespace, port: int, broker: Mosquitto, pid: int) -> None:
    clients = [Client() for _ in range(args.clients)]
    tasks = [asyncio.create_task(c.run(port)) for c in clients]
    t0 = time.monotonic()
    await asyncio.wait_for(asyncio.gather(*(c.ready.wait() for c in clients)), 120)
    print(f"{args.clients} clients connected in {time.monotonic() - t0:.1f} s")
    city = load_registry(DEMO_CITY)
    sensor = city.sensors[SENSOR]
    topic = topics.build(sensor.site, sensor.gateway, Channel.READINGS)
    pub = await asyncio.to_thread(publisher, broker, sensor.gateway)
    values = {"capacity": 34, "occupied": 20, "suspect": 0, "confirmed": 0, "waiting": 0}
    sent = 0
    cpu0, own0 = cpu_seconds(pid), own_cpu()
    start = time.monotonic()
    n = int(args.rate * args.duration)
    for i in range(n):
        due = start + i / args.rate
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        ts = time.time_ns() // 1_000_000
        reading = Reading(sensor=SENSOR, kind=SensorKind.BED, ts=ts, seq=i, values=values)
        pub.publish(topic, encode(Batch(gw=sensor.gateway, seq=i, sent=ts, readings=[reading])))
        sent += 1
    # Wait for the stragglers: until every client has every event, or 5 s of nothing new.
    deadline = time.monotonic() + 5
    total = 0
    while time.monotonic() < deadline:
        now_total = sum(len(c.got) for c in clients)
        if now_total == sent * len(clients):
            break
        if now_total != total:
            total, deadline = now_total, time.monotonic() + 5
        await asyncio.sleep(0.1)
    busy = time.monotonic() - start
    cpu, own = cpu_seconds(pid) - cpu0, own_cpu() - own0
    held = sum(1 for t in tasks if not t.done())
    delays = np.array([arr - obs for c in clients for obs, arr in c.got], dtype=np.int64)
    delivered = len(delays)
    pub.loop_stop()
    pub.disconnect()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    print(f"clients held to the end: {held} of {args.clients}")
    print(
        f"events published: {sent} ({args.rate:g}/s for {args.duration:g} s); delivered "
        f"{delivered} of {sent * args.clients} ({delivered / max(1, sent * args.clients):.2%})"
    )
    print(f"delivered events/s over all clients: {delivered / busy:,.0f}")
    if delivered:
        p50, p99 = np.percentile(delays, [50, 99])
        within = float(np.mean(delays <= 1000))
        print(
            f"publish -> client delay: p50 {p50:.0f} ms, p99 {p99:.0f} ms, "
            f"max {delays.max()} ms; within 1 s: {within:.2%}"
        )
    print(f"API process: {cpu:.2f} CPU s over {busy:.1f} s, RSS {rss_mb(pid):.0f} MB")
    # If this is near `busy`, the clients (this process), not the API, set the delays.
    print(f"load generator (this process): {own:.2f} CPU s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=int, default=1000)
    ap.add_argument("--rate", type=float, default=20.0, help="batches per second")
    ap.add_argument("--duration", type=float, default=10.0, help="seconds of publishing")
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, args.clients * 2 + 256)), hard))
    with tempfile.TemporaryDirectory(prefix="pantau-bench-sse-") as tmp:
        broker = Mosquitto(workdir=Path(tmp) / "mosquitto")
        broker.add_user("gw-kariadi", "gw-kariadi-pw")
        with broker:
            port = free_port()
            env = {k: v for k, v in os.environ.items() if not k.startswith("PANTAU_")}
            env |= {
                "PANTAU_MQTT_URL": broker.url,
                "PANTAU_MQTT_PASSWORD": broker.users["pantau-api"],
                "PANTAU_INFLUX_URL": f"http://127.0.0.1:{free_port()}",
            }
            log = Path(tmp) / "api.log"
            cmd = [sys.executable, "-m", "pantau.cli", "api", "run", "--port", str(port)]
            with log.open("wb") as out:
                proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=out)
            try:
                deadline = time.monotonic() + 30
                while b"live stream subscribed" not in log.read_bytes():
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise SystemExit(f"the API did not start:\n{log.read_text()}")
                    time.sleep(0.1)
                asyncio.run(bench(args, port, broker, proc.pid))
            finally:
                proc.terminate()
                proc.wait(30)


if __name__ == "__main__":
    main()

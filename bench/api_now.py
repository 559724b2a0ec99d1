"""Read API benchmark, in one run: requests/s and latency of every now-endpoint next to a
trivial FastAPI endpoint with ``wrk`` (50 connections), for the demo city and for a synthetic
province of 8 000 sensors, and the SSE fan-out (1 000 clients) on the demo city's API.

The data goes the real way: per city a real Mosquitto and InfluxDB on free ports, the ingester
(in this process, in a thread) fed one batch per gateway with every sensor of the city, then
``pantau api run`` (a separate process, its live stream subscribed) once the API counts every
bed sensor. The trivial endpoint (``trivial_app`` below: one GET returning a constant small
JSON object) runs under ``python -m uvicorn`` with the same log level and is measured just
before each endpoint (the machine's load drifts), so the ratio shows what the now-endpoints
cost beyond FastAPI itself.

While wrk runs, a gateway keeps publishing (``--churn``, default 5 readings/s: a state change
per ingester flush window, as in a live city), so the API's answers are rebuilt after every
change rather than served from one build (cloud/api/now_cache.py); ``--churn 0`` measures a
still city.

    .venv/bin/python -m bench.api_now                    # both cities + SSE, ~9 minutes
    .venv/bin/python -m bench.api_now --cities demo --no-sse --duration 5

Printed, never asserted: per endpoint req/s, p50, p99 (wrk --latency), failed requests and the
ratio of req/s to the trivial endpoint's; the SSE figures of bench/api_sse.py. Goals (issue
10): now-endpoints >= 50 % of the trivial endpoint's req/s, p99 <= 50 ms at 50 connections,
for the demo city and a province of 8 000 sensors; 1 000 SSE clients held, events within 1 s.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import yaml
from fastapi import FastAPI
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from bench import api_sse
from bench.ingest_load import synthetic_province
from city import DEMO_CITY, Registry, Sensor, SiteKind, load_registry
from cloud.ingest import Ingester, IngestSettings
from contract import MAX_READINGS_PER_BATCH, Batch, Channel, Reading, SensorKind, encode, topics
from pantau.services import InfluxDB, Mosquitto, free_port

trivial_app = FastAPI()


@trivial_app.get("/trivial")
def trivial() -> dict[str, str]:
    """The baseline: FastAPI and uvicorn, no work."""
    return {"status": "ok"}


def values(sensor: Sensor) -> dict[str, int]:
    """Valid, fixed values for ``sensor`` (the numbers do not change what a request costs)."""
    if sensor.kind is SensorKind.BED:
        beds = sensor.beds or 10
        occupied = beds * 3 // 4
        return {
            "capacity": beds,
            "occupied": occupied,
            "suspect": occupied // 4,
            "confirmed": occupied // 3,
            "waiting": 2,
        }
    if sensor.kind is SensorKind.CROWD:
        return {"entries": 5210, "exits": 4980, "occupancy": 230}
    return {"issued": 340, "served": 301, "counters_open": sensor.counters or 2}


def feed(broker: Mosquitto, city: Registry) -> None:
    """Publish one reading of every sensor, one batch per gateway (at QoS 1, acknowledged)."""
    ts = time.time_ns() // 1_000_000
    by_gw: dict[str, list[Sensor]] = {}
    for sensor in city:
        by_gw.setdefault(sensor.gateway, []).append(sensor)
    for gw, sensors in by_gw.items():
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=gw,  # the broker binds a device's account to its own id
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        client.username_pw_set(gw, broker.users[gw])
        client.connect(broker.host, broker.port)
        client.loop_start()
        for start in range(0, len(sensors), MAX_READINGS_PER_BATCH):
            chunk = sensors[start : start + MAX_READINGS_PER_BATCH]
            readings = [
                Reading(sensor=s.id, kind=s.kind, ts=ts, seq=1, values=values(s)) for s in chunk
            ]
            site = chunk[0].site
            topic = topics.build(site, gw, Channel.READINGS)
            batch = Batch(gw=gw, seq=start + 1, sent=ts, readings=readings)
            client.publish(topic, encode(batch), qos=1).wait_for_publish(30)
        client.disconnect()
        client.loop_stop()


@contextmanager
def process(cmd: list[str], env: dict[str, str], log: Path, url: str) -> Iterator[int]:
    """Run ``cmd`` until the block ends; yields its pid once ``url`` answers 200."""
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{cmd[2:4]} did not start:\n{log.read_text()}")
            try:
                if httpx.get(url, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        yield proc.pid
    finally:
        proc.terminate()
        proc.wait(30)


_RPS = re.compile(r"Requests/sec:\s+([\d.]+)")
_PCT = re.compile(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", re.MULTILINE)
_UNIT = {"us": 0.001, "ms": 1.0, "s": 1000.0}


@dataclass(frozen=True)
class Run:
    """One wrk run: req/s, p50 and p99 ms, failed requests (no answer within wrk's 10 s
    timeout, or not 2xx), and the server's CPU per request in microseconds."""

    rps: float
    p50: float
    p99: float
    failed: int
    cpu_us: float


def wrk(url: str, pid: int, args: argparse.Namespace) -> Run:
    """``url`` under wrk; ``pid`` is the server process, whose CPU time per request is the
    figure a busy shared machine distorts least (the run queue delays, it does not bill)."""
    cpu0 = api_sse.cpu_seconds(pid)
    out = subprocess.run(
        [
            "wrk",
            f"-t{args.threads}",
            f"-c{args.connections}",
            f"-d{args.duration:g}s",
            "--latency",
            "--timeout",
            "10s",
            url,
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    cpu = api_sse.cpu_seconds(pid) - cpu0
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    rps = float(_RPS.search(out)[1])  # type: ignore[index]
    requests = int(re.search(r"(\d+) requests in", out)[1])  # type: ignore[index]
    pct = {p: float(v) * _UNIT[u] for p, v, u in _PCT.findall(out)}
    timeouts = re.search(r"Socket errors:.*timeout (\d+)", out)
    failed = (int(timeouts[1]) if timeouts else 0) + (int(errors[1]) if errors else 0)
    return Run(
        rps=rps,
        p50=pct.get("50", 0.0),
        p99=pct.get("99", 0.0),
        failed=failed,
        cpu_us=cpu / max(1, requests) * 1e6,
    )


def endpoints(city: Registry) -> list[str]:
    """Every now-endpoint, with the filters a client would use (a kecamatan, a hospital)."""
    site = next(s.id for s in city.sites.values() if s.kind is SiteKind.HOSPITAL)
    kec = city.city.kecamatan[0].code
    return [
        "/v1/beds/summary",
        "/v1/beds/summary?level=kecamatan&group=icu",
        f"/v1/beds?kecamatan={kec}",
        f"/v1/beds/{site}",
        "/v1/beds/free",
        "/v1/hospitals",
        "/v1/siranap",
        "/v1/freshness",
        "/v1/gateways",
        "/v1/crowds",
        "/v1/queues",
        "/v1/conditions",
    ]


@dataclass
class ServedCity:
    city: Registry
    broker: Mosquitto
    api: str
    api_port: int
    api_pid: int


@contextmanager
def served(name: str, tmp: Path) -> Iterator[ServedCity]:
    """``name`` (``demo`` or ``province``) fed through a real broker, ingester and InfluxDB,
    and served by ``pantau api run``, until the block ends."""
    tmp.mkdir()
    city_file = DEMO_CITY
    if name == "province":
        city_file = tmp / "province.yaml"
        doc = synthetic_province(gateways=80, sensors_per_gateway=100)
        # Gateways, not direct devices: the broker lets a direct device publish single
        # readings only, and this bench feeds batches.
        for gateway in doc["gateways"]:
            gateway.pop("direct", None)
        city_file.write_text(yaml.safe_dump(doc, allow_unicode=True))
    city = load_registry(city_file)
    beds = sum(1 for s in city if s.kind is SensorKind.BED)
    broker = Mosquitto(workdir=tmp / "mosquitto", registry=city)
    for gw in city.gateways:
        broker.add_user(gw, f"{gw}-pw")
    with broker, InfluxDB(workdir=tmp / "influxdb") as db:
        settings = IngestSettings(
            mqtt_url=broker.url,
            influx_url=db.url,
            city_file=city_file,
            dead_letter_dir=tmp / "dead",
            mqtt_password=broker.users["pantau-ingest"],
        )
        ingester = Ingester(settings=settings, registry=city)
        thread = threading.Thread(target=ingester.run, daemon=True)
        thread.start()
        if not ingester.ready.wait(60):
            raise SystemExit("the ingester did not start")
        feed(broker, city)
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("PANTAU_")}
        env |= {
            "PANTAU_INFLUX_URL": db.url,
            "PANTAU_CITY_FILE": str(city_file),
            "PANTAU_MQTT_URL": broker.url,
            "PANTAU_MQTT_PASSWORD": broker.users["pantau-api"],
        }
        api = f"http://127.0.0.1:{port}"
        cmd = [sys.executable, "-m", "pantau.cli", "api", "run", "--port", str(port)]
        with process(
            [*cmd, "--log-level", "warning"], env, tmp / "api.log", f"{api}/healthz"
        ) as pid:
            deadline = time.monotonic() + 120
            while True:
                kota = httpx.get(f"{api}/v1/beds/summary", timeout=30).json()["items"]
                if kota and kota[0]["sensors"] == beds:
                    break
                if time.monotonic() > deadline:
                    raise SystemExit(f"the API counts {kota} bed sensors, not {beds}")
                time.sleep(0.5)
            print(
                f"\n{city.city.name}: {len(city.sensors):,} sensors ({beds:,} bed), "
                f"{len(city.sites)} sites; load average {os.getloadavg()[0]:.1f}"
            )
            yield ServedCity(city=city, broker=broker, api=api, api_port=port, api_pid=pid)
        ingester.stop()
        thread.join(30)


@contextmanager
def churning(served_city: ServedCity, rate: float) -> Iterator[None]:
    """One gateway publishes a bed reading ``rate`` times a second
    (its waiting count cycling) until the block ends, so the API's state keeps changing while
    it is measured."""
    if rate <= 0:
        yield
        return
    city = served_city.city
    sensor = next(s for s in city if s.kind is SensorKind.BED)
    topic = topics.build(sensor.site, sensor.gateway, Channel.READINGS)
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=sensor.gateway,
        protocol=MQTTProtocolVersion.MQTTv5,
    )
    client.username_pw_set(sensor.gateway, served_city.broker.users[sensor.gateway])
    client.connect(served_city.broker.host, served_city.broker.port)
    client.loop_start()
    stop = threading.Event()

    def run() -> None:
        seq = 1_000
        while not stop.wait(1 / rate):
            seq += 1
            vals = values(sensor) | {"waiting": seq % 3}
            ts = time.time_ns() // 1_000_000
            reading = Reading(sensor=sensor.id, kind=sensor.kind, ts=ts, seq=seq, values=vals)
            batch = Batch(gw=sensor.gateway, seq=seq, sent=ts, readings=[reading])
            client.publish(topic, encode(batch), qos=1)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(10)
        client.loop_stop()
        client.disconnect()


HEADER = (
    f"{'endpoint':46} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7} {'cpu us':>7} fail | "
    f"{'trivial':>7} {'p99 ms':>7} {'cpu us':>7} | {'req/s':>6} {'cpu':>6}"
)


def measure(
    name: str, url: str, api_pid: int, trivial: tuple[str, int], args: argparse.Namespace
) -> None:
    """The trivial endpoint, then ``url``, back to back under wrk, printed as one row: on a
    shared machine the load changes from minute to minute, so each endpoint is compared with
    the trivial endpoint measured just before it. The last two columns: the endpoint's req/s
    as a share of the trivial one's, and the trivial endpoint's CPU per request as a share of
    the endpoint's (what the req/s ratio would be on an idle core)."""
    base = wrk(trivial[0], trivial[1], args)
    run = wrk(url, api_pid, args)
    print(
        f"{name:46} {run.rps:7.0f} {run.p50:7.1f} {run.p99:7.1f} {run.cpu_us:7.0f} "
        f"{run.failed:4} | {base.rps:7.0f} {base.p99:7.1f} {base.cpu_us:7.0f} | "
        f"{run.rps / base.rps:6.0%} {base.cpu_us / run.cpu_us:6.0%}",
        flush=True,
    )


def sse(served_city: ServedCity, args: argparse.Namespace) -> None:
    """bench/api_sse.py's fan-out on this API process."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, args.clients * 2 + 256)), hard))
    print(
        f"\nSSE fan-out: {args.clients} clients, {args.rate:g} batches/s "
        f"for {args.sse_duration:g} s"
    )
    sse_args = argparse.Namespace(clients=args.clients, rate=args.rate, duration=args.sse_duration)
    asyncio.run(
        api_sse.bench(sse_args, served_city.api_port, served_city.broker, served_city.api_pid)
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cities", default="demo,province", help="demo, province or both")
    ap.add_argument("--duration", type=float, default=8.0, help="seconds of wrk per endpoint")
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--threads", type=int, default=2, help="wrk threads")
    ap.add_argument("--churn", type=float, default=5.0, help="readings/s published during wrk")
    ap.add_argument("--no-sse", action="store_true", help="skip the SSE fan-out")
    ap.add_argument("--clients", type=int, default=1000, help="SSE clients")
    ap.add_argument("--rate", type=float, default=20.0, help="SSE: batches/s published")
    ap.add_argument("--sse-duration", type=float, default=10.0, help="SSE: seconds of publishing")
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (scripts/bootstrap.sh installs it)")
    print(
        f"pantau read API benchmark, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
        f"wrk -t{args.threads} -c{args.connections} -d{args.duration:g}s --latency; "
        f"churn {args.churn:g} readings/s; load average {os.getloadavg()[0]:.1f}"
    )
    with tempfile.TemporaryDirectory(prefix="pantau-bench-api-") as tmp_dir, ExitStack() as stack:
        tmp = Path(tmp_dir)
        port = free_port()
        trivial_url = f"http://127.0.0.1:{port}/trivial"
        trivial_cmd = [sys.executable, "-m", "uvicorn", "bench.api_now:trivial_app"]
        trivial_cmd += ["--port", str(port), "--log-level", "warning"]
        trivial_pid = stack.enter_context(
            process(trivial_cmd, dict(os.environ), tmp / "trivial.log", trivial_url)
        )
        for name in args.cities.split(","):
            with served(name, tmp / name) as served_city:
                print(HEADER)
                with churning(served_city, args.churn):
                    for path in endpoints(served_city.city):
                        url = f"{served_city.api}{path}"
                        measure(path, url, served_city.api_pid, (trivial_url, trivial_pid), args)
                if name == "demo" and not args.no_sse:
                    sse(served_city, args)


if __name__ == "__main__":
    main()

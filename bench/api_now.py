"""Read API benchmark: requests/s and latency of the now-endpoints next to a trivial FastAPI
endpoint, in the same run, with ``wrk`` (50 connections), each served by its own uvicorn
process on this machine.

The data goes the real way: a real Mosquitto and InfluxDB on free ports, the ingester (in this
process, in a thread) fed one batch per gateway with every sensor of the city, then
``pantau api run`` (a separate process, its live stream subscribed) once the API counts every
bed sensor. The trivial endpoint (``trivial_app`` below: one GET returning a constant small
JSON object) runs under ``python -m uvicorn`` with the same log level, so the ratio shows what
the now-endpoints cost beyond FastAPI itself.

    .venv/bin/python -m bench.api_now                          # demo city, 10 s per endpoint
    .venv/bin/python -m bench.api_now --province --duration 20   # synthetic 8 000 sensors

Printed, never asserted: per endpoint req/s, p50, p99 (wrk --latency) and the ratio of req/s to
the trivial endpoint's. Goals (issue 10): now-endpoints >= 50 % of the trivial endpoint's
req/s, p99 <= 50 ms at 50 connections, for the demo city and a province of 8 000 sensors.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import yaml
from fastapi import FastAPI
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

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
            client_id=f"bench-{gw}",
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


def wrk(
    url: str, *, connections: int, duration: float, threads: int
) -> tuple[float, float, float, int]:
    """req/s, p50 ms, p99 ms of ``url`` under wrk, and the failed requests: no answer within
    wrk's 10 s timeout (not in wrk's latency figures) or not 2xx (a 503: InfluxDB too slow)."""
    out = subprocess.run(
        [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{duration:g}s",
            "--latency",
            "--timeout",
            "10s",
            url,
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    rps = float(_RPS.search(out)[1])  # type: ignore[index]
    pct = {p: float(v) * _UNIT[u] for p, v, u in _PCT.findall(out)}
    timeouts = re.search(r"Socket errors:.*timeout (\d+)", out)
    failed = (int(timeouts[1]) if timeouts else 0) + (int(errors[1]) if errors else 0)
    return rps, pct.get("50", 0.0), pct.get("99", 0.0), failed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--province", action="store_true", help="synthetic 80 x 100 = 8 000 sensors")
    ap.add_argument("--duration", type=float, default=10.0, help="seconds of wrk per endpoint")
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--threads", type=int, default=2, help="wrk threads")
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (scripts/bootstrap.sh installs it)")
    with tempfile.TemporaryDirectory(prefix="pantau-bench-api-") as tmp_dir:
        tmp = Path(tmp_dir)
        city_file = DEMO_CITY
        if args.province:
            city_file = tmp / "province.yaml"
            doc = synthetic_province(gateways=80, sensors_per_gateway=100)
            city_file.write_text(yaml.safe_dump(doc, allow_unicode=True))
        city = load_registry(city_file)
        beds = sum(1 for s in city if s.kind is SensorKind.BED)
        site = next(s.id for s in city.sites.values() if s.kind is SiteKind.HOSPITAL)
        kec = city.city.kecamatan[0].code
        broker = Mosquitto(workdir=tmp / "mosquitto")
        for gw in city.gateways:
            broker.users[gw] = f"{gw}-pw"
        with broker, InfluxDB(workdir=tmp / "influxdb") as db:
            settings = IngestSettings(
                mqtt_url=broker.url,
                influx_url=db.url,
                city_file=city_file,
                dead_letter_dir=tmp / "dead",
                mqtt_client_id="bench-ingest",
            )
            ingester = Ingester(settings=settings, registry=city)
            thread = threading.Thread(target=ingester.run, daemon=True)
            thread.start()
            if not ingester.ready.wait(60):
                raise SystemExit("the ingester did not start")
            feed(broker, city)
            api_port, trivial_port = free_port(), free_port()
            env = {k: v for k, v in os.environ.items() if not k.startswith("PANTAU_")}
            env |= {
                "PANTAU_INFLUX_URL": db.url,
                "PANTAU_CITY_FILE": str(city_file),
                "PANTAU_MQTT_URL": broker.url,
                "PANTAU_MQTT_PASSWORD": broker.users["pantau-api"],
            }
            api = f"http://127.0.0.1:{api_port}"
            api_cmd = [sys.executable, "-m", "pantau.cli", "api", "run", "--port", str(api_port)]
            trivial_cmd = [sys.executable, "-m", "uvicorn", "bench.api_now:trivial_app"]
            trivial_cmd += ["--port", str(trivial_port), "--log-level", "warning"]
            with (
                process(
                    [*api_cmd, "--log-level", "warning"], env, tmp / "api.log", f"{api}/healthz"
                ),
                process(
                    trivial_cmd,
                    env,
                    tmp / "trivial.log",
                    f"http://127.0.0.1:{trivial_port}/trivial",
                ),
            ):
                deadline = time.monotonic() + 120
                while True:
                    kota = httpx.get(f"{api}/v1/beds/summary", timeout=30).json()["items"]
                    if kota and kota[0]["sensors"] == beds:
                        break
                    if time.monotonic() > deadline:
                        raise SystemExit(f"the API counts {kota} bed sensors, not {beds}")
                    time.sleep(0.5)
                print(
                    f"{city.city.name}: {len(city.sensors)} sensors ({beds} bed), "
                    f"{len(city.sites)} sites; wrk -t{args.threads} -c{args.connections} "
                    f"-d{args.duration:g}s --latency; load average before: "
                    f"{os.getloadavg()[0]:.1f}"
                )
                endpoints = [
                    ("trivial FastAPI endpoint", f"http://127.0.0.1:{trivial_port}/trivial"),
                    ("/v1/beds/summary", f"{api}/v1/beds/summary"),
                    (
                        "/v1/beds/summary?level=kecamatan&group=icu",
                        f"{api}/v1/beds/summary?level=kecamatan&group=icu",
                    ),
                    (f"/v1/beds?kecamatan={kec}", f"{api}/v1/beds?kecamatan={kec}"),
                    (f"/v1/beds/{site}", f"{api}/v1/beds/{site}"),
                    ("/v1/conditions", f"{api}/v1/conditions"),
                ]
                base = 0.0
                print(
                    f"{'endpoint':46} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'ratio':>6} failed"
                )
                for name, url in endpoints:
                    rps, p50, p99, lost = wrk(
                        url,
                        connections=args.connections,
                        duration=args.duration,
                        threads=args.threads,
                    )
                    base = base or rps
                    print(f"{name:46} {rps:8.0f} {p50:8.1f} {p99:8.1f} {rps / base:6.0%} {lost:6}")
            ingester.stop()
            thread.join(30)


if __name__ == "__main__":
    main()

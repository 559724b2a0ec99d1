"""What a now-endpoint costs the API's CPU, in process, without the network or wrk: per
endpoint, the CPU time of one request whose answer is built (what follows every state change)
and of one served from the answer cache, and the cost of the snapshot every change rebuilds.

CPU time of this process (``time.process_time``), so a machine shared with other work changes
these figures much less than req/s. The app is the real one (``create_app``), called as an ASGI
app on one event loop; its state is every sensor of the city with a reading, merged as an
ingester's PSD1 deltas; InfluxDB is real and empty (the start-up read finds nothing).

    .venv/bin/python -m bench.api_build                # the synthetic province, 8 000 sensors
    .venv/bin/python -m bench.api_build --city demo

Printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import tempfile
import time
from pathlib import Path

import numpy as np
import numpy.typing as npt
from fastapi import FastAPI
from fastapi.testclient import TestClient

from bench.api_now import endpoints, trivial_app, values
from bench.ingest_load import synthetic_province
from city import DEMO_CITY, Registry, load_registry
from cloud.api import ApiSettings, create_app
from cloud.api.state import LiveState, Snapshot
from cloud.ingest.aggregate import SensorState
from cloud.ingest.cluster import deltas_of
from cloud.ingest.topology import MAX_FIELDS
from contract import KIND_FIELDS
from contract.cluster import encode_state_delta
from pantau.services import InfluxDB


def fill(live: LiveState, city: Registry) -> None:
    """Every sensor's reading (bench.api_now's values), merged as an ingester's deltas."""
    n = live.index.n_sensors
    state = SensorState(n_sensors=n)
    rows = np.zeros((n, MAX_FIELDS), dtype=np.int64)
    for pos, sensor_id in enumerate(live.index.sensor_ids):
        sensor = city.sensors[sensor_id]
        vals = values(sensor)
        rows[pos, : len(KIND_FIELDS[sensor.kind])] = [vals[f] for f in KIND_FIELDS[sensor.kind]]
    now = time.time_ns() // 1_000_000
    state.update(
        np.arange(n, dtype=np.int32), np.full(n, now, np.int64), np.ones(n, np.int64), rows
    )
    sensors = np.arange(n, dtype=np.intp)
    live.merge_payloads([encode_state_delta(d) for d in deltas_of(state, sensors, live.digest)])


def _first_gateway(live: LiveState) -> npt.NDArray[np.intp]:
    return np.flatnonzero(live.index.sensor_gateway == 0)


def _one_gateway_delta_ms(live: LiveState, n: int = 20) -> float:
    """CPU ms of one state change as the API sees it under a live city: the first gateway's
    sensors report again (a delta), then the snapshot is rebuilt (``LiveState.snapshot``
    rebuilds every figure, the bed rollups with their kept cell layout)."""
    sensors = _first_gateway(live)
    total = 0.0
    for i in range(n):
        state = live.snapshot().state.copy()
        state.ts[sensors] += 1000 * (i + 1)
        state.values[sensors, 1] = np.maximum(state.values[sensors, 1] - 1, 0)
        payloads = [encode_state_delta(d) for d in deltas_of(state, sensors, live.digest)]
        t0 = time.process_time()
        live.merge_payloads(payloads)
        live.snapshot()
        total += time.process_time() - t0
    return total / n * 1e3


async def _get(app: FastAPI, path: str) -> int:
    bare, _, query = path.partition("?")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": bare,
        "raw_path": bare.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(b"host", b"bench")],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000),
    }
    status = 0

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, object]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = int(message["status"])  # type: ignore[call-overload]

    await app(scope, receive, send)  # type: ignore[arg-type]
    return status


async def cpu_us(app: FastAPI, path: str, n: int) -> float:
    """CPU microseconds per request of ``n`` requests for ``path`` (each must be 200)."""
    t0 = time.process_time()
    for _ in range(n):
        status = await _get(app, path)
        if status != 200:
            raise SystemExit(f"{path}: HTTP {status}")
    return (time.process_time() - t0) / n * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--city", choices=("demo", "province"), default="province")
    ap.add_argument("--requests", type=int, default=50, help="per endpoint and mode")
    args = ap.parse_args()
    logging.disable(logging.WARNING)  # the follower's broker is absent on purpose
    with tempfile.TemporaryDirectory(prefix="pantau-bench-build-") as tmp_dir:
        tmp = Path(tmp_dir)
        if args.city == "province":
            doc = synthetic_province(gateways=80, sensors_per_gateway=100)
            city = Registry.from_doc(doc)
        else:
            city = load_registry(DEMO_CITY)
        with InfluxDB(workdir=tmp / "influxdb") as db:
            apps = {
                ttl: create_app(
                    ApiSettings(
                        influx_url=db.url,
                        mqtt_url="mqtt://127.0.0.1:9",
                        now_cache_s=ttl,
                        # every change rebuilt: this measures what one rebuild costs
                        now_rebuild_s=0,
                    ),
                    registry=city,
                )
                for ttl in (0.0, 60.0)
            }
            with TestClient(apps[0.0]), TestClient(apps[60.0]):
                for app in apps.values():
                    fill(app.state.live, city)
                live: LiveState = apps[0.0].state.live
                t0 = time.process_time()
                for _ in range(5):
                    Snapshot.build(live.snapshot().state.copy(), live.index, version=0, seeded=True)
                snap_ms = (time.process_time() - t0) / 5 * 1e3
                delta_ms = _one_gateway_delta_ms(live)
                print(
                    f"{city.city.name}: {len(city.sensors):,} sensors; snapshot of every figure "
                    f"from scratch: {snap_ms:.1f} ms CPU; after one gateway's delta "
                    f"({len(_first_gateway(live))} sensors, merge and snapshot): "
                    f"{delta_ms:.1f} ms CPU"
                )
                print(f"{'endpoint':46} {'built us':>9} {'cached us':>9}")

                async def run() -> None:
                    trivial = await cpu_us(trivial_app, "/trivial", args.requests * 10)
                    print(f"{'trivial FastAPI endpoint':46} {trivial:9.0f} {trivial:9.0f}")
                    for path in endpoints(city):
                        await _get(apps[60.0], path)  # the one build the cache keeps
                        built = await cpu_us(apps[0.0], path, args.requests)
                        cached = await cpu_us(apps[60.0], path, args.requests * 10)
                        print(f"{path:46} {built:9.0f} {cached:9.0f}", flush=True)

                asyncio.run(run())


if __name__ == "__main__":
    main()

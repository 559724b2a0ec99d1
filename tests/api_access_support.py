"""A real ``pantau api run`` with a key file, over a real InfluxDB holding the schema's points,
for the access tests and schemathesis."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from city import Registry
from cloud.influx import InfluxHTTP
from pantau.services import InfluxDB, free_port
from tests.api_beds_support import NOW_MS, STATES, bed_lines, rollup_lines


@dataclass(frozen=True)
class RunningApi:
    url: str
    keys_db: Path
    log: Path


def feed(db: InfluxDB, city: Registry) -> None:
    """Per-ward beds and their rollups at every level, as the ingester writes them."""
    with InfluxHTTP(url=db.url) as influx:
        influx.ensure_database()
        influx.write(bed_lines(city, STATES))
        influx.write(rollup_lines(city, STATES, flush_ms=NOW_MS - 5_000))


@contextlib.contextmanager
def api_process(workdir: Path, **env: str) -> Iterator[str]:
    """``pantau api run`` as a process with only the ``PANTAU_*`` settings in ``env``, logging
    to ``workdir/api.log``; yields its URL once /healthz answers 200; always stopped."""
    port = free_port()
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PANTAU_")}
    clean |= {"PYTHONUNBUFFERED": "1", **env}
    log_path = workdir / "api.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pantau.cli", "api", "run", "--port", str(port)],
            env=clean,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while proc.poll() is None:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"the API did not start:\n{log_path.read_text()}")
            time.sleep(0.1)  # polling for readiness, not standing in for an event
        else:
            raise AssertionError(f"the API exited:\n{log_path.read_text()}")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def running_api(workdir: Path, db: InfluxDB, **env: str) -> Iterator[RunningApi]:
    """:func:`api_process` with ``PANTAU_API_KEYS_DB`` in ``workdir`` over ``db``; extra
    ``PANTAU_*`` settings from ``env``."""
    keys_db = workdir / "api-keys.sqlite3"
    env = {"PANTAU_INFLUX_URL": db.url, "PANTAU_API_KEYS_DB": str(keys_db), **env}
    with api_process(workdir, **env) as url:
        yield RunningApi(url=url, keys_db=keys_db, log=workdir / "api.log")

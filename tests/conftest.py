"""Fixtures that give real things: a Mosquitto broker, an InfluxDB server, pseudo-terminals and
the demo city. Servers start on free loopback ports with temp data dirs and always stop."""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from city import DEMO_CITY, Registry, load_registry
from cloud.ingest.decode import json_native
from pantau.services import InfluxDB, Mosquitto
from tests.tls_support import make_broker_certs


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    """A running broker with Pantau's policy; add device users with ``add_user``."""
    with Mosquitto(workdir=tmp_path / "mosquitto") as broker:
        yield broker


@pytest.fixture
def broker_certs(tmp_path: Path) -> Path:
    """A folder made like ``pantau broker certs``: a CA, the loopback broker's certificate and a
    client certificate for ``gw-test`` (tests/tls_support.py)."""
    return make_broker_certs(tmp_path / "certs", clients=["gw-test"])


@pytest.fixture
def mosquitto_tls(tmp_path: Path, broker_certs: Path) -> Iterator[Mosquitto]:
    """The ``mosquitto`` broker plus its TLS listeners: ``tls_url`` (password login) and
    ``cert_url`` (client certificate required), certificates from ``broker_certs``."""
    with Mosquitto(workdir=tmp_path / "mosquitto-tls", tls_dir=broker_certs) as broker:
        yield broker


@pytest.fixture
def influxdb(tmp_path: Path) -> Iterator[InfluxDB]:
    """A running, empty InfluxDB 1.x."""
    with InfluxDB(workdir=tmp_path / "influxdb") as server:
        yield server


@pytest.fixture
def influxdb_auth(tmp_path: Path) -> Iterator[InfluxDB]:
    """A running InfluxDB 1.x with authentication on and no account yet, as production
    starts it (``pantau ingest init-db`` makes the accounts, docs/adr/0020)."""
    with InfluxDB(workdir=tmp_path / "influxdb-auth", auth=True) as server:
        yield server


@pytest.fixture(scope="session")
def city() -> Registry:
    """The demo city registry (Kota Semarang)."""
    return load_registry(DEMO_CITY)


@pytest.fixture
def pty_pair() -> Iterator[tuple[int, str]]:
    """A real pseudo-terminal: (master fd for the 'sensor' side, slave path for the gateway)."""
    master, slave = os.openpty()
    path = os.ttyname(slave)
    try:
        yield master, path
    finally:
        for fd in (master, slave):
            with contextlib.suppress(OSError):
                os.close(fd)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """A non-daemon thread left running would keep the test process (and CI) alive forever:
    name it and fail the run instead."""
    leaked = [t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon]
    if leaked:
        names = ", ".join(f"{t.name} ({getattr(t, '_target', None)})" for t in leaked)
        sys.stderr.write(f"\nnon-daemon threads still running after the tests: {names}\n")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture
def no_pantau_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No PANTAU_* variable from the environment: settings read from it (the edge agent's,
    a CLI's) see only what the test sets."""
    for name in list(os.environ):
        if name.upper().startswith("PANTAU_"):
            monkeypatch.delenv(name)


@pytest.fixture(scope="module")
def msgspec_path() -> Iterator[None]:
    """The JSON decoder without its native C fast path (ADR 0034), for a module's tests of the
    msgspec struct path, the one an install without a C compiler uses."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(json_native, "ENABLED", False)
        yield

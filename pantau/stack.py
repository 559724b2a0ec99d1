"""A whole Pantau city on one machine: broker, store, simulator, gateways, ingester and API,
each a real process. ``pantau demo`` and the end-to-end tests both run this, so the demo is
what the tests prove."""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self

import httpx

from city import Registry, load_registry
from contract.errors import PantauError
from firmware_sim.scenario import load_scenario
from pantau.broker_identity import SERVICE_USERS
from pantau.device_access import device_access
from pantau.lifecycle import child_preexec, claim, remove_stale
from pantau.services import InfluxDB, Mosquitto, free_port

log = logging.getLogger(__name__)

#: Temp dirs of demos (``pantau demo`` without ``--workdir``) start with this.
DEMO_DIR_PREFIX = "pantau-demo-"


class StackError(PantauError):
    """A part of the local stack failed to start or died."""


@dataclass(kw_only=True)
class Child:
    """One child process with its log file."""

    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    def tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


@dataclass(kw_only=True)
class LocalStack:
    """Start with :meth:`start`, stop with :meth:`stop` (also on errors, via ``with``).

    ``influx_url``: use an existing InfluxDB instead of starting one. The broker is always
    started here, because the gateways need credentials that this stack creates."""

    city_file: Path
    scenario_file: Path
    workdir: Path | None = None
    api_port: int = 0
    influx_url: str | None = None
    keep_workdir: bool = False
    #: Gateways (or direct devices) whose simulated device is not started, so an outside
    #: gateway or firmware can take its place with the credentials in device-access.env.
    without: frozenset[str] = frozenset()
    python: str = sys.executable
    registry: Registry = field(init=False)
    children: list[Child] = field(default_factory=list, init=False)
    passwords: dict[str, str] = field(default_factory=dict, init=False)
    #: gateway id -> {port label: serial URL} of its simulated sensors
    serial_ports: dict[str, dict[str, str]] = field(default_factory=dict, init=False)
    mosquitto: Mosquitto | None = field(default=None, init=False)
    influxdb: InfluxDB | None = field(default=None, init=False)
    _own_workdir: bool = field(default=False, init=False)

    # --- paths -------------------------------------------------------------------------
    @property
    def dir(self) -> Path:
        if self.workdir is None:
            raise StackError("stack not started")
        return self.workdir

    @property
    def truth_path(self) -> Path:
        return self.dir / "ground-truth.json"

    @property
    def port_map_path(self) -> Path:
        return self.dir / "ports.json"

    @property
    def dead_letter_dir(self) -> Path:
        return self.dir / "dead-letter"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def mqtt_url(self) -> str:
        if self.mosquitto is None:
            raise StackError("stack not started")
        return self.mosquitto.url

    @property
    def influx(self) -> str:
        if self.influx_url:
            return self.influx_url
        if self.influxdb is None:
            raise StackError("stack not started")
        return self.influxdb.url

    # --- lifecycle ---------------------------------------------------------------------
    def start(self) -> Self:
        """Start every part, in dependency order, and wait until the API answers."""
        self.registry = load_registry(self.city_file)
        unknown = sorted(self.without - self.registry.gateways.keys())
        if unknown:
            raise StackError(
                f"--without {', '.join(unknown)}: no such gateway in {self.registry.city.name}"
                f" (gateways: {', '.join(sorted(self.registry.gateways))})"
            )
        if self.workdir is None:
            # Dirs of demos that died without cleaning up (SIGKILL): their owner is gone.
            remove_stale(Path(tempfile.gettempdir()), DEMO_DIR_PREFIX)
            self.workdir = Path(tempfile.mkdtemp(prefix=DEMO_DIR_PREFIX))
            claim(self.workdir)
            self._own_workdir = True
        (self.dir / "logs").mkdir(parents=True, exist_ok=True)
        # The demo's own copy: `pantau gateway add|revoke` on the running demo edit it, never
        # the file it was started with (the repository's demo city).
        city_copy = self.dir / "city.yaml"
        if self.city_file.resolve() != city_copy.resolve():
            shutil.copyfile(self.city_file, city_copy)
            self.city_file = city_copy
        for user in (*SERVICE_USERS, *self.registry.gateways):
            self.passwords[user] = secrets.token_urlsafe(12)
        # Every gateway and direct device gets its account bound to its id and its site.
        self.mosquitto = Mosquitto(
            workdir=self.dir / "mosquitto", users=dict(self.passwords), registry=self.registry
        )
        self.mosquitto.start()
        if not self.influx_url:
            self.influxdb = InfluxDB(workdir=self.dir / "influxdb")
            self.influxdb.start()
        self.api_port = self.api_port or free_port()
        self._start_ingester()
        self._start_api()
        self.serial_ports = self._start_simulator()
        self._start_gateways(self.serial_ports)
        self._write_device_access()
        return self

    @property
    def device_access_path(self) -> Path:
        """The one file with what a device maker needs (docs/protocol.md, "Trying it
        against the demo")."""
        return self.dir / "device-access.env"

    def _write_device_access(self) -> None:
        if self.mosquitto is None or self.mosquitto.proc is None:
            raise StackError("stack not started")
        text = device_access(
            path=self.device_access_path,
            registry=self.registry,
            passwords=self.passwords,
            mqtt_host=self.mosquitto.host,
            mqtt_port=self.mosquitto.port,
            api_url=self.api_url,
            serial_ports=self.serial_ports,
            without=self.without,
            admin_password=self.passwords["pantau-admin"],
            city_file=self.city_file,
        )
        self.device_access_path.write_text(text, encoding="utf-8")
        self.device_access_path.chmod(0o600)

    def _env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PANTAU_")}
        env.update({"PANTAU_MODE": "development", "PYTHONUNBUFFERED": "1", **extra})
        return env

    def _spawn(self, name: str, args: list[str], env: dict[str, str]) -> Child:
        log_path = self.dir / "logs" / f"{name}.log"
        with log_path.open("ab") as logf:
            proc = subprocess.Popen(
                [self.python, "-m", "pantau.cli", *args],
                stdout=logf,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # Ctrl-C in the terminal reaches us, not each child
                # ...but a demo killed outright takes its children with it (lifecycle.py).
                preexec_fn=child_preexec(),  # noqa: PLW1509 - only prctl
            )
        child = Child(name=name, proc=proc, log_path=log_path)
        self.children.append(child)
        return child

    def _start_ingester(self) -> None:
        ingest = self._spawn(
            "ingest",
            ["ingest", "run"],
            self._env(
                PANTAU_MQTT_URL=self.mqtt_url,
                PANTAU_MQTT_PASSWORD=self.passwords["pantau-ingest"],
                PANTAU_INFLUX_URL=self.influx,
                PANTAU_CITY_FILE=str(self.city_file),
                PANTAU_DEAD_LETTER_DIR=str(self.dead_letter_dir),
            ),
        )
        self._wait_for_subscription(ingest)

    def _wait_for_subscription(self, child: Child, timeout: float = 30.0) -> None:
        """Readings published before the ingester's first subscription would have no session
        to queue in, so wait until it logs that the broker granted it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            if "subscribed: readings are queued" in child.tail(400):
                return
            time.sleep(0.05)
        raise StackError(f"{child.name} did not subscribe in {timeout}s:\n{child.tail()}")

    def _start_api(self) -> None:
        self._spawn(
            "api",
            ["api", "run", "--host", "127.0.0.1", "--port", str(self.api_port)],
            self._env(
                PANTAU_INFLUX_URL=self.influx,
                PANTAU_CITY_FILE=str(self.city_file),
                # the API follows the ingester's state and the readings (live stream)
                PANTAU_MQTT_URL=self.mqtt_url,
                PANTAU_MQTT_PASSWORD=self.passwords["pantau-api"],
                # the simulator's queues live `speedup` times faster than its timestamps
                PANTAU_QUEUE_TIME_SCALE=str(load_scenario(self.scenario_file).speedup),
            ),
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                if httpx.get(f"{self.api_url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise StackError("API did not become healthy in 30 s")

    def _start_simulator(self) -> dict[str, dict[str, str]]:
        self._spawn(
            "fwsim",
            [
                "fwsim",
                "run",
                "--city",
                str(self.city_file),
                "--scenario",
                str(self.scenario_file),
                "--port-map",
                str(self.port_map_path),
                "--truth",
                str(self.truth_path),
                "--mqtt-url",
                self.mqtt_url,
                "--mqtt-passwords",
                str(self._direct_passwords_file()),
                *self._simulated_gateways(),
            ],
            self._env(),
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            self.check_alive()
            if self.port_map_path.exists():
                ports: dict[str, dict[str, str]] = json.loads(self.port_map_path.read_text())
                return ports
            time.sleep(0.05)
        raise StackError("simulator did not publish its port map in 30 s")

    def _simulated_gateways(self) -> list[str]:
        """fwsim's ``--gateway`` options: none (all) unless a direct device is left out. A left-out
        gateway's sensors stay simulated: its replacement reads their lines."""
        direct_out = {g for g in self.without if self.registry.gateways[g].direct}
        if not direct_out:
            return []
        keep = sorted(self.registry.gateways.keys() - direct_out)
        return [arg for gw in keep for arg in ("--gateway", gw)]

    def _direct_passwords_file(self) -> Path:
        path = self.dir / "direct-devices.json"
        direct = {g.id: self.passwords[g.id] for g in self.registry.gateways.values() if g.direct}
        path.write_text(json.dumps(direct))
        path.chmod(0o600)
        return path

    def _start_gateways(self, ports: dict[str, dict[str, str]]) -> None:
        for gw in self.registry.gateways.values():
            if gw.direct or gw.id in self.without:
                continue
            self._spawn(
                f"edge-{gw.id}",
                ["edge", "run"],
                self._env(
                    PANTAU_GATEWAY_ID=gw.id,
                    PANTAU_SITE_ID=gw.site,
                    PANTAU_MQTT_URL=self.mqtt_url,
                    PANTAU_MQTT_PASSWORD=self.passwords[gw.id],
                    PANTAU_SERIAL_PORTS=json.dumps(ports[gw.id]),
                    PANTAU_SPOOL_PATH=str(self.dir / "edge" / f"{gw.id}.spool"),
                ),
            )

    def child(self, name: str) -> Child:
        """The child process called ``name`` (e.g. ``ingest``, ``edge-gw-kariadi``)."""
        return next(c for c in self.children if c.name == name)

    def check_alive(self) -> None:
        """Raise naming the first child that died, with the end of its log."""
        for child in self.children:
            code = child.proc.poll()
            if code is not None:
                raise StackError(f"{child.name} exited with {code}:\n{child.tail()}")

    def simulator_finished(self) -> bool:
        """True once a finite scenario has run out and the simulator exited cleanly."""
        sim = self.child("fwsim")
        return sim.proc.poll() == 0

    def stop(self) -> None:
        """Stop children (gateways first, so they flush), then servers; remove temp data."""
        order = sorted(self.children, key=lambda c: (c.name != "fwsim", c.name.startswith("edge")))
        for child in order:
            if child.proc.poll() is None:
                os.killpg(child.proc.pid, signal.SIGTERM)
        for child in order:
            try:
                child.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(child.proc.pid, signal.SIGKILL)
                child.proc.wait()
        for server in (self.mosquitto, self.influxdb):
            if server is not None:
                server.stop()
        if self._own_workdir and not self.keep_workdir and self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

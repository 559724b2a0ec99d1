"""Start real Mosquitto and InfluxDB servers on free loopback ports with private data dirs.

Used by the test fixtures and by ``pantau demo``, so both run exactly the broker policy in
``mosquitto/`` that production mounts. Nothing here is a fake: these are the Debian binaries.
"""

from __future__ import annotations

import getpass
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self

import httpx

from contract.errors import PantauError
from pantau.lifecycle import child_preexec
from pantau.paths import MOSQUITTO_DIR

log = logging.getLogger(__name__)

#: Service accounts every deployment has (see mosquitto/acl).
SERVICE_USERS = ("pantau-ingest", "pantau-api", "pantau-ops")


class ServiceError(PantauError):
    """A local server did not start or died."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def require_binary(name: str) -> str:
    """The path of ``name``, or a clear error saying which package provides it."""
    path = shutil.which(name) or next(
        (p for d in ("/usr/sbin", "/usr/bin") if Path(p := f"{d}/{name}").exists()), None
    )
    if path is None:
        package = {"influxd": "influxdb"}.get(name, "mosquitto")
        raise ServiceError(f"{name} not found: install the Debian package {package!r}")
    return path


@dataclass(kw_only=True)
class _Managed:
    """A child server process with its own process group, log file and data dir."""

    workdir: Path
    host: str = "127.0.0.1"
    port: int = 0
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{type(self).__name__.lower()}.log"

    def _spawn(self, argv: list[str]) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as logf:
            # Own session (a Ctrl-C is for the parent, which stops us in order), but we die
            # with the parent even when it cannot stop us (pantau/lifecycle.py).
            self.proc = subprocess.Popen(
                argv,
                stdout=logf,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=child_preexec(),  # noqa: PLW1509 - only prctl, see lifecycle.py
            )

    def _wait_until(self, ready: Callable[[], bool], what: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise ServiceError(f"{what} exited with {self.proc.returncode}: {self.tail_log()}")
            if ready():
                return
            time.sleep(0.05)
        raise ServiceError(f"{what} not ready after {timeout}s: {self.tail_log()}")

    def tail_log(self, lines: int = 20) -> str:
        """The end of the server's log, for error messages."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def _port_open(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=0.2):
                return True
        except OSError:
            return False

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL, as a power cut would."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL if it does not go."""
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def restart(self, *, down_s: float = 0.0) -> None:
        """Stop (SIGTERM, so a broker saves its persistence file), stay down ``down_s``
        seconds, and start again on the same port with the same data dir."""
        self.stop()
        time.sleep(down_s)
        self.start()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError


@dataclass(kw_only=True)
class Mosquitto(_Managed):
    """A Mosquitto broker with Pantau's policy (conf.d + acl) and a generated password file.

    ``users`` maps username -> password; every service account gets one by default."""

    users: dict[str, str] = field(default_factory=dict)
    config_dir: Path = MOSQUITTO_DIR

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def add_user(self, username: str, password: str) -> None:
        """Add or change a user; a running broker re-reads the file on SIGHUP."""
        self.users[username] = password
        passwd = self.workdir / "passwd"
        self.workdir.mkdir(parents=True, exist_ok=True)
        args = [require_binary("mosquitto_passwd"), "-b", str(passwd), username, password]
        if not passwd.exists():
            args.insert(1, "-c")
        subprocess.run(args, check=True, capture_output=True)
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGHUP)

    def write_config(self) -> Path:
        """The entry config: listener and paths here, policy from the shared files."""
        (self.workdir / "data").mkdir(parents=True, exist_ok=True)
        for name in SERVICE_USERS:
            self.users.setdefault(name, f"{name}-secret")
        for name, password in list(self.users.items()):
            self.add_user(name, password)
        conf = self.workdir / "mosquitto.conf"
        conf.write_text(
            f"listener {self.port} {self.host}\n"
            # Stay the invoking user: as root, mosquitto would switch to 'mosquitto', which
            # cannot write our temp dir.
            f"user {getpass.getuser()}\n"
            "persistence true\n"
            f"persistence_location {self.workdir / 'data'}/\n"
            f"password_file {self.workdir / 'passwd'}\n"
            f"acl_file {self.config_dir / 'acl'}\n"
            f"log_dest file {self.log_path}\n"
            f"include_dir {self.config_dir / 'conf.d'}\n"
        )
        return conf

    def start(self) -> None:
        """Start the broker and wait until it accepts connections."""
        if not self.port:
            self.port = free_port(self.host)
        conf = self.write_config()
        self.log_path.unlink(missing_ok=True)
        self._spawn([require_binary("mosquitto"), "-c", str(conf)])
        self._wait_until(self._port_open, "mosquitto", 15)
        log.info("mosquitto on %s (data %s)", self.url, self.workdir)


@dataclass(kw_only=True)
class InfluxDB(_Managed):
    """An InfluxDB 1.x server speaking /write and /query (InfluxQL)."""

    rpc_port: int = 0

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _ping(self) -> bool:
        try:
            return httpx.get(f"{self.url}/ping", timeout=0.5).status_code == 204
        except httpx.HTTPError:
            return False

    def start(self) -> None:
        """Start influxd and wait for /ping."""
        if not self.port:
            self.port = free_port(self.host)
        if not self.rpc_port:
            self.rpc_port = free_port(self.host)
        d = self.workdir
        d.mkdir(parents=True, exist_ok=True)
        conf = d / "influxdb.conf"
        conf.write_text(
            "reporting-disabled = true\n"
            f'bind-address = "{self.host}:{self.rpc_port}"\n'
            f'[meta]\n  dir = "{d / "meta"}"\n'
            f'[data]\n  dir = "{d / "data"}"\n  wal-dir = "{d / "wal"}"\n'
            "  query-log-enabled = false\n"
            f'[http]\n  enabled = true\n  bind-address = "{self.host}:{self.port}"\n'
            "  log-enabled = false\n"
            "[monitor]\n  store-enabled = false\n"
            "[continuous_queries]\n  log-enabled = false\n"
        )
        self._spawn([require_binary("influxd"), "run", "-config", str(conf)])
        self._wait_until(self._ping, "influxd", 60)
        log.info("influxdb on %s (data %s)", self.url, d)

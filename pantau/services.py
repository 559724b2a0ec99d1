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
from typing import Any, Self

import httpx

from city import DEMO_CITY, Registry, load_registry
from contract.errors import PantauError
from pantau.broker_identity import (
    SERVICE_ACCOUNTS,
    SERVICE_USERS,
    Account,
    DeviceKind,
    ServiceRole,
    device_account,
    device_role,
    identity_document,
    write_document,
)
from pantau.dynsec import DynsecControl
from pantau.lifecycle import child_preexec
from pantau.paths import MOSQUITTO_DIR

log = logging.getLogger(__name__)

#: Where Debian and the eclipse-mosquitto image install the dynamic security plugin.
DYNSEC_PLUGINS = (
    "/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so",
    "/usr/lib/aarch64-linux-gnu/mosquitto_dynamic_security.so",
    "/usr/lib/mosquitto_dynamic_security.so",
)


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


def dynsec_plugin() -> str:
    """The path of Mosquitto's dynamic security plugin, or a clear error."""
    found = next((p for p in DYNSEC_PLUGINS if Path(p).exists()), None)
    if found is None:
        raise ServiceError("mosquitto_dynamic_security.so not found: install Debian's mosquitto")
    return found


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

    def _port_open(self, port: int | None = None) -> bool:
        try:
            with socket.create_connection((self.host, port or self.port), timeout=0.2):
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
    """A Mosquitto broker with Pantau's policy (conf.d) and identities (dynamic security).

    ``users`` maps username -> password. Service accounts (``pantau-ingest``, ...) get their
    role and bound client id, every other name is a device whose site and kind come from
    ``registry`` (the demo city unless given) or from :meth:`add_user`'s ``site``. Every
    service account gets the password ``<name>-secret`` unless ``users`` says otherwise."""

    users: dict[str, str] = field(default_factory=dict)
    registry: Registry | None = None
    config_dir: Path = MOSQUITTO_DIR
    #: A folder made by ``pantau broker certs`` (ca.crt, server.crt, server.key): the broker
    #: also listens with TLS on ``tls_port`` (password login, like 1883) and on ``cert_port``
    #: (a client certificate required, its CN is the username). None: plain MQTT only.
    tls_dir: Path | None = None
    tls_port: int = 0
    cert_port: int = 0
    _accounts: dict[str, tuple[Account, str, list[dict[str, Any]]]] = field(
        default_factory=dict, init=False
    )

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    @property
    def tls_url(self) -> str:
        """The TLS listener's URL (needs ``tls_dir``)."""
        return f"mqtts://{self.host}:{self.tls_port}"

    @property
    def cert_url(self) -> str:
        """The client-certificate listener's URL (needs ``tls_dir``)."""
        return f"mqtts://{self.host}:{self.cert_port}"

    def tls_listeners(self) -> str:
        """The TLS listeners as mosquitto/mosquitto.conf has them, on this broker's ports."""
        if self.tls_dir is None:
            return ""
        d = self.tls_dir
        files = f"cafile {d / 'ca.crt'}\ncertfile {d / 'server.crt'}\nkeyfile {d / 'server.key'}\n"
        return (
            f"listener {self.tls_port} {self.host}\n{files}"
            f"listener {self.cert_port} {self.host}\n{files}"
            "require_certificate true\nuse_identity_as_username true\n"
        )

    @property
    def identity_file(self) -> Path:
        """The dynamic-security state; the broker rewrites it on every change."""
        return self.workdir / "dynamic-security.json"

    def add_user(
        self,
        username: str,
        password: str,
        *,
        site: str | None = None,
        kind: DeviceKind | None = None,
        role: ServiceRole | None = None,
    ) -> None:
        """Add an account, or give a known one a new password. ``role``: a service account
        named ``username`` (bound to client id ``username``) with that service's rights;
        otherwise a device bound to its own id and site. On a running broker this goes
        through ``$CONTROL``, with no restart."""
        account, roles = self._account(username, site=site, kind=kind, role=role)
        known = self._accounts.get(username)
        if known == (account, password, roles):
            return  # already there, e.g. a test's helper called twice for one account
        if not self.running and self.identity_file.exists():
            raise ServiceError("the broker keeps its own identity file now: start it, then add")
        self.users[username] = password
        self._accounts[username] = (account, password, roles)
        if not self.running:
            return
        with self.control() as ctl:
            if known is not None and known[0] == account and known[2] == roles:
                ctl.set_password(username, password)  # the same account, a new password
            else:
                ctl.add_account(account, password, roles=roles)

    def _account(
        self, name: str, *, site: str | None, kind: DeviceKind | None, role: ServiceRole | None
    ) -> tuple[Account, list[dict[str, Any]]]:
        if role is not None:
            return Account(username=name, client_id=name, roles=(role,)), []
        if name in SERVICE_ACCOUNTS:
            return SERVICE_ACCOUNTS[name], []
        if self.registry is None:
            self.registry = load_registry(DEMO_CITY)
        registry = self.registry
        gateway = registry.gateways.get(name)
        site = site or (gateway.site if gateway else None)
        if site is None:
            raise ServiceError(f"{name} is not in the registry: give its site")
        kind = kind or ("direct" if gateway is not None and gateway.direct else "gateway")
        return device_account(name), [device_role(name, site, kind=kind)]

    def control(self) -> DynsecControl:
        """An admin session on the running broker's dynamic security plugin."""
        return DynsecControl(host=self.host, port=self.port, password=self.users["pantau-admin"])

    def write_config(self) -> Path:
        """The entry config: listener and paths here, policy from the shared files. The
        identity file is written on the first start only: later starts keep what the broker
        saved (accounts added or revoked while it ran)."""
        (self.workdir / "data").mkdir(parents=True, exist_ok=True)
        for name in SERVICE_USERS:
            self.users.setdefault(name, f"{name}-secret")
        for name, password in self.users.items():
            if name not in self._accounts:
                account, roles = self._account(name, site=None, kind=None, role=None)
                self._accounts[name] = (account, password, roles)
        if not self.identity_file.exists():
            accounts = [(a, pw) for a, pw, _ in self._accounts.values()]
            roles = [r for _, _, rs in self._accounts.values() for r in rs]
            write_document(self.identity_file, identity_document(accounts, roles))
        conf = self.workdir / "mosquitto.conf"
        conf.write_text(
            f"listener {self.port} {self.host}\n"
            f"{self.tls_listeners()}"
            # Stay the invoking user: as root, mosquitto would switch to 'mosquitto', which
            # cannot write our temp dir.
            f"user {getpass.getuser()}\n"
            "persistence true\n"
            f"persistence_location {self.workdir / 'data'}/\n"
            f"plugin {dynsec_plugin()}\n"
            f"plugin_opt_config_file {self.identity_file}\n"
            f"log_dest file {self.log_path}\n"
            f"include_dir {self.config_dir / 'conf.d'}\n"
        )
        return conf

    def _listening(self) -> bool:
        ports = [self.port, self.tls_port, self.cert_port] if self.tls_dir else [self.port]
        return all(self._port_open(port) for port in ports)

    def start(self) -> None:
        """Start the broker and wait until every listener accepts connections."""
        if not self.port:
            self.port = free_port(self.host)
        if self.tls_dir is not None:
            self.tls_port = self.tls_port or free_port(self.host)
            self.cert_port = self.cert_port or free_port(self.host)
        conf = self.write_config()
        self.log_path.unlink(missing_ok=True)
        self._spawn([require_binary("mosquitto"), "-c", str(conf)])
        self._wait_until(self._listening, "mosquitto", 15)
        log.info("mosquitto on %s (data %s)", self.url, self.workdir)


@dataclass(kw_only=True)
class InfluxDB(_Managed):
    """An InfluxDB 1.x server speaking /write and /query (InfluxQL). With ``auth`` it starts
    as production runs it: authentication on and no account yet (``pantau ingest init-db``
    creates them)."""

    rpc_port: int = 0
    auth: bool = False

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
            f"  auth-enabled = {'true' if self.auth else 'false'}\n"
            "[monitor]\n  store-enabled = false\n"
            "[continuous_queries]\n  log-enabled = false\n"
        )
        self._spawn([require_binary("influxd"), "run", "-config", str(conf)])
        self._wait_until(self._ping, "influxd", 60)
        log.info("influxdb on %s (data %s)", self.url, d)

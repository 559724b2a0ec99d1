"""The simulation: every selected sensor's firmware, stepping through a scenario and writing
frames to its gateway's serial lines.

:class:`firmware_sim.devices.Devices` is the pure part (models, sequence numbers, faults: no
I/O, no threads), so determinism is testable without a PTY. :class:`Simulation` adds the
lines, the wall clock and the ground truth.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

from city import Registry
from contract.clock import now_ms
from firmware_sim.devices import Devices
from firmware_sim.direct import MqttBus
from firmware_sim.pty_bus import PtyBus
from firmware_sim.scenario import FaultType, Scenario, ScenarioError
from firmware_sim.socket_bus import SocketBus
from firmware_sim.transport import Bus
from firmware_sim.truth import GroundTruth

log = logging.getLogger(__name__)

Transport = Literal["pty", "socket"]
PortMap = dict[str, dict[str, str]]


class Simulation:
    """Simulated sensors writing real serial frames. Build (no I/O), :meth:`start` (opens the
    lines, returns the port map), :meth:`run` (blocks until a finite scenario ends or
    :meth:`stop`), then read :meth:`ground_truth`. Also usable as a context manager, which
    closes the lines on exit.

    Frames are only written while a reader has the line open, so gateways may attach after
    ``start()`` without losing frames. ``start_delay_s`` (default: the scenario's) delays the
    first reading; with ``hold=True`` the first reading waits for :meth:`begin`.

    With ``transport="socket"`` each line listens on ``bind``; ``base_port`` 0 picks free
    ports, otherwise the lines get ``base_port``, ``base_port + 1``, ... in order of gateway id,
    then port label (gw-kariadi: bus0 on the base port, bus1 on the next).

    With ``link_dir`` (PTY transport) each line also gets a stable name,
    ``link_dir/<gateway>.<port>``, a symlink to its current PTY; the port map gives that name,
    which survives an ``unplug`` fault (the PTY is replaced, the link repointed)."""

    def __init__(
        self,
        *,
        registry: Registry,
        scenario: Scenario,
        transport: Transport = "pty",
        gateways: list[str] | None = None,
        start_delay_s: float | None = None,
        hold: bool = False,
        mqtt_url: str | None = None,
        mqtt_passwords: dict[str, str] | None = None,
        truth_path: Path | None = None,
        truth_every_s: float = 5.0,
        bind: str = "127.0.0.1",
        base_port: int = 0,
        link_dir: Path | None = None,
    ) -> None:
        if transport not in ("pty", "socket"):
            raise ValueError(f"transport must be 'pty' or 'socket', not {transport!r}")
        if not 0 <= base_port <= 65535:
            raise ValueError(f"base_port must be 0..65535, not {base_port}")
        if base_port and transport != "socket":
            raise ValueError("base_port needs transport='socket'")
        if link_dir is not None and transport != "pty":
            raise ValueError("link_dir needs transport='pty' (socket lines keep their port)")
        self.registry = registry
        self.scenario = scenario
        self.transport: Transport = transport
        self.gateways = gateways
        self.start_delay_s = scenario.start_delay_s if start_delay_s is None else start_delay_s
        self.mqtt_url = mqtt_url
        self.mqtt_passwords = dict(mqtt_passwords or {})
        self.truth_path = truth_path
        self.truth_every_s = truth_every_s
        self.bind = bind
        self.base_port = base_port
        self.link_dir = link_dir
        self._unplug_lost = 0
        self.truth = GroundTruth(scenario=scenario.name, seed=scenario.seed)
        self.devices: Devices | None = None
        self.buses: dict[tuple[str, str], Bus] = {}
        self.port_map: PortMap = {}
        self.steps_done = 0
        self._stop = threading.Event()
        self._begin = threading.Event()
        if not hold:
            self._begin.set()
        self._closed = False

    # --- lifecycle -----------------------------------------------------------------------
    def start(self) -> PortMap:
        """Build the devices and open one line per (gateway, port label); returns
        ``{gateway_id: {port_label: serial_url}}``. Lines are usable when this returns."""
        if self.devices is not None:
            return self.port_map
        devices = Devices(
            registry=self.registry,
            scenario=self.scenario,
            gateways=self.gateways,
            include_direct=self.mqtt_url is not None,
        )
        self.devices = devices
        lines: dict[tuple[str, str], bool] = {}  # (gateway, port label) -> direct
        for sim in devices.sensors:
            key = (sim.sensor.gateway, "mqtt" if sim.direct else sim.sensor.port)
            lines[key] = sim.direct
        # Sorted, so fixed ports are given out predictably (docker-compose relies on it).
        serial_lines = sorted(key for key, direct in lines.items() if not direct)
        if self.link_dir is not None:
            self.link_dir.mkdir(parents=True, exist_ok=True)
        if self.base_port and self.base_port + len(serial_lines) - 1 > 65535:
            raise ValueError(
                f"base_port {self.base_port} + {len(serial_lines)} lines runs past port 65535"
            )
        try:
            for key in sorted(lines):
                gw = self.registry.gateways[key[0]]
                direct = lines[key]
                bind_port = 0
                if self.base_port and not direct:
                    bind_port = self.base_port + serial_lines.index(key)
                bus = self._make_bus(gw.id, gw.site, key[1], direct, bind_port)
                url = bus.start()
                self.buses[key] = bus
                if not direct:
                    self.port_map.setdefault(gw.id, {})[key[1]] = url
        except BaseException:
            self.close()
            raise
        log.info(
            "scenario %s: %d sensors on %d lines",
            self.scenario.name,
            len(devices.sensors),
            len(self.buses),
        )
        return self.port_map

    def _make_bus(self, gateway: str, site: str, port: str, direct: bool, bind_port: int) -> Bus:
        if direct:
            if self.mqtt_url is None:
                raise AssertionError("direct sensors are only built with an MQTT URL")
            password = self.mqtt_passwords.get(gateway)
            if password is None:
                raise ScenarioError(
                    self.scenario.source, "", f"no MQTT password given for direct device {gateway}"
                )
            return MqttBus(
                gateway=gateway,
                site=site,
                mqtt_url=self.mqtt_url,
                password=password,
                on_written=self.truth.record,
            )
        if self.transport == "socket":
            return SocketBus(
                gateway=gateway,
                port=port,
                on_written=self.truth.record,
                host=self.bind,
                bind_port=bind_port,
            )
        link = None if self.link_dir is None else self.link_dir / f"{gateway}.{port}"
        return PtyBus(gateway=gateway, port=port, on_written=self.truth.record, link=link)

    def begin(self) -> None:
        """Let a ``hold=True`` simulation send its first reading."""
        self._begin.set()

    def stop(self) -> None:
        """Ask :meth:`run` to finish (safe from another thread or a signal handler)."""
        self._stop.set()
        self._begin.set()

    @property
    def stopped(self) -> bool:
        """True once :meth:`stop` was called."""
        return self._stop.is_set()

    def _wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds`` in short slices (signals stay responsive); True if stopped."""
        deadline = time.monotonic() + seconds
        while not self._stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self._stop.wait(min(left, 0.2))
        return True

    def run(self) -> None:
        """Emit readings until the scenario's steps are done (then wait, up to the
        scenario's ``drain_timeout_s``, for readers to take the last frames) or until
        :meth:`stop`. Closes the lines and writes the ground truth file, if one was given."""
        self.start()
        devices = self.devices
        if devices is None:
            raise AssertionError("start() builds the devices")
        total = self.scenario.total_steps
        try:
            while not self._begin.wait(0.2):
                pass
            if self._wait(self.start_delay_s):
                return
            t0 = time.monotonic()
            last_truth = t0
            step = 0
            while total is None or step < total:
                if self._wait(t0 + step * self.scenario.interval_s - time.monotonic()):
                    return
                for sim, emission in devices.emit(step, now_ms()):
                    if FaultType.SILENCE in emission.faults:
                        self.truth.count_fault(FaultType.SILENCE.value)
                        continue
                    key = (sim.sensor.gateway, "mqtt" if sim.direct else sim.sensor.port)
                    if FaultType.UNPLUG in emission.faults:
                        self.truth.count_fault(FaultType.UNPLUG.value)
                        self._unplug_lost += 1  # this reading went into the pulled cable
                        self.buses[key].unplug(emission.unplug_s)
                        continue
                    self.buses[key].send(emission)
                step += 1
                self.steps_done = step
                if self.truth_path is not None and time.monotonic() - last_truth >= (
                    self.truth_every_s
                ):
                    self.truth.write(self.truth_path)
                    last_truth = time.monotonic()
            self._drain()
            self.truth.finished = not self.stopped
        finally:
            self.close()
            if self.truth_path is not None:
                self.truth.write(self.truth_path)

    def _drain(self) -> None:
        deadline = time.monotonic() + self.scenario.drain_timeout_s
        waiting = list(self.buses.values())
        while waiting and not self.stopped:
            waiting = [b for b in waiting if not b.reader_caught_up()]
            if not waiting:
                return
            if time.monotonic() >= deadline:
                log.warning(
                    "no reader took the last frames of %s within %.0f s",
                    ", ".join(f"{b.gateway}/{b.port}" for b in waiting),
                    self.scenario.drain_timeout_s,
                )
                return
            self._wait(0.05)

    def close(self) -> None:
        """Close every line (idempotent); frames still queued are counted as unsent."""
        if self._closed:
            return
        self._closed = True
        unsent = 0
        unplugged = self._unplug_lost
        for bus in self.buses.values():
            unsent += bus.pending_frames()
            unplugged += bus.dropped_frames
            bus.close()
        self.truth.frames_unsent = unsent
        self.truth.frames_unplugged = unplugged

    # --- results -------------------------------------------------------------------------
    def ground_truth(self) -> dict[str, Any]:
        """What each sensor really sent: the last valid frame written per sensor (see the
        README for the document's fields)."""
        return self.truth.as_dict()

    def write_ground_truth(self, path: str | Path) -> None:
        """Write :meth:`ground_truth` to ``path`` atomically."""
        self.truth.write(path)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
        self.close()

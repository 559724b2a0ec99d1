"""The simulated devices: every selected sensor's firmware model, sequence numbers and fault
injection for one scenario. Pure logic (no I/O, no threads), so determinism is testable without
a PTY; ``firmware_sim.simulation`` adds the lines, the wall clock and the ground truth.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass

from city import Registry, Sensor, SiteKind
from contract import SensorKind
from firmware_sim.direct import single_reading_payload
from firmware_sim.faults import Emission, FaultInjector
from firmware_sim.models import BedWard, DeviceModel, Firmware, GateCounter, Kiosk
from firmware_sim.scenario import Scenario, ScenarioError
from firmware_sim.scripted import EVENT_TYPES, ScriptedDevice, ScriptError

log = logging.getLogger(__name__)


@dataclass(slots=True)
class SimSensor:
    """One simulated sensor and where its frames go."""

    sensor: Sensor
    firmware: Firmware
    faults: FaultInjector
    direct: bool


def _rng(seed: int, sensor: str, purpose: str) -> random.Random:
    # String seeds hash with SHA-512 inside random, so streams are stable across processes
    # (unlike hash()) and independent per sensor: adding a sensor changes no other stream.
    return random.Random(f"{seed}:{sensor}:{purpose}")


def build_model(sensor: Sensor, registry: Registry, *, seed: int, utc_offset_s: int) -> DeviceModel:
    """The device model for ``sensor``, seeded from ``seed`` and the sensor id."""
    rng = _rng(seed, sensor.id, "model")
    site = registry.sites[sensor.site]
    if sensor.kind is SensorKind.BED:
        return BedWard(
            beds=sensor.beds or 1, rng=rng, bed_type=sensor.bed_type, utc_offset_s=utc_offset_s
        )
    if sensor.kind is SensorKind.CROWD:
        gates = sum(1 for s in registry.sensors_of(site=site.id) if s.kind is SensorKind.CROWD)
        return GateCounter(
            gate_capacity=max(1, (site.capacity or 500) // max(1, gates)),
            rng=rng,
            market=site.kind is SiteKind.MARKET,
            utc_offset_s=utc_offset_s,
        )
    return Kiosk(
        counters=sensor.counters or 1,
        rng=rng,
        hospital=site.kind is SiteKind.HOSPITAL,
        utc_offset_s=utc_offset_s,
    )


class Devices:
    """The selected sensors' firmware for one scenario: pure logic, deterministic given the
    scenario's seed and the wall-clock stamps passed to :meth:`emit`."""

    def __init__(
        self,
        *,
        registry: Registry,
        scenario: Scenario,
        gateways: list[str] | None = None,
        include_direct: bool = False,
    ) -> None:
        self.registry = registry
        self.scenario = scenario
        self.sensors: list[SimSensor] = []
        src = scenario.source

        def fail(location: str, message: str) -> ScenarioError:
            return ScenarioError(src, location, message)

        if gateways is not None:
            for gw_id in gateways:
                if gw_id not in registry.gateways:
                    raise fail("", f"no gateway {gw_id!r} in {registry.source}")
        for label, ids in (
            ("sensors", scenario.sensors or []),
            ("clockless", scenario.clockless),
            ("script", list(scenario.script or {})),
            ("initial", list(scenario.initial)),
            *[(f"faults[{i}].sensors", f.sensors or []) for i, f in enumerate(scenario.faults)],
        ):
            for sid in ids:
                if sid not in registry.sensors:
                    raise fail(label, f"no sensor {sid!r} in {registry.source}")
        offset = registry.tz.utcoffset(scenario.sim_start.replace(tzinfo=None))
        utc_offset_s = int(offset.total_seconds()) if offset is not None else 0
        wanted = set(scenario.sensors) if scenario.sensors is not None else None
        if scenario.mode == "scripted":
            wanted = set(scenario.script or {})
        for sensor in registry:
            gw = registry.gateways[sensor.gateway]
            if gateways is not None and gw.id not in gateways:
                continue
            if wanted is not None and sensor.id not in wanted:
                continue
            if gw.direct and not include_direct:
                log.info("skipping %s: gateway %s is a direct MQTT device", sensor.id, gw.id)
                continue
            model: DeviceModel
            if scenario.mode == "scripted":
                model = self._scripted(sensor)
            else:
                model = build_model(sensor, registry, seed=scenario.seed, utc_offset_s=utc_offset_s)
            firmware = Firmware(
                sensor=sensor.id, model=model, clock=sensor.id not in scenario.clockless
            )
            # Direct devices speak JSON over MQTT: serial faults do not apply to them.
            rules = [] if gw.direct else list(scenario.faults)
            injector = FaultInjector(
                sensor=sensor.id, rules=rules, rng=_rng(scenario.seed, sensor.id, "faults")
            )
            self.sensors.append(SimSensor(sensor, firmware, injector, gw.direct))
        self._check_script()

    def _scripted(self, sensor: Sensor) -> ScriptedDevice:
        scenario = self.scenario
        event_type = EVENT_TYPES[sensor.kind]
        events = []
        for i, raw in enumerate((scenario.script or {})[sensor.id]):
            try:
                events.append(event_type.model_validate(raw or {}))
            except ValueError as exc:
                raise ScenarioError(
                    scenario.source, f"script.{sensor.id}[{i}]", f"{sensor.kind.value}: {exc}"
                ) from None
        initial = dict(scenario.initial.get(sensor.id, {}))
        if sensor.kind is SensorKind.BED:
            initial.setdefault("capacity", sensor.beds or 0)
        if sensor.kind is SensorKind.QUEUE:
            initial.setdefault("counters_open", sensor.counters or 0)
        try:
            return ScriptedDevice(kind=sensor.kind, events=events, initial=initial)
        except ScriptError as exc:
            raise ScenarioError(scenario.source, f"initial.{sensor.id}", str(exc)) from None

    def _check_script(self) -> None:
        """Dry-run every script on a copy so a broken one fails before anything is sent."""
        if self.scenario.mode != "scripted":
            return
        for sim in self.sensors:
            dry = self._scripted(sim.sensor)
            for i in range(len(dry.events)):
                try:
                    dry.step(0.0)
                except ScriptError as exc:
                    raise ScenarioError(
                        self.scenario.source, f"script.{sim.sensor.id}[{i}]", str(exc)
                    ) from None

    def emit(self, step: int, wall_ms: int) -> list[tuple[SimSensor, Emission]]:
        """Every selected sensor's reading number ``step``, stamped from ``wall_ms``."""
        sim_time = self.scenario.sim_time(step)
        out = []
        for sim in self.sensors:
            if self.scenario.mode == "scripted":
                events = (self.scenario.script or {}).get(sim.sensor.id, [])
                if step >= len(events):
                    continue  # a scripted sensor reports once per event
            ts = sim.faults.stamp(step, wall_ms)
            if sim.faults.resets(step):
                sim.firmware.next_seq = 0
            frame = sim.firmware.read(sim_time, ts)
            if sim.direct:
                emission = Emission(sim.sensor.id, single_reading_payload(frame), (frame,))
            else:
                emission = sim.faults.apply(step, frame)
            out.append((sim, emission))
        return out

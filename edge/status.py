"""The gateway's status: what every port, sensor, the spool and the uplink look like now.

Built by the publisher loop for the retained status message, the status file that
``pantau edge status`` reads and the Prometheus snapshot.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from contract.status import GatewayState, GatewayStatus
from edge.config import EdgeSettings
from edge.mqtt import LinkState
from edge.serial_reader import PortReader, SensorHealth
from edge.spool import Outbox

log = logging.getLogger(__name__)


def sensor_health(readers: Sequence[PortReader]) -> dict[str, SensorHealth]:
    """Per-sensor stream health over all ports (a sensor moved between ports: its latest)."""
    merged: dict[str, SensorHealth] = {}
    for reader in readers:
        for sensor, h in reader.sensor_health().items():
            seen = merged.get(sensor)
            if seen is None or h.last_seen_ms > seen.last_seen_ms:
                merged[sensor] = h
    return merged


def silent_sensors(
    settings: EdgeSettings, health: Mapping[str, SensorHealth], now_ms: int, started_ms: int
) -> list[str]:
    """Sensors whose last frame is older than ``silent_after_s`` and than
    ``silent_intervals`` of their own reporting interval; configured sensors never heard
    count once the agent has run ``silent_after_s``."""
    floor_ms = settings.silent_after_s * 1000
    silent = [
        sensor
        for sensor, h in health.items()
        if now_ms - h.last_seen_ms > max(floor_ms, settings.silent_intervals * h.interval_ms)
    ]
    if now_ms - started_ms > floor_ms:
        silent += [sensor for sensor in settings.sensors if sensor not in health]
    return sorted(silent)


@dataclass(frozen=True, slots=True, kw_only=True)
class StatusInputs:
    """What the agent knows that a status reports, besides the ports."""

    settings: EdgeSettings
    readers: Sequence[PortReader]
    spool: Outbox | None
    counters: Mapping[str, int]
    in_flight: int
    link: LinkState
    clock_offset_ms: int | None
    started_ms: int


def gateway_status(inputs: StatusInputs, state: GatewayState, now_ms: int) -> GatewayStatus:
    """The gateway's status: decode stats summed over ports, spool and session counters, and
    when each sensor was last heard."""
    totals: dict[str, int | float | str] = {}
    last_seen: dict[str, int] = {}
    ports_open = 0
    for reader in inputs.readers:
        for key, value in reader.stats().items():
            totals[key] = int(totals.get(key, 0)) + value
        for sensor, ts in reader.sensors_last_seen().items():
            last_seen[sensor] = max(ts, last_seen.get(sensor, 0))
        ports_open += reader.is_open
    totals["ports"] = len(inputs.readers)
    totals["ports_open"] = ports_open
    totals.update(inputs.counters)
    spool = inputs.spool
    if spool is not None:
        totals["spool_depth"] = spool.depth()
        age = spool.oldest_age_s()
        totals["spool_oldest_age_s"] = round(age, 3) if age is not None else 0.0
        totals.update(spool.stats())
    totals["in_flight"] = inputs.in_flight
    health = sensor_health(inputs.readers)
    silent = silent_sensors(inputs.settings, health, now_ms, inputs.started_ms)
    totals.update(inputs.link.stats(now_ms))
    jump_ms = inputs.settings.clock_jump_s * 1000
    skew = {s: h.skew_ms for s, h in health.items() if h.skew_ms is not None}
    totals["sensors"] = len(health)
    totals["sensors_silent"] = len(silent)
    totals["sensors_skewed"] = sum(1 for v in skew.values() if abs(v) > jump_ms)
    totals["seq_gaps"] = sum(h.gaps for h in health.values())
    totals["sensor_resets"] = sum(h.resets for h in health.values())
    totals["duplicates"] = sum(h.duplicates for h in health.values())
    totals["clock_jumps"] = sum(h.clock_jumps for h in health.values())
    return GatewayStatus(
        gw=inputs.settings.gateway_id,
        state=state,
        ts=now_ms,
        stats=totals,
        sensors_last_seen=last_seen,
        clock_offset_ms=inputs.clock_offset_ms,
        sensor_skew_ms=skew,
        sensors_silent=silent,
        sensor_seq_gaps={s: h.gaps for s, h in health.items() if h.gaps},
        sensor_resets={s: h.resets for s, h in health.items() if h.resets},
    )


def write_status_file(path: Path, payload: bytes) -> None:
    """Replace the status file atomically: ``pantau edge status`` never reads half a file."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(payload)
        tmp.replace(path)
    except OSError as exc:
        log.warning("cannot write status file %s: %s", path, exc)

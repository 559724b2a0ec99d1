"""Carrying sensor state across a registry change: pure numpy, no I/O.

State arrays are indexed by a sensor's position in the registry file (cloud/ingest/topology.py),
so a new registry renumbers them. :func:`remap_state` moves every sensor that is in both
registries, with the same kind, to its new row; a removed sensor (or one whose kind changed)
is dropped, so no "now" figure derived from the state counts it any more; a new one starts
unknown. History is not touched: what InfluxDB stored stays there.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from city import Registry
from cloud.ingest.aggregate import SensorState
from cloud.ingest.topology import CityIndex


def remap_state(state: SensorState, old: CityIndex, new: CityIndex) -> SensorState:
    """``state`` (rows of ``old``) as a new state with the rows of ``new``."""
    out = SensorState(n_sensors=new.n_sensors)
    pairs = [
        (i, new.sensor_pos[sid])
        for i, sid in enumerate(old.sensor_ids)
        if sid in new.sensor_pos and new.sensor_kind[new.sensor_pos[sid]] == old.sensor_kind[i]
    ]
    if pairs:
        src = np.array([p[0] for p in pairs], dtype=np.intp)
        dst = np.array([p[1] for p in pairs], dtype=np.intp)
        out.ts[dst], out.seq[dst], out.values[dst] = (
            state.ts[src],
            state.seq[src],
            state.values[src],
        )
        out.prev_ts[dst], out.prev_values[dst] = state.prev_ts[src], state.prev_values[src]
    return out


def take_rows(state: SensorState, source: SensorState, rows: npt.NDArray[np.intp]) -> None:
    """Overwrite ``rows`` of ``state`` (latest and previous readings) with ``source``'s."""
    state.ts[rows], state.seq[rows], state.values[rows] = (
        source.ts[rows],
        source.seq[rows],
        source.values[rows],
    )
    state.prev_ts[rows], state.prev_values[rows] = source.prev_ts[rows], source.prev_values[rows]


@dataclass(frozen=True, slots=True, kw_only=True)
class RegistryDiff:
    """What a registry change added and removed, by id."""

    added_gateways: frozenset[str]
    removed_gateways: frozenset[str]
    added_sensors: frozenset[str]
    removed_sensors: frozenset[str]
    added_sites: frozenset[str]
    removed_sites: frozenset[str]

    #: Gateways (new or not) that now own a sensor they did not before, and new gateways:
    #: their readings may have been refused as ``unknown_gateway`` or ``unknown_sensor``.
    gateways_gaining_sensors: frozenset[str]

    def __str__(self) -> str:
        parts = [
            f"{verb} {len(ids)} {what}"
            for verb, what, ids in (
                ("+", "sites", self.added_sites),
                ("-", "sites", self.removed_sites),
                ("+", "gateways", self.added_gateways),
                ("-", "gateways", self.removed_gateways),
                ("+", "sensors", self.added_sensors),
                ("-", "sensors", self.removed_sensors),
            )
            if ids
        ]
        return ", ".join(parts) or "no change of ids"


def diff(old: Registry, new: Registry) -> RegistryDiff:
    """Ids added and removed between ``old`` and ``new``; a sensor moved to another gateway
    counts as added to that gateway."""
    moved_or_new = {
        s.gateway
        for s in new.sensors.values()
        if s.id not in old.sensors or old.sensors[s.id].gateway != s.gateway
    }
    return RegistryDiff(
        added_gateways=frozenset(new.gateways.keys() - old.gateways.keys()),
        removed_gateways=frozenset(old.gateways.keys() - new.gateways.keys()),
        added_sensors=frozenset(new.sensors.keys() - old.sensors.keys()),
        removed_sensors=frozenset(old.sensors.keys() - new.sensors.keys()),
        added_sites=frozenset(new.sites.keys() - old.sites.keys()),
        removed_sites=frozenset(old.sites.keys() - new.sites.keys()),
        gateways_gaining_sensors=frozenset(
            moved_or_new | (new.gateways.keys() - old.gateways.keys())
        ),
    )

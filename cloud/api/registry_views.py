"""Lookups of the city registry that the now-routes need on every answer they build, made
once per registry (the registry does not change while an API runs on it; a reloaded one is a
new object and gets its own).

Why: a province has thousands of sensors, and "the sensors of this site" by a scan of all of
them, once per site per answer, made ``/v1/hospitals`` cost about a quarter of a CPU second
per answer for 8 000 sensors (docs/performance.md). Everything here is a pure function of the
registry, memoised on its identity; callers must not mutate what they get.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import numpy as np
import numpy.typing as npt

from city import Level, Registry, Sensor, Site
from contract.payload import SensorKind

Idx = npt.NDArray[np.intp]
_NO_SENSORS = np.zeros(0, np.intp)
#: Registries kept (the running one, and one being swapped in by a reload).
_KEEP = 4


@lru_cache(maxsize=_KEEP)
def sensors_by_site(registry: Registry) -> Mapping[str, tuple[Sensor, ...]]:
    """Each site's sensors, in file order."""
    out: dict[str, list[Sensor]] = {}
    for sensor in registry:
        out.setdefault(sensor.site, []).append(sensor)
    return {site: tuple(sensors) for site, sensors in out.items()}


@lru_cache(maxsize=_KEEP)
def sensors_by_gateway(registry: Registry) -> Mapping[str, tuple[Sensor, ...]]:
    """Each gateway's sensors, in file order."""
    out: dict[str, list[Sensor]] = {}
    for sensor in registry:
        out.setdefault(sensor.gateway, []).append(sensor)
    return {gw: tuple(sensors) for gw, sensors in out.items()}


@lru_cache(maxsize=_KEEP)
def _devices(registry: Registry) -> Mapping[str, tuple[tuple[Sensor, ...], Idx]]:
    pos = {s.id: i for i, s in enumerate(registry.doc.sensors)}
    return {
        gw: (sensors, np.array([pos[s.id] for s in sensors], dtype=np.intp))
        for gw, sensors in sensors_by_gateway(registry).items()
    }


def devices_of(registry: Registry, gateway: str) -> tuple[tuple[Sensor, ...], Idx]:
    """A gateway's sensors, in file order, and their indices in the registry's sensor list
    (``CityIndex`` order, which is file order)."""
    return _devices(registry).get(gateway, ((), _NO_SENSORS))


@lru_cache(maxsize=_KEEP * 4)
def sites_with(registry: Registry, kind: SensorKind) -> tuple[Site, ...]:
    """The sites that have a sensor of ``kind``, in registry order."""
    ids = dict.fromkeys(s.site for s in registry if s.kind is kind)
    return tuple(registry.sites[i] for i in ids)


@lru_cache(maxsize=_KEEP)
def bed_wards(registry: Registry) -> tuple[Mapping[str, Any], ...]:
    """One entry per bed sensor (a ward's beds of one type): its id, site, names, kelurahan,
    kecamatan, ward and bed type, in file order."""
    out = []
    for sensor in registry:
        if sensor.kind is not SensorKind.BED or sensor.bed_type is None:
            continue
        site = registry.sites[sensor.site]
        out.append(
            {
                "sensor": sensor.id,
                "site": site.id,
                "site_name": site.name,
                "site_kind": site.kind.value,
                "kelurahan": site.kelurahan,
                "kecamatan": registry.kecamatan_of_kelurahan[site.kelurahan].code,
                "ward": sensor.ward or "",
                "bed_type": sensor.bed_type,
            }
        )
    return tuple(out)


@lru_cache(maxsize=_KEEP)
def bed_types_by_site(registry: Registry) -> Mapping[str, frozenset[int]]:
    """The bed type codes each site has a bed sensor of."""
    out: dict[str, set[int]] = {}
    for meta in bed_wards(registry):
        out.setdefault(meta["site"], set()).add(meta["bed_type"])
    return {site: frozenset(types) for site, types in out.items()}


@lru_cache(maxsize=_KEEP * 64)
def regions_with_beds(
    registry: Registry, level: str, codes: tuple[int, ...] | None, site_kind: str | None
) -> Mapping[str, str]:
    """Code -> name of every region (or site, at level ``site``) that has a bed sensor of one
    of ``codes`` (None: any) at a site of ``site_kind`` (None: hospitals and isolation
    centres)."""
    out: dict[str, str] = {}
    for meta in bed_wards(registry):
        if codes is not None and meta["bed_type"] not in codes:
            continue
        if site_kind is not None and meta["site_kind"] != site_kind:
            continue
        if level == "site":
            out[meta["site"]] = meta["site_name"]
        elif (region := registry.region(meta["site"], Level(level))) is not None:
            out[region.code] = region.name
    return out

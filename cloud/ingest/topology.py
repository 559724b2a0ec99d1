"""The city registry as integer arrays, built once, so decoding and aggregation are numpy work.

Sensors, gateways and sites get dense indices in registry file order; every lookup the hot path
needs (a sensor's kind, gateway, site, bed type; a site's facility, crowd capacity and region at
each rollup level) is an array indexed by those numbers.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np
import numpy.typing as npt

from city import Level, Registry, SiteKind
from contract import KIND_CODES, KIND_FIELDS, SensorKind

I64 = npt.NDArray[np.int64]
I32 = npt.NDArray[np.int32]

#: Rollup levels, lowest first: the site itself, then every administrative level.
ROLLUP_LEVELS: tuple[str, ...] = ("site", *(level.value for level in Level))
#: Facility codes of a bed rollup; 0 means "all facilities".
FACILITIES: tuple[str, ...] = ("all", SiteKind.HOSPITAL.value, SiteKind.ISOLATION_CENTRE.value)
#: Widest value row of any kind; narrower kinds leave the trailing columns 0.
MAX_FIELDS = max(len(f) for f in KIND_FIELDS.values())
KIND_BY_CODE: dict[int, SensorKind] = {code: kind for kind, code in KIND_CODES.items()}
#: Bed type slot 0 is "all"; SIRANAP codes are below this.
BED_TYPE_SLOTS = 64


@dataclass(frozen=True, slots=True)
class RollupGroup:
    """One region (or site) a bed rollup can be reported for."""

    level: str
    code: str
    name: str


@dataclass(frozen=True, kw_only=True)
class CityIndex:
    """Dense integer view of a :class:`city.Registry`. Build with :meth:`from_registry`."""

    registry: Registry
    sensor_ids: tuple[str, ...]
    sensor_pos: dict[str, int]
    sensor_kind: npt.NDArray[np.int8]
    sensor_gateway: I32
    sensor_site: I32
    sensor_bed_type: I32
    gateway_ids: tuple[str, ...]
    gateway_pos: dict[str, int]
    gateway_site: I32
    site_ids: tuple[str, ...]
    site_pos: dict[str, int]
    #: 1 hospital, 2 isolation centre, 0 any other kind (index into FACILITIES)
    site_facility: npt.NDArray[np.int8]
    #: health-protocol capacity of crowd sites, 0 when the site has none
    site_capacity: I64
    #: (sites, levels) -> global rollup group id, -1 where the site has no region at that level
    site_group: I32
    groups: tuple[RollupGroup, ...]

    @classmethod
    def from_registry(cls, registry: Registry) -> CityIndex:
        """Index every sensor, gateway, site and region of ``registry``."""
        sites = registry.doc.sites
        site_pos = {s.id: i for i, s in enumerate(sites)}
        gateways = registry.doc.gateways
        gateway_pos = {g.id: i for i, g in enumerate(gateways)}
        sensors = registry.doc.sensors
        facility = {SiteKind.HOSPITAL: 1, SiteKind.ISOLATION_CENTRE: 2}
        groups: list[RollupGroup] = []
        group_pos: dict[tuple[str, str], int] = {}
        site_group = np.full((len(sites), len(ROLLUP_LEVELS)), -1, dtype=np.int32)

        def group_id(level: str, code: str, name: str) -> int:
            key = (level, code)
            if key not in group_pos:
                group_pos[key] = len(groups)
                groups.append(RollupGroup(level, code, name))
            return group_pos[key]

        for i, site in enumerate(sites):
            site_group[i, 0] = group_id("site", site.id, site.name)
            for region in registry.regions_of(site.id):
                col = ROLLUP_LEVELS.index(region.level.value)
                site_group[i, col] = group_id(region.level.value, region.code, region.name)
        return cls(
            registry=registry,
            sensor_ids=tuple(s.id for s in sensors),
            sensor_pos={s.id: i for i, s in enumerate(sensors)},
            sensor_kind=np.array([KIND_CODES[s.kind] for s in sensors], dtype=np.int8),
            sensor_gateway=np.array([gateway_pos[s.gateway] for s in sensors], dtype=np.int32),
            sensor_site=np.array([site_pos[s.site] for s in sensors], dtype=np.int32),
            sensor_bed_type=np.array([s.bed_type or 0 for s in sensors], dtype=np.int32),
            gateway_ids=tuple(g.id for g in gateways),
            gateway_pos=gateway_pos,
            gateway_site=np.array([site_pos[g.site] for g in gateways], dtype=np.int32),
            site_ids=tuple(s.id for s in sites),
            site_pos=site_pos,
            site_facility=np.array([facility.get(s.kind, 0) for s in sites], dtype=np.int8),
            site_capacity=np.array([s.capacity or 0 for s in sites], dtype=np.int64),
            site_group=site_group,
            groups=tuple(groups),
        )

    @property
    def n_sensors(self) -> int:
        """Number of sensors in the registry."""
        return len(self.sensor_ids)


_T = TypeVar("_T")


class PerIndex(Generic[_T]):
    """A value derived from a :class:`CityIndex`, built on first use and dropped with the index
    (keyed by identity: an index is not hashable, and a reload makes a new one)."""

    def __init__(self, build: Callable[[CityIndex], _T]) -> None:
        self._build = build
        #: id(index) -> (the index, its value); an entry leaves with its index
        self._values: dict[int, tuple[weakref.ref[CityIndex], _T]] = {}

    def __call__(self, index: CityIndex) -> _T:
        got = self._values.get(id(index))
        if got is not None and got[0]() is index:
            return got[1]
        value = self._build(index)
        key = id(index)
        self._values[key] = (weakref.ref(index, lambda _: self._values.pop(key, None)), value)
        return value

    def __len__(self) -> int:
        """How many live indexes have a value."""
        return len(self._values)

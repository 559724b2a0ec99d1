"""Roles, what each may read, and where a region code sits in the registry's tree (no I/O).

A route requires one role; a caller passes when its role *grants* that role:

| caller's role    | may read routes that require                   |
|------------------|------------------------------------------------|
| `public`         | `public`                                       |
| `health_officer` | `public`, `health_officer`                     |
| `ops`            | `public`, `ops`                                |
| `admin`          | every role                                     |

Restricted data (anything above `public`) is further limited to the key's regions: a key
scoped to kecamatan `33.74.07` reads wards, sites and gateways whose kelurahan lies in it, and
nothing of `33.74.08`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum

from city import Level, Registry


class Role(StrEnum):
    """What a key is for (docs/api.md "Authentication")."""

    #: Aggregates at kecamatan level and above, crowds, queues, the registry: what a city
    #: website shows. Every anonymous request has this role.
    PUBLIC = "public"
    #: Per-ward and per-site bed detail, within the key's regions.
    HEALTH_OFFICER = "health_officer"
    #: Gateways and devices (link state, spool, drops), within the key's regions.
    OPS = "ops"
    #: Everything, everywhere, and the key list.
    ADMIN = "admin"


GRANTS: Mapping[Role, frozenset[Role]] = {
    Role.PUBLIC: frozenset({Role.PUBLIC}),
    Role.HEALTH_OFFICER: frozenset({Role.PUBLIC, Role.HEALTH_OFFICER}),
    Role.OPS: frozenset({Role.PUBLIC, Role.OPS}),
    Role.ADMIN: frozenset(Role),
}

#: Summary levels finer than a kecamatan: reading them is per-site detail (health officer).
FINE_LEVELS = frozenset({"site", Level.RW.value, Level.KELURAHAN.value})


class RegionIndex:
    """Every code the registry knows (provinsi, kota, kecamatan, kelurahan, RW, site id) with its
    ancestors, so "is X inside Y" is one set lookup."""

    def __init__(self, *, registry: Registry) -> None:
        city = registry.city
        up: dict[str, tuple[str, ...]] = {
            city.province.code: (city.province.code,),
            city.code: (city.code, city.province.code),
        }
        for kec in city.kecamatan:
            up[kec.code] = (kec.code, *up[city.code])
            for kel in kec.kelurahan:
                up[kel.code] = (kel.code, *up[kec.code])
                for rw in kel.rw:
                    code = registry.rw_region(kel.code, rw).code
                    up[code] = (code, *up[kel.code])
        for site in registry.sites.values():
            below = registry.rw_region(site.kelurahan, site.rw).code if site.rw else site.kelurahan
            up[site.id] = (site.id, *up[below])
        # Gateways and sensors sit at their site; ops and detail routes name them.
        for gateway in registry.gateways.values():
            up.setdefault(gateway.id, (gateway.id, *up[gateway.site]))
        for sensor in registry.sensors.values():
            up.setdefault(sensor.id, (sensor.id, *up[sensor.site]))
        self._up = up

    def __contains__(self, code: object) -> bool:
        return code in self._up

    def ancestors(self, code: str) -> tuple[str, ...]:
        """``code`` and every region above it, lowest first; empty for an unknown code."""
        return self._up.get(code, ())

    def unknown(self, codes: Iterable[str]) -> list[str]:
        """The codes the registry does not have."""
        return [c for c in codes if c not in self._up]

    def inside(self, code: str, scope: frozenset[str] | None) -> bool:
        """Whether ``code`` lies in one of the ``scope`` regions (None: everywhere). An unknown
        code is inside nothing but an unlimited scope."""
        if scope is None:
            return True
        return not scope.isdisjoint(self.ancestors(code))

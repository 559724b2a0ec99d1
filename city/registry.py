"""The city registry: administrative hierarchy, sites, gateways and sensors.

Loaded from YAML and validated with pydantic; cross-references are checked after parsing so
every error names the file, the place inside it (``sensors[4].gateway``) and what is wrong.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, NoReturn
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from contract.beds import BED_TYPES
from contract.errors import RegistryError
from contract.payload import SensorKind
from contract.topics import ID_PATTERN
from contract.yamlfile import read_yaml

DEMO_CITY = Path(__file__).resolve().parent / "cities" / "semarang.yaml"

Identifier = Annotated[str, StringConstraints(pattern=f"^{ID_PATTERN}$")]
#: Human names may hold spaces, dots, commas, quotes, '=' and any Unicode letter. Line ends,
#: control characters and backslashes are refused: InfluxDB tags cannot carry them exactly.
Name = Annotated[
    str, StringConstraints(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f\\]+$")
]
RegionCode = Annotated[str, StringConstraints(pattern=r"^\d{2}(\.\d{2}(\.\d{2}(\.\d{4})?)?)?$")]
RwNumber = Annotated[str, StringConstraints(pattern=r"^\d{2,3}$")]


class Level(StrEnum):
    """Administrative levels a rollup can be asked for, lowest first."""

    RW = "rw"
    KELURAHAN = "kelurahan"
    KECAMATAN = "kecamatan"
    KOTA = "kota"
    PROVINSI = "provinsi"


class SiteKind(StrEnum):
    HOSPITAL = "hospital"
    ISOLATION_CENTRE = "isolation_centre"  # RW/kelurahan hall, hotel, dorm: counts as isolation
    MARKET = "market"
    PUBLIC_SPACE = "public_space"
    OFFICE = "office"  # public-service office (Dukcapil, Samsat, puskesmas counter...)


#: Which sensor kinds make sense at which kind of site.
SENSORS_AT: dict[SiteKind, frozenset[SensorKind]] = {
    SiteKind.HOSPITAL: frozenset({SensorKind.BED, SensorKind.QUEUE}),
    SiteKind.ISOLATION_CENTRE: frozenset({SensorKind.BED}),
    SiteKind.MARKET: frozenset({SensorKind.CROWD, SensorKind.QUEUE}),
    SiteKind.PUBLIC_SPACE: frozenset({SensorKind.CROWD}),
    SiteKind.OFFICE: frozenset({SensorKind.QUEUE}),
}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Kelurahan(_Model):
    code: RegionCode
    name: Name
    rw: list[RwNumber] = Field(default_factory=list)


class Kecamatan(_Model):
    code: RegionCode
    name: Name
    kelurahan: list[Kelurahan] = Field(min_length=1)


class Province(_Model):
    code: RegionCode
    name: Name


class City(_Model):
    code: RegionCode
    name: Name
    province: Province
    timezone: str = "Asia/Jakarta"
    kecamatan: list[Kecamatan] = Field(min_length=1)


class Site(_Model):
    id: Identifier
    name: Name
    kind: SiteKind
    kelurahan: RegionCode
    rw: RwNumber | None = None
    #: Crowd sites: people allowed at once under the health protocol.
    capacity: int | None = Field(default=None, gt=0)
    #: Where to find it, for people looking for a bed (the API shows what is given).
    address: Name | None = None
    phone: Annotated[str, StringConstraints(pattern=r"^[0-9+() -]{3,32}$")] | None = None
    lat: float | None = Field(default=None, ge=-90, le=90)
    lon: float | None = Field(default=None, ge=-180, le=180)


class Gateway(_Model):
    id: Identifier
    site: Identifier
    #: A simple device that publishes single readings itself (no serial, no edge agent).
    direct: bool = False


class Sensor(_Model):
    id: Identifier
    kind: SensorKind
    site: Identifier
    gateway: Identifier
    #: Label of the serial line at the gateway; several sensors may share a bus.
    port: Identifier = "bus0"
    # bed sensors
    ward: Name | None = None
    bed_type: int | None = None
    beds: int | None = Field(default=None, gt=0, description="installed beds (nominal)")
    # crowd sensors
    gate: Name | None = None
    # queue kiosks
    counters: int | None = Field(default=None, gt=0)


class RegistryDoc(_Model):
    city: City
    sites: list[Site] = Field(min_length=1)
    gateways: list[Gateway] = Field(min_length=1)
    sensors: list[Sensor] = Field(min_length=1)


@dataclass(frozen=True, slots=True)
class Region:
    """One node of the administrative tree."""

    level: Level
    code: str
    name: str


class Registry:
    """A validated city with lookups. Build with :func:`load_registry` or :meth:`from_doc`."""

    def __init__(self, *, doc: RegistryDoc, source: str = "<memory>") -> None:
        self.doc = doc
        self.source = source
        self.city = doc.city
        self.sites = {s.id: s for s in doc.sites}
        self.gateways = {g.id: g for g in doc.gateways}
        self.sensors = {s.id: s for s in doc.sensors}
        self.kelurahan = {k.code: k for kc in doc.city.kecamatan for k in kc.kelurahan}
        self.kecamatan_of_kelurahan = {
            k.code: kc for kc in doc.city.kecamatan for k in kc.kelurahan
        }

    @classmethod
    def from_doc(cls, raw: Any, *, source: str = "<memory>") -> Registry:
        """Validate a parsed YAML document; raises :class:`RegistryError` naming the place."""
        try:
            doc = RegistryDoc.model_validate(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            raise RegistryError(source, _loc(first["loc"]), first["msg"]) from None
        _check_references(doc, source)
        return cls(doc=doc, source=source)

    @cached_property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.city.timezone)

    def regions_of(self, site_id: str) -> list[Region]:
        """The site's ancestors from RW (if any) up to the province, lowest first."""
        site = self.sites[site_id]
        kel = self.kelurahan[site.kelurahan]
        kec = self.kecamatan_of_kelurahan[site.kelurahan]
        chain = []
        if site.rw is not None:
            chain.append(self.rw_region(kel.code, site.rw))
        chain += [
            Region(Level.KELURAHAN, kel.code, kel.name),
            Region(Level.KECAMATAN, kec.code, kec.name),
            Region(Level.KOTA, self.city.code, self.city.name),
            Region(Level.PROVINSI, self.city.province.code, self.city.province.name),
        ]
        return chain

    def rw_region(self, kelurahan_code: str, rw: str) -> Region:
        """The RW ``rw`` of a kelurahan. RW codes are not official, so Pantau's are the
        kelurahan code plus the RW number (``33.74.08.1001.03``)."""
        kel = self.kelurahan[kelurahan_code]
        return Region(Level.RW, f"{kel.code}.{rw}", f"RW {rw}, {kel.name}")

    def region(self, site_id: str, level: Level) -> Region | None:
        """The site's region at ``level`` (None for RW when the site has no RW)."""
        return next((r for r in self.regions_of(site_id) if r.level is level), None)

    def sensors_of(self, *, gateway: str | None = None, site: str | None = None) -> list[Sensor]:
        """Sensors filtered by gateway and/or site, in file order."""
        return [
            s
            for s in self.doc.sensors
            if (gateway is None or s.gateway == gateway) and (site is None or s.site == site)
        ]

    def ports_of(self, gateway: str) -> list[str]:
        """The serial port labels a gateway reads, in file order."""
        return list(dict.fromkeys(s.port for s in self.sensors_of(gateway=gateway)))

    def __iter__(self) -> Iterator[Sensor]:
        return iter(self.doc.sensors)


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _check_references(doc: RegistryDoc, source: str) -> None:
    def fail(location: str, message: str) -> NoReturn:
        raise RegistryError(source, location, message)

    kelurahan = {k.code: k for kc in doc.city.kecamatan for k in kc.kelurahan}
    try:
        ZoneInfo(doc.city.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        fail("city.timezone", f"unknown time zone {doc.city.timezone!r}")
    for i, kc in enumerate(doc.city.kecamatan):
        if not kc.code.startswith(doc.city.code + "."):
            fail(f"city.kecamatan[{i}].code", f"{kc.code} is not inside city {doc.city.code}")
        for j, kel in enumerate(kc.kelurahan):
            if not kel.code.startswith(kc.code + "."):
                fail(
                    f"city.kecamatan[{i}].kelurahan[{j}].code",
                    f"{kel.code} is not inside kecamatan {kc.code}",
                )
    id_lists: dict[str, list[str]] = {
        "sites": [s.id for s in doc.sites],
        "gateways": [g.id for g in doc.gateways],
        "sensors": [s.id for s in doc.sensors],
    }
    for label, ids in id_lists.items():
        seen: set[str] = set()
        for i, ident in enumerate(ids):
            if ident in seen:
                fail(f"{label}[{i}].id", f"duplicate id {ident!r}")
            seen.add(ident)
    sites = {s.id: s for s in doc.sites}
    for i, site in enumerate(doc.sites):
        kel_or_none = kelurahan.get(site.kelurahan)
        if kel_or_none is None:
            fail(f"sites[{i}].kelurahan", f"no kelurahan {site.kelurahan!r} in the city")
        elif site.rw is not None and site.rw not in kel_or_none.rw:
            fail(f"sites[{i}].rw", f"kelurahan {kel_or_none.name} has no RW {site.rw}")
        if site.kind is SiteKind.ISOLATION_CENTRE and site.rw is None:
            fail(f"sites[{i}].rw", "an isolation centre must name its RW")
        crowd_site = site.kind in (SiteKind.MARKET, SiteKind.PUBLIC_SPACE)
        if crowd_site and site.capacity is None:
            fail(f"sites[{i}].capacity", f"a {site.kind.value} needs its health-protocol capacity")
    gateways = {g.id: g for g in doc.gateways}
    for i, gw in enumerate(doc.gateways):
        if gw.site not in sites:
            fail(f"gateways[{i}].site", f"no site {gw.site!r}")
    for i, sensor in enumerate(doc.sensors):
        where = f"sensors[{i}]"
        if sensor.site not in sites:
            fail(f"{where}.site", f"no site {sensor.site!r}")
        if sensor.gateway not in gateways:
            fail(f"{where}.gateway", f"no gateway {sensor.gateway!r}")
        site, gw = sites[sensor.site], gateways[sensor.gateway]
        if gw.site != sensor.site:
            fail(f"{where}.gateway", f"gateway {gw.id} is at {gw.site}, not {sensor.site}")
        if sensor.kind not in SENSORS_AT[site.kind]:
            fail(f"{where}.kind", f"no {sensor.kind.value} sensors at a {site.kind.value}")
        if sensor.kind is SensorKind.BED:
            if sensor.ward is None or sensor.bed_type is None or sensor.beds is None:
                fail(where, "a bed sensor needs ward, bed_type and beds")
            elif sensor.bed_type not in BED_TYPES:
                fail(f"{where}.bed_type", f"{sensor.bed_type} is not a SIRANAP bed type code")
        elif sensor.ward is not None or sensor.bed_type is not None or sensor.beds is not None:
            fail(where, "ward, bed_type and beds are for bed sensors only")
        if sensor.kind is SensorKind.QUEUE and sensor.counters is None:
            fail(f"{where}.counters", "a queue kiosk needs the number of counters it serves")


def load_registry(path: str | Path) -> Registry:
    """Read and validate a registry file. Every failure is a :class:`RegistryError` that names
    the file, the place in it and the problem (a non-UTF-8 file, bad YAML syntax and a repeated
    key included, see :mod:`contract.yamlfile`)."""
    return Registry.from_doc(read_yaml(path, RegistryError), source=str(path))

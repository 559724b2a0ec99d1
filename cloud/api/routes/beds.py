"""Beds: per ward (``/v1/beds``), per site (``/v1/beds/{site_id}``) and rolled up
(``/v1/beds/summary``), from the ``bed`` and ``bed_rollup`` measurements of docs/schema.md."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, status

from city import Level, Registry, Site, SiteKind
from cloud.api.auth import Caller, Role, require
from cloud.api.auth_roles import FINE_LEVELS
from cloud.api.deps import (
    InfluxDep,
    RegistryDep,
    SettingsDep,
    bed_type_codes,
    check_region,
)
from cloud.api.models import (
    BedGroup,
    BedList,
    BedSummary,
    BedSummaryRow,
    BedTotals,
    BedWard,
    ErrorBody,
    Facility,
    SiteBeds,
    SummaryLevel,
)
from cloud.api.queries import as_int, is_stale, iso_ms, latest_rows, now_iso, now_ms
from cloud.influx import InfluxHTTP
from contract.beds import BED_TYPES, bed_group, bor_band, bor_percent
from contract.payload import SensorKind
from contract.secrets import bounded_echo

router = APIRouter(tags=["beds"])

BED_SITE_KINDS = frozenset({SiteKind.HOSPITAL, SiteKind.ISOLATION_CENTRE})
COUNT_FIELDS = ("capacity", "occupied", "free", "suspect", "confirmed", "waiting", "sensors")
_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "bed_type and group given together"},
    404: {"model": ErrorBody, "description": "unknown site, kecamatan or kelurahan"},
    422: {"model": ErrorBody, "description": "unknown bed type code or bad parameter"},
    503: {"model": ErrorBody, "description": "InfluxDB unreachable"},
}


def bed_site(registry: Registry, site_id: str) -> Site:
    """The hospital or isolation centre ``site_id``; 404 naming it otherwise."""
    site = registry.sites.get(site_id)
    if site is None:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, f"no site {bounded_echo(site_id)} in {registry.city.name}"
        )
    if site.kind not in BED_SITE_KINDS:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            f"site {site_id!r} ({site.name}) is a {site.kind.value}, which has no beds",
        )
    return site


@dataclass(frozen=True, slots=True)
class _Filter:
    site: str | None = None
    kecamatan: str | None = None
    kelurahan: str | None = None
    codes: list[int] | None = None
    facility: Facility = Facility.ALL

    def conditions(self) -> dict[str, str | list[str] | None]:
        return {
            "site": self.site,
            "kecamatan": self.kecamatan,
            "kelurahan": self.kelurahan,
            "bed_type": None if self.codes is None else [str(c) for c in self.codes],
            "site_kind": None if self.facility is Facility.ALL else self.facility.value,
        }

    def matches(self, meta: dict[str, Any]) -> bool:
        """Whether a ward (registry or tag metadata) passes the filter."""
        return (
            (self.site is None or meta["site"] == self.site)
            and (self.kecamatan is None or meta["kecamatan"] == self.kecamatan)
            and (self.kelurahan is None or meta["kelurahan"] == self.kelurahan)
            and (self.codes is None or meta["bed_type"] in self.codes)
            and (self.facility is Facility.ALL or meta["site_kind"] == self.facility.value)
        )


def _registry_wards(registry: Registry) -> list[dict[str, Any]]:
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
    return out


def _ward(meta: dict[str, Any], row: dict[str, Any] | None, *, now: int, after: float) -> BedWard:
    """One ward from registry metadata and its latest point. Names come from the point's tags
    when there is one (what the ingester stored), so they round-trip through InfluxDB."""
    row = row or {}
    names = {k: row.get(k) or meta[k] for k in ("site_name", "site_kind", "ward")}
    capacity, occupied = as_int(row.get("capacity")), as_int(row.get("occupied"))
    free = as_int(row.get("free"))
    if free is None and capacity is not None and occupied is not None:
        free = capacity - occupied
    bor = None if capacity is None or occupied is None else bor_percent(occupied, capacity)
    observed = as_int(row.get("time"))
    code: int = meta["bed_type"]
    group = bed_group(code)
    return BedWard(
        sensor=meta["sensor"],
        site=meta["site"],
        kelurahan=meta["kelurahan"],
        kecamatan=meta["kecamatan"],
        bed_type=code,
        bed_type_name=BED_TYPES.get(code, f"bed type {code}"),
        bed_group=None if group is None else BedGroup(group),
        capacity=capacity,
        occupied=occupied,
        free=free,
        suspect=as_int(row.get("suspect")),
        confirmed=as_int(row.get("confirmed")),
        waiting=as_int(row.get("waiting")),
        bor=bor,
        band=bor_band(bor),
        observed_at=iso_ms(observed),
        observed_at_ms=observed,
        stale=is_stale(observed, now=now, stale_after_s=after),
        **names,
    )


def _wards(influx: InfluxHTTP, registry: Registry, flt: _Filter, *, after: float) -> list[BedWard]:
    rows = latest_rows(influx, "bed", group_by=["sensor"], conditions=flt.conditions())
    latest = {str(r["sensor"]): r for r in rows}
    now = now_ms()
    out = []
    for meta in _registry_wards(registry):
        if flt.matches(meta):
            out.append(_ward(meta, latest.pop(meta["sensor"], None), now=now, after=after))
    # Sensors the registry no longer lists still show their last state rather than vanish.
    for sensor_id in sorted(latest):
        row = latest[sensor_id]
        try:
            code = int(row["bed_type"])
        except (KeyError, TypeError, ValueError):
            continue
        meta = {k: row.get(k) or "" for k in ("sensor", "site", "kelurahan", "kecamatan")}
        meta |= {k: row.get(k) or "" for k in ("site_name", "site_kind", "ward")}
        meta["bed_type"] = code
        out.append(_ward(meta, row, now=now, after=after))
    return out


@router.get("/v1/beds", response_model=BedList, responses=_ERRORS)
def list_beds(
    caller: Annotated[
        Caller, require(Role.HEALTH_OFFICER, region=("site", "kecamatan", "kelurahan"))
    ],
    settings: SettingsDep,
    registry: RegistryDep,
    influx: InfluxDep,
    site: str | None = None,
    kecamatan: str | None = None,
    kelurahan: str | None = None,
    bed_type: str | None = None,
    group: BedGroup | None = None,
    facility: Facility = Facility.ALL,
) -> BedList:
    """Every ward of every hospital and isolation centre (one row per bed sensor), from its
    latest reading. Sensors that never reported are listed with nulls and ``stale: true``."""
    codes = bed_type_codes(bed_type, group, allow_all=False)
    check_region(registry, kecamatan=kecamatan, kelurahan=kelurahan)
    if site is not None:
        bed_site(registry, site)
    flt = _Filter(
        site=site, kecamatan=kecamatan, kelurahan=kelurahan, codes=codes, facility=facility
    )
    items = _wards(influx, registry, flt, after=settings.stale_after_s)
    items = [w for w in items if caller.sees(w.kelurahan)]
    return BedList(stale_after_s=settings.stale_after_s, generated_at=now_iso(), items=items)


@dataclass
class _Acc:
    """Running sums of rollup rows for one code."""

    name: str | None = None
    counts: dict[str, int] | None = None
    oldest: int | None = None
    newest: int | None = None

    def add(self, row: dict[str, Any]) -> None:
        self.name = self.name or row.get("name")
        counts = self.counts if self.counts is not None else dict.fromkeys(COUNT_FIELDS, 0)
        for key in COUNT_FIELDS:
            counts[key] += as_int(row.get(key)) or 0
        self.counts = counts
        old, new = as_int(row.get("oldest_ms")), as_int(row.get("newest_ms"))
        if old is not None:
            self.oldest = old if self.oldest is None else min(self.oldest, old)
        if new is not None:
            self.newest = new if self.newest is None else max(self.newest, new)


def _expected_regions(
    registry: Registry, level: SummaryLevel, codes: list[int] | None, facility: Facility
) -> dict[str, str]:
    """Code -> name of every region (or site) at ``level`` that has a matching bed sensor."""
    out: dict[str, str] = {}
    for meta in _registry_wards(registry):
        if not _Filter(codes=codes, facility=facility).matches(meta):
            continue
        if level is SummaryLevel.SITE:
            out[meta["site"]] = meta["site_name"]
        elif (region := registry.region(meta["site"], Level(level.value))) is not None:
            out[region.code] = region.name
    return out


@router.get("/v1/beds/summary", response_model=BedSummary, responses=_ERRORS)
def beds_summary(
    caller: Annotated[Caller, require(Role.PUBLIC, level="level")],
    settings: SettingsDep,
    registry: RegistryDep,
    influx: InfluxDep,
    level: SummaryLevel = SummaryLevel.KOTA,
    bed_type: str | None = None,
    group: BedGroup | None = None,
    facility: Facility = Facility.ALL,
) -> BedSummary:
    """BOR per region (or site) at ``level``, from the latest ``bed_rollup`` points. With
    ``group``, the per-bed-type rollups of the group's codes are summed. A region whose oldest
    contributing reading is older than the stale limit is ``stale``; regions with bed sensors
    but no rollup yet are listed with nulls."""
    codes = bed_type_codes(bed_type, group, allow_all=True)
    tag_values = ["all"] if codes is None else [str(c) for c in codes]
    rows = latest_rows(
        influx,
        "bed_rollup",
        group_by=["code", "bed_type"],
        conditions={"level": level.value, "facility": facility.value, "bed_type": tag_values},
    )
    acc: dict[str, _Acc] = {}
    for row in rows:
        acc.setdefault(str(row["code"]), _Acc()).add(row)
    expected = _expected_regions(registry, level, codes, facility)
    now = now_ms()
    after = settings.stale_after_s
    items = []
    for code in sorted(expected.keys() | acc.keys()):
        a = acc.get(code, _Acc())
        c: dict[str, int | None] = dict(a.counts) if a.counts else dict.fromkeys(COUNT_FIELDS)
        cap, occ = c["capacity"], c["occupied"]
        bor = None if cap is None or occ is None else bor_percent(occ, cap)
        items.append(
            BedSummaryRow(
                code=code,
                name=a.name or expected.get(code) or code,
                capacity=cap,
                occupied=occ,
                free=c["free"],
                suspect=c["suspect"],
                confirmed=c["confirmed"],
                waiting=c["waiting"],
                sensors=c["sensors"],
                bor=bor,
                band=bor_band(bor),
                observed_at_oldest=iso_ms(a.oldest),
                observed_at_oldest_ms=a.oldest,
                observed_at_newest=iso_ms(a.newest),
                observed_at_newest_ms=a.newest,
                stale=a.counts is None or is_stale(a.oldest, now=now, stale_after_s=after),
            )
        )
    if level.value in FINE_LEVELS:
        items = [row for row in items if caller.sees(row.code)]
    return BedSummary(
        level=level,
        bed_type=None if group is not None else tag_values[0],
        group=group,
        bed_types=codes,
        facility=facility,
        stale_after_s=after,
        generated_at=now_iso(),
        items=items,
    )


@router.get(
    "/v1/beds/{site_id}",
    response_model=SiteBeds,
    responses=_ERRORS,
    dependencies=[require(Role.HEALTH_OFFICER, region=("site_id",))],
)
def site_beds(
    site_id: str, settings: SettingsDep, registry: RegistryDep, influx: InfluxDep
) -> SiteBeds:
    """One hospital's or isolation centre's wards, with totals over the wards that reported."""
    site = bed_site(registry, site_id)
    wards = _wards(influx, registry, _Filter(site=site_id), after=settings.stale_after_s)
    reported = [w for w in wards if w.capacity is not None and w.occupied is not None]
    capacity = sum(w.capacity or 0 for w in reported)
    occupied = sum(w.occupied or 0 for w in reported)
    bor = bor_percent(occupied, capacity)
    return SiteBeds(
        site=site.id,
        site_name=next((w.site_name for w in wards if w.observed_at_ms), site.name),
        site_kind=site.kind.value,
        kelurahan=site.kelurahan,
        kecamatan=registry.kecamatan_of_kelurahan[site.kelurahan].code,
        stale_after_s=settings.stale_after_s,
        generated_at=now_iso(),
        totals=BedTotals(
            capacity=capacity,
            occupied=occupied,
            free=sum(w.free if w.free is not None else 0 for w in reported),
            bor=bor,
            band=bor_band(bor),
        ),
        items=wards,
    )

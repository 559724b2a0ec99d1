"""SIRANAP-compatible bed report per hospital (``/v1/siranap``): the Ministry of Health's RS
Online layout, one row per bed type (``id_tt``), as JSON or CSV. docs/siranap.md has the field
table and what each value is made of.

Figures are the ingester's site rollup per bed type from the current state (the same rows it
writes to ``bed_rollup`` at ``level=site``); nothing is recomputed here.
"""

from __future__ import annotations

import csv
import io
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Response, status

from city import Registry, Site, SiteKind
from cloud.api.auth import Caller, require
from cloud.api.auth_roles import Role
from cloud.api.deps import LiveDep, NowDep, RegistryDep, SettingsDep
from cloud.api.localtime import LocalZone, zone_of_province
from cloud.api.models import ErrorBody
from cloud.api.models_siranap import (
    SIRANAP_FIELDS,
    ExportFormat,
    SiranapHospital,
    SiranapList,
    SiranapRow,
)
from cloud.api.now_cache import AnswerDep
from cloud.api.queries import is_stale, now_iso
from cloud.api.registry_views import sensors_by_site
from cloud.api.state import LiveState, Snapshot
from contract.beds import BED_TYPES
from contract.clock import now_ms
from contract.payload import SensorKind
from contract.secrets import bounded_echo

router = APIRouter(tags=["siranap"])

#: RS Online's COVID-19 bed types: negative-pressure ICU and isolation, and the "khusus COVID"
#: types (24-34). Every other type reports ``covid`` 0.
COVID_TYPES = frozenset(range(24, 35))
_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "unknown site, or not a hospital"},
    422: {"model": ErrorBody, "description": "bad parameter"},
    503: {"model": ErrorBody, "description": "state not loaded and InfluxDB unreachable"},
}
_CSV = {"content": {"text/csv": {"example": ",".join(SIRANAP_FIELDS) + "\n"}}}


def _hospital(registry: Registry, site_id: str) -> Site:
    site = registry.sites.get(site_id)
    if site is None:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, f"no site {bounded_echo(site_id)} in {registry.city.name}"
        )
    if site.kind is not SiteKind.HOSPITAL:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            f"site {site_id!r} ({site.name}) is a {site.kind.value}; SIRANAP reports hospitals",
        )
    return site


def _rows(
    site: Site, live: LiveState, snap: Snapshot, zone: LocalZone, *, after: float
) -> list[SiranapRow]:
    """One row per bed type the hospital has a bed sensor of, in code order."""
    wards: dict[int, list[str]] = {}
    for sensor in sensors_by_site(live.index.registry).get(site.id, ()):
        if sensor.kind is SensorKind.BED and sensor.bed_type is not None:
            wards.setdefault(sensor.bed_type, []).append(sensor.ward or "")
    gid = live.group_ids.get(("site", site.id))
    b = snap.beds
    now = now_ms()
    out = []
    for code in sorted(wards):
        row = None if gid is None else snap.bed_row.get((gid, code, 0))
        figures: dict[str, str | None] = dict.fromkeys(
            ("jumlah", "terpakai", "terpakai_suspek", "terpakai_konfirmasi", "kosong", "antrian")
        )
        newest = oldest = None
        if row is not None:
            figures = {
                "jumlah": str(int(b.capacity[row])),
                "terpakai": str(int(b.occupied[row])),
                "terpakai_suspek": str(int(b.suspect[row])),
                "terpakai_konfirmasi": str(int(b.confirmed[row])),
                "kosong": str(int(b.free[row])),
                "antrian": str(int(b.waiting[row])),
            }
            newest, oldest = int(b.newest_ms[row]), int(b.oldest_ms[row])
        out.append(
            SiranapRow(
                id_tt=str(code),
                tt=BED_TYPES.get(code, f"bed type {code}"),
                ruang="; ".join(wards[code]),
                jumlah_ruang=str(len(wards[code])),
                prepare="0",
                prepare_plan="0",
                covid="1" if code in COVID_TYPES else "0",
                tglupdate=None
                if newest is None
                else zone.local(newest).strftime("%Y-%m-%d %H:%M:%S"),
                stale=is_stale(oldest, now=now, stale_after_s=after),
                **figures,
            )
        )
    return out


def _csv(rows: list[SiranapRow], *, with_site: list[tuple[str, str]] | None = None) -> str:
    buf = io.StringIO()
    lead = ["kode_rs", "nama_rs"] if with_site is not None else []
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([*lead, *SIRANAP_FIELDS])
    for i, row in enumerate(rows):
        data = row.model_dump()
        cells = [
            "" if data[f] is None else str(data[f]).lower() if f == "stale" else data[f]
            for f in SIRANAP_FIELDS
        ]
        writer.writerow([*(with_site[i] if with_site is not None else ()), *cells])
    return buf.getvalue()


def _report(site: Site, settings: SettingsDep, live: LiveState, snap: Snapshot) -> SiranapHospital:
    zone = zone_of_province(live.index.registry.city.province.code)
    return SiranapHospital(
        kode_rs=site.id,
        nama_rs=site.name,
        zona_waktu=zone.name,
        stale_after_s=settings.stale_after_s,
        generated_at=now_iso(),
        items=_rows(site, live, snap, zone, after=settings.stale_after_s),
    )


FormatQuery = Annotated[ExportFormat, Query(description="json (default) or csv")]


@router.get("/v1/siranap", response_model=SiranapList, responses={**_ERRORS, 200: _CSV})
async def siranap_all(
    caller: Annotated[Caller, require(Role.HEALTH_OFFICER)],
    settings: SettingsDep,
    registry: RegistryDep,
    live: LiveDep,
    snap: NowDep,
    answer: AnswerDep,
    format: FormatQuery = ExportFormat.JSON,  # noqa: A002 - the parameter clients send
) -> Response:
    """Every hospital's SIRANAP bed report. CSV has one line per hospital and bed type, led by
    ``kode_rs`` and ``nama_rs``."""

    def build() -> SiranapList:
        reports = [
            _report(site, settings, live, snap)
            for site in registry.sites.values()
            if site.kind is SiteKind.HOSPITAL and caller.sees(site.id)
        ]
        return SiranapList(
            stale_after_s=settings.stale_after_s, generated_at=now_iso(), items=reports
        )

    if format is ExportFormat.CSV:
        reports = build().items
        rows = [row for rep in reports for row in rep.items]
        sites = [(rep.kode_rs, rep.nama_rs) for rep in reports for _ in rep.items]
        return Response(_csv(rows, with_site=sites), media_type="text/csv; charset=utf-8")
    return answer(build)


@router.get(
    "/v1/siranap/{site_id}",
    response_model=SiranapHospital,
    responses={**_ERRORS, 200: _CSV},
    dependencies=[require(Role.HEALTH_OFFICER, region=("site_id",))],
)
async def siranap_hospital(
    site_id: str,
    settings: SettingsDep,
    registry: RegistryDep,
    live: LiveDep,
    snap: NowDep,
    format: FormatQuery = ExportFormat.JSON,  # noqa: A002 - the parameter clients send
) -> SiranapHospital | Response:
    """One hospital's SIRANAP bed report: one row per bed type, values as strings as RS Online
    has them, ``tglupdate`` the newest observation in the hospital's local time."""
    report = _report(_hospital(registry, site_id), settings, live, snap)
    if format is ExportFormat.CSV:
        return Response(_csv(report.items), media_type="text/csv; charset=utf-8")
    return report

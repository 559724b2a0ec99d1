"""SIRANAP-compatible bed report per hospital (``/v1/siranap``): the Ministry of Health's RS
Online layout, one row per bed type (``id_tt``), as JSON or CSV. docs/siranap.md has the field
table and what each value is made of.

Figures are the ingester's site rollup per bed type from the current state (the same rows it
writes to ``bed_rollup`` at ``level=site``); nothing is recomputed here.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from functools import lru_cache
from typing import Annotated, Any

import numpy as np
import orjson
from fastapi import APIRouter, HTTPException, Query, Response, status

from city import Registry, Site, SiteKind
from cloud.api.auth import Caller, require
from cloud.api.auth_roles import Role
from cloud.api.deps import LiveDep, NowDep, RegistryDep, SettingsDep
from cloud.api.localtime import LocalZone, zone_of_province
from cloud.api.models import ErrorBody, list_envelope
from cloud.api.models_siranap import (
    SIRANAP_FIELDS,
    ExportFormat,
    SiranapHospital,
    SiranapList,
)
from cloud.api.now_cache import AnswerDep
from cloud.api.queries import format_ms, is_stale, now_iso
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


@lru_cache(maxsize=4)
def _types(registry: Registry) -> Mapping[str, tuple[tuple[int, dict[str, Any]], ...]]:
    """Per hospital, per bed type it has a bed sensor of (in code order): the code and the
    row's registry fields. Made once per registry: a province has hundreds of hospitals."""
    out: dict[str, tuple[tuple[int, dict[str, Any]], ...]] = {}
    for site_id, sensors in sensors_by_site(registry).items():
        wards: dict[int, list[str]] = {}
        for sensor in sensors:
            if sensor.kind is SensorKind.BED and sensor.bed_type is not None:
                wards.setdefault(sensor.bed_type, []).append(sensor.ward or "")
        out[site_id] = tuple(
            (
                code,
                {
                    "id_tt": str(code),
                    "tt": BED_TYPES.get(code, f"bed type {code}"),
                    "ruang": "; ".join(wards[code]),
                    "jumlah_ruang": str(len(wards[code])),
                },
            )
            for code in sorted(wards)
        )
    return out


_FIGURES = ("jumlah", "terpakai", "terpakai_suspek", "terpakai_konfirmasi", "kosong", "antrian")
_COLUMNS = ("capacity", "occupied", "suspect", "confirmed", "free", "waiting")


def _rows(
    site: Site, live: LiveState, snap: Snapshot, zone: LocalZone, *, now: int, after: float
) -> list[dict[str, Any]]:
    """One row (``SiranapRow``'s fields, in CSV order) per bed type the hospital has a bed
    sensor of, in code order; every figure is the ingester's site rollup of that type."""
    gid = live.group_ids.get(("site", site.id))
    types = _types(live.index.registry).get(site.id, ())
    get = snap.bed_row.get
    rows = [None if gid is None else get((gid, code, 0)) for code, _ in types]
    # One gather per column for the hospital's rows (numpy scalars one by one cost more).
    at = np.array([0 if r is None else r for r in rows], dtype=np.intp)
    b = snap.beds
    columns = [getattr(b, c)[at].tolist() if len(b.group) else [] for c in _COLUMNS]
    newest = b.newest_ms[at].tolist() if len(b.group) else []
    oldest = b.oldest_ms[at].tolist() if len(b.group) else []
    out = []
    for i, ((code, static), row) in enumerate(zip(types, rows, strict=True)):
        out_row = dict(static)
        for name, column in zip(_FIGURES, columns, strict=True):
            out_row[name] = None if row is None else str(column[i])
        out_row["prepare"] = "0"
        out_row["prepare_plan"] = "0"
        out_row["covid"] = "1" if code in COVID_TYPES else "0"
        out_row["tglupdate"] = None if row is None else _local(zone, newest[i])
        out_row["stale"] = is_stale(
            None if row is None else oldest[i], now=now, stale_after_s=after
        )
        out.append(out_row)
    return out


@lru_cache(maxsize=4096)
def _local(zone: LocalZone, ms: int) -> str:
    """``tglupdate``: an observation time in the hospital's zone (many rows share one)."""
    return zone.local(ms).strftime("%Y-%m-%d %H:%M:%S")


def _csv(rows: list[dict[str, Any]], *, with_site: list[tuple[str, str]] | None = None) -> str:
    buf = io.StringIO()
    lead = ["kode_rs", "nama_rs"] if with_site is not None else []
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([*lead, *SIRANAP_FIELDS])
    for i, data in enumerate(rows):
        cells = [
            "" if data[f] is None else str(data[f]).lower() if f == "stale" else data[f]
            for f in SIRANAP_FIELDS
        ]
        writer.writerow([*(with_site[i] if with_site is not None else ()), *cells])
    return buf.getvalue()


def _report(
    site: Site, settings: SettingsDep, live: LiveState, snap: Snapshot, *, now: int
) -> dict[str, Any]:
    """``SiranapHospital``'s JSON object for ``site``."""
    zone = zone_of_province(live.index.registry.city.province.code)
    items = _rows(site, live, snap, zone, now=now, after=settings.stale_after_s)
    return list_envelope(
        items,
        kode_rs=site.id,
        nama_rs=site.name,
        zona_waktu=zone.name,
        stale_after_s=settings.stale_after_s,
        generated_at=format_ms(now),
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

    def reports() -> list[dict[str, Any]]:
        now = now_ms()
        return [
            _report(site, settings, live, snap, now=now)
            for site in registry.sites.values()
            if site.kind is SiteKind.HOSPITAL and caller.sees(site.id)
        ]

    if format is ExportFormat.CSV:
        done = reports()
        rows = [row for rep in done for row in rep["items"]]
        sites = [(rep["kode_rs"], rep["nama_rs"]) for rep in done for _ in rep["items"]]
        return Response(_csv(rows, with_site=sites), media_type="text/csv; charset=utf-8")

    def build() -> bytes:
        items = reports()
        return orjson.dumps(
            list_envelope(items, stale_after_s=settings.stale_after_s, generated_at=now_iso())
        )

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
    report = _report(_hospital(registry, site_id), settings, live, snap, now=now_ms())
    if format is ExportFormat.CSV:
        return Response(_csv(report["items"]), media_type="text/csv; charset=utf-8")
    return SiranapHospital.model_validate(report)

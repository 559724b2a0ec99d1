"""Bed history (``/v1/beds/history``): a region's (or site's) beds per time bucket, from the
``bed_rollup`` points the ingester wrote (docs/schema.md). Buckets of a day or more start at
the city's local midnight (WIB, WITA or WIT from the province, cloud/api/localtime.py), so
"Monday" is Monday in Semarang, not in UTC."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, HTTPException, Query, status

from cloud.api.auth import require
from cloud.api.auth_roles import Role
from cloud.api.deps import InfluxDep, LiveDep, RegistryDep, bed_type_codes
from cloud.api.localtime import zone_of_province
from cloud.api.models import BedGroup, ErrorBody, Facility, SummaryLevel
from cloud.api.models_history import BedBucket, BedHistory
from cloud.api.queries import format_ms, nan_to_none, now_iso
from cloud.influx import ident, where_clause
from cloud.ingest.wards import bor_percent
from cloud.storage_schema import Measurement
from contract.beds import bor_band
from contract.clock import now_ms
from contract.errors import StorageError
from contract.secrets import bounded_echo

router = APIRouter(tags=["beds"])

_INTERVAL = re.compile(r"^([1-9][0-9]{0,3})([mhd])$")
_UNIT_MS = {"m": 60_000, "h": 3_600_000, "d": 86_400_000}
MAX_BUCKETS = 2000
_FIELDS = ("capacity", "occupied", "free", "suspect", "confirmed", "waiting")
_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "bed_type and group given together"},
    404: {"model": ErrorBody, "description": "unknown region or site code"},
    422: {"model": ErrorBody, "description": "bad time range or interval"},
    503: {"model": ErrorBody, "description": "InfluxDB unreachable"},
}


def parse_time(raw: str | None, *, default: int, name: str) -> int:
    """ms since the epoch from ISO 8601 with an offset (or ``Z``) or from integer ms."""
    if raw is None:
        return default
    if raw.isdigit():
        return int(raw)
    try:
        dt = datetime.fromisoformat(raw)
    except ValueError:
        dt = None
    if dt is None or dt.tzinfo is None:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"{name} must be ISO 8601 with an offset (2026-11-29T00:00:00+07:00) or ms since "
            f"the epoch, not {bounded_echo(raw)}",
        )
    return int(dt.timestamp() * 1000)


def interval_ms(raw: str) -> int:
    """ms in an interval like ``15m``, ``1h``, ``1d``; 422 otherwise (at least 5 minutes)."""
    m = _INTERVAL.match(raw)
    ms = 0 if m is None else int(m.group(1)) * _UNIT_MS[m.group(2)]
    if ms < 5 * 60_000:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"interval must be minutes, hours or days (15m, 1h, 1d), at least 5m, not "
            f"{bounded_echo(raw)}",
        )
    return ms


def _region_name(live: Any, level: SummaryLevel, code: str) -> str:
    gid = live.group_ids.get((level.value, code))
    if gid is None:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            f"no {level.value} {bounded_echo(code)} with bed sensors in "
            f"{live.index.registry.city.name} (see /v1/regions for the codes)",
        )
    name: str = live.index.groups[gid].name
    return name


@router.get(
    "/v1/beds/history",
    response_model=BedHistory,
    responses=_ERRORS,
    dependencies=[require(Role.PUBLIC, region=("code",), level="level")],
)
async def beds_history(
    registry: RegistryDep,
    live: LiveDep,
    influx: InfluxDep,
    level: SummaryLevel = SummaryLevel.KOTA,
    code: Annotated[
        str | None, Query(description="region code or site id; default the kota")
    ] = None,
    bed_type: str | None = None,
    group: BedGroup | None = None,
    facility: Facility = Facility.ALL,
    from_: Annotated[
        str | None, Query(alias="from", description="default: 7 days before to")
    ] = None,
    to: Annotated[str | None, Query(description="default: now")] = None,
    interval: Annotated[str, Query(description="bucket: 15m, 1h, 1d, ...")] = "1d",
) -> BedHistory:
    """The region's beds at the end of each ``interval`` bucket in ``[from, to)`` and each
    bucket's peak occupancy. Daily (and longer) buckets start at local midnight. With
    ``group``, the group's bed types are summed per bucket; BOR is computed from the sums by
    the ingester's one formula."""
    codes = bed_type_codes(bed_type, group, allow_all=True)
    step = interval_ms(interval)
    end = parse_time(to, default=now_ms(), name="to")
    start = parse_time(from_, default=end - 7 * 86_400_000, name="from")
    if end <= start or (end - start) // step > MAX_BUCKETS:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"from must be before to, with at most {MAX_BUCKETS} buckets of {interval}",
        )
    city = registry.city
    if code is None:
        code = city.province.code if level is SummaryLevel.PROVINSI else city.code
        if level not in (SummaryLevel.KOTA, SummaryLevel.PROVINSI):
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT, f"level {level.value} needs a code"
            )
    name = _region_name(live, level, code)
    zone = zone_of_province(city.province.code)
    # Buckets start at local midnight: shift InfluxDB's epoch-aligned buckets by the zone.
    offset = (-zone.hours * 3_600_000) % step
    tag_values = ["all"] if codes is None else [str(c) for c in codes]
    where = where_clause(
        {"level": level.value, "code": code, "facility": facility.value, "bed_type": tag_values}
    )
    picks = ", ".join(f"last({ident(f)}) AS {ident(f)}" for f in _FIELDS)
    q = (
        f"SELECT {picks}, max({ident('occupied')}) AS {ident('occupied_max')} "  # noqa: S608
        f"FROM {ident(Measurement.BED_ROLLUP)}{where} AND time >= {start}ms AND time < {end}ms "
        f"GROUP BY time({step}ms, {offset}ms), {ident('bed_type')} fill(none)"
    )
    try:
        series = influx.query(q)
    except StorageError as exc:
        if "database not found" not in str(exc):
            raise
        series = []
    sums: dict[int, dict[str, int]] = {}
    for s in series:
        for row in s.rows():
            if row.get("occupied") is None:
                continue
            acc = sums.setdefault(int(row["time"]), dict.fromkeys((*_FIELDS, "occupied_max"), 0))
            for f in (*_FIELDS, "occupied_max"):
                acc[f] += int(row.get(f) or 0)
    items = []
    for t in sorted(sums):
        acc = sums[t]
        bor = nan_to_none(
            float(bor_percent(np.array([acc["occupied"]]), np.array([acc["capacity"]]))[0])
        )
        items.append(
            BedBucket(
                start=format_ms(t),
                start_ms=t,
                start_local=zone.local(t).isoformat(),
                bor=bor,
                band=bor_band(bor),
                **acc,
            )
        )
    return BedHistory(
        level=level,
        code=code,
        name=name,
        bed_type=None if group is not None else tag_values[0],
        group=group,
        facility=facility,
        interval=interval,
        timezone=zone.name,
        from_ms=start,
        to_ms=end,
        generated_at=now_iso(),
        items=items,
    )

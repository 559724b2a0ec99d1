"""Bed history (``/v1/beds/history``): a region's (or site's) beds per time bucket, from the
``bed_rollup`` points the ingester wrote (docs/schema.md). Buckets of a day or more start at
the city's local midnight (WIB, WITA or WIT from the province, cloud/api/localtime.py), so
"Monday" is Monday in Semarang, not in UTC."""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, HTTPException, Query, status

from cloud.api.auth import require
from cloud.api.auth_roles import Role
from cloud.api.deps import InfluxDep, LiveDep, RegistryDep, bed_type_codes
from cloud.api.history import (
    FromQuery,
    IntervalQuery,
    ToQuery,
    history_series,
    time_range,
)
from cloud.api.models import BedGroup, ErrorBody, Facility, SummaryLevel
from cloud.api.models_history import BedBucket, BedHistory
from cloud.api.queries import format_ms, nan_to_none, now_iso
from cloud.influx import ident, where_clause
from cloud.ingest.wards import bor_percent
from cloud.storage_schema import Measurement
from contract.beds import bor_band
from contract.secrets import bounded_echo

router = APIRouter(tags=["beds"])

_FIELDS = ("capacity", "occupied", "free", "suspect", "confirmed", "waiting")
_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "bed_type and group given together"},
    404: {"model": ErrorBody, "description": "unknown region or site code"},
    422: {"model": ErrorBody, "description": "bad time range or interval"},
    503: {"model": ErrorBody, "description": "InfluxDB unreachable"},
}


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
    from_: FromQuery = None,
    to: ToQuery = None,
    interval: IntervalQuery = "1d",
) -> BedHistory:
    """The region's beds at the end of each ``interval`` bucket in ``[from, to)`` and each
    bucket's peak occupancy. Daily (and longer) buckets start at local midnight. With
    ``group``, the group's bed types are summed per bucket; BOR is computed from the sums by
    the ingester's one formula."""
    codes = bed_type_codes(bed_type, group, allow_all=True)
    span = time_range(registry, from_=from_, to=to, interval=interval)
    city = registry.city
    if code is None:
        code = city.province.code if level is SummaryLevel.PROVINSI else city.code
        if level not in (SummaryLevel.KOTA, SummaryLevel.PROVINSI):
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT, f"level {level.value} needs a code"
            )
    name = _region_name(live, level, code)
    tag_values = ["all"] if codes is None else [str(c) for c in codes]
    where = where_clause(
        {"level": level.value, "code": code, "facility": facility.value, "bed_type": tag_values}
    )
    picks = ", ".join(f"last({ident(f)}) AS {ident(f)}" for f in _FIELDS)
    q = (
        f"SELECT {picks}, max({ident('occupied')}) AS {ident('occupied_max')} "  # noqa: S608
        f"FROM {ident(Measurement.BED_ROLLUP)}{where} AND {span.where()} "
        f"GROUP BY {span.group_by()}, {ident('bed_type')} fill(none)"
    )
    series = history_series(influx, q)
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
                start_local=span.zone.local(t).isoformat(),
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
        timezone=span.zone.name,
        from_ms=span.start_ms,
        to_ms=span.end_ms,
        generated_at=now_iso(),
        items=items,
    )

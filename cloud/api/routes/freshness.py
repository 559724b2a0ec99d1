"""Region freshness (``/v1/freshness``): per region, the share of its sensors whose latest
observation is at most ``within_min`` minutes old, as data (counts and a share), from the
in-memory state. Grafana's platform panels and the bed board read the same numbers."""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Query, Response

from cloud.api.auth import require
from cloud.api.auth_roles import Role
from cloud.api.deps import LiveDep, NowDep
from cloud.api.models import ErrorBody, SummaryLevel
from cloud.api.models_ops import FreshnessList, RegionFreshness
from cloud.api.now_cache import AnswerDep
from cloud.api.queries import now_iso
from cloud.api.state import LiveState, Snapshot
from cloud.ingest.aggregate import NO_TIME
from cloud.ingest.topology import ROLLUP_LEVELS
from contract import KIND_CODES, SensorKind
from contract.clock import now_ms

router = APIRouter(tags=["regions"], dependencies=[require(Role.PUBLIC)])
_ERRORS: dict[int | str, dict[str, Any]] = {
    422: {"model": ErrorBody, "description": "bad parameter"},
    503: {"model": ErrorBody, "description": "state not loaded and InfluxDB unreachable"},
}


@router.get("/v1/freshness", response_model=FreshnessList, responses=_ERRORS)
async def freshness(
    live: LiveDep,
    snap: NowDep,
    answer: AnswerDep,
    level: SummaryLevel = SummaryLevel.KECAMATAN,
    kind: Annotated[str, Query(pattern="^(all|bed|crowd|queue)$")] = "all",
    within_min: Annotated[float, Query(gt=0, le=7 * 24 * 60)] = 15.0,
) -> Response:
    """For every region at ``level`` with sensors (of ``kind``): how many sensors there are,
    how many observed something within ``within_min`` minutes (``fresh``), how many never
    reported, and ``share`` = fresh / sensors."""
    return answer(lambda: _freshness(live, snap, level, kind, within_min))


def _freshness(
    live: LiveState, snap: Snapshot, level: SummaryLevel, kind: str, within_min: float
) -> FreshnessList:
    index = live.index
    col = ROLLUP_LEVELS.index(level.value)
    group = index.site_group[index.sensor_site, col].astype(np.int64)
    mask = group >= 0
    if kind != "all":
        mask &= index.sensor_kind == KIND_CODES[SensorKind(kind)]
    ts = snap.state.ts
    now = now_ms()
    within_ms = within_min * 60_000
    reported = mask & (ts != NO_TIME)
    fresh = reported & (now - ts <= within_ms)
    n = len(index.groups)
    total = np.bincount(group[mask], minlength=n)
    n_rep = np.bincount(group[reported], minlength=n)
    n_fresh = np.bincount(group[fresh], minlength=n)
    oldest = np.full(n, np.iinfo(np.int64).max)
    newest = np.full(n, NO_TIME, dtype=np.int64)
    np.minimum.at(oldest, group[reported], ts[reported])
    np.maximum.at(newest, group[reported], ts[reported])
    items = []
    for gid in sorted(np.flatnonzero(total).tolist(), key=lambda g: index.groups[g].code):
        g = index.groups[gid]
        count, rep, fr = int(total[gid]), int(n_rep[gid]), int(n_fresh[gid])
        items.append(
            RegionFreshness(
                level=g.level,
                code=g.code,
                name=g.name,
                sensors=count,
                fresh=fr,
                reported=rep,
                never=count - rep,
                share=fr / count,
                oldest_ms=int(oldest[gid]) if rep else None,
                newest_ms=int(newest[gid]) if rep else None,
            )
        )
    return FreshnessList(
        level=level.value,
        kind=kind,
        within_s=within_min * 60,
        generated_at=now_iso(),
        items=items,
    )

"""Region freshness (``/v1/freshness``): per region, the share of its sensors whose latest
observation is at most ``within_min`` minutes old, as data (counts and a share), from the
in-memory state. Grafana's platform panels and the bed board read the same numbers."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from cloud.api.auth import require
from cloud.api.auth_roles import Role
from cloud.api.deps import LiveDep, NowDep
from cloud.api.models import ErrorBody, SummaryLevel
from cloud.api.models_ops import FreshnessList, RegionFreshness
from cloud.api.now_cache import AnswerDep
from cloud.api.queries import now_iso
from cloud.api.state import LiveState, Snapshot
from cloud.ingest.aggregate.freshness import region_freshness
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
    got = region_freshness(
        index,
        snap.state.ts,
        level=level.value,
        kind_code=None if kind == "all" else KIND_CODES[SensorKind(kind)],
        now_ms=now_ms(),
        within_ms=within_min * 60_000,
    )
    items = []
    for gid in sorted(got.groups(), key=lambda g: index.groups[g].code):
        g = index.groups[gid]
        count, rep, fr = int(got.sensors[gid]), int(got.reported[gid]), int(got.fresh[gid])
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
                oldest_ms=int(got.oldest_ms[gid]) if rep else None,
                newest_ms=int(got.newest_ms[gid]) if rep else None,
            )
        )
    return FreshnessList(
        level=level.value,
        kind=kind,
        within_s=within_min * 60,
        generated_at=now_iso(),
        items=items,
    )

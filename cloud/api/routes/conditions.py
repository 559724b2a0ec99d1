"""Crowds and queues per site (``/v1/conditions``, ``/v1/conditions/crowd``,
``/v1/conditions/queues``): the lists of ``/v1/crowds`` and ``/v1/queues``, from the same
in-memory state and the same builders (cloud/api/now_sites.py), kept under their first names
for the clients that use them."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from cloud.api.auth import Role, require
from cloud.api.deps import LiveDep, NowDep, SettingsDep
from cloud.api.models import ErrorBody
from cloud.api.models_sites import Conditions, CrowdList, QueueNowList
from cloud.api.now_cache import AnswerDep
from cloud.api.now_sites import crowd_list, queue_list
from cloud.api.queries import now_iso

router = APIRouter(tags=["conditions"], dependencies=[require(Role.PUBLIC)])

_ERRORS: dict[int | str, dict[str, Any]] = {
    503: {"model": ErrorBody, "description": "state not loaded and InfluxDB unreachable"},
}


@router.get("/v1/conditions", response_model=Conditions, responses=_ERRORS)
async def conditions(
    settings: SettingsDep, live: LiveDep, snap: NowDep, answer: AnswerDep
) -> Response:
    """Crowd against health-protocol capacity at every crowd site, and the queue at every
    kiosk site: the lists of ``/v1/conditions/crowd`` and ``/v1/conditions/queues`` in one
    response. Sites without data are listed with nulls and ``stale: true``; ``stale`` means
    the oldest contributing reading is too old."""
    return answer(
        lambda: Conditions(
            stale_after_s=settings.stale_after_s,
            generated_at=now_iso(),
            crowd=crowd_list(settings, live, snap),
            queues=queue_list(settings, live, snap),
        )
    )


@router.get("/v1/conditions/crowd", response_model=CrowdList, responses=_ERRORS)
async def crowd(settings: SettingsDep, live: LiveDep, snap: NowDep, answer: AnswerDep) -> Response:
    """People at every crowd site against its health-protocol capacity (as ``/v1/crowds``)."""
    return answer(lambda: crowd_list(settings, live, snap))


@router.get("/v1/conditions/queues", response_model=QueueNowList, responses=_ERRORS)
async def queues(settings: SettingsDep, live: LiveDep, snap: NowDep, answer: AnswerDep) -> Response:
    """The queue at every kiosk site, with its estimated wait (as ``/v1/queues``)."""
    return answer(lambda: queue_list(settings, live, snap))

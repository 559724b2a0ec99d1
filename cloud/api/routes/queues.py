"""Queues (``/v1/queues``): the queue at every kiosk site now, from the ingester's
``queue_sites`` of the in-memory state, with the estimated wait.

The wait is the ingester's Little's-law estimate (cloud/ingest/aggregate/rollups.py): ``wait_s =
waiting / sum over kiosks of (served - served_prev) / (ts - ts_prev)``, in seconds of the
readings' clock, null until every kiosk of the site has a service rate. ``wait_min`` rounds it
*up* to whole minutes, so a queue that exists never reads "0 min". ``PANTAU_QUEUE_TIME_SCALE``
converts it to the queue's own time when the readings come from a simulator that runs faster
than its timestamps (docs/api.md, "Queues")."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from cloud.api.auth import require
from cloud.api.auth_roles import Role
from cloud.api.deps import LiveDep, NowDep, SettingsDep
from cloud.api.models import ErrorBody
from cloud.api.models_sites import QueueNowList
from cloud.api.now_cache import AnswerDep
from cloud.api.now_sites import queue_list

router = APIRouter(tags=["queues"], dependencies=[require(Role.PUBLIC)])
_ERRORS: dict[int | str, dict[str, Any]] = {
    503: {"model": ErrorBody, "description": "state not loaded and InfluxDB unreachable"},
}


@router.get("/v1/queues", response_model=QueueNowList, responses=_ERRORS)
async def queues(settings: SettingsDep, live: LiveDep, snap: NowDep, answer: AnswerDep) -> Response:
    """Every queue site: people waiting (issued - served, kiosks summed), counters open, and
    the estimated wait in seconds (``wait_s``) and whole minutes rounded up (``wait_min``)."""
    return answer(lambda: queue_list(settings, live, snap))

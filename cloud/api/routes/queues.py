"""Queues (``/v1/queues``): the queue at every kiosk site now, from the ingester's
``queue_sites`` of the in-memory state, with the estimated wait.

The wait is the ingester's Little's-law estimate (cloud/ingest/aggregate/rollups.py): ``wait_s =
waiting / sum over kiosks of (served - served_prev) / (ts - ts_prev)``, in seconds of the
readings' clock, null until every kiosk of the site has a service rate. ``wait_min`` rounds it
*up* to whole minutes, so a queue that exists never reads "0 min". ``PANTAU_QUEUE_TIME_SCALE``
converts it to the queue's own time when the readings come from a simulator that runs faster
than its timestamps (docs/api.md, "Queues")."""

from __future__ import annotations

import math
from typing import Any

from fastapi import APIRouter

from cloud.api.auth import require
from cloud.api.auth_roles import Role
from cloud.api.deps import LiveDep, NowDep, RegistryDep, SettingsDep
from cloud.api.models import ErrorBody
from cloud.api.models_history import QueueNow, QueueNowList
from cloud.api.queries import is_stale, iso_ms, nan_to_none, now_iso
from contract.clock import now_ms
from contract.payload import SensorKind

router = APIRouter(tags=["queues"], dependencies=[require(Role.PUBLIC)])
_ERRORS: dict[int | str, dict[str, Any]] = {
    503: {"model": ErrorBody, "description": "state not loaded and InfluxDB unreachable"},
}


def wait_minutes(wait_s: float | None) -> int | None:
    """Whole minutes, rounded up: 1 s of wait is "1 min", not "0 min"."""
    return None if wait_s is None else math.ceil(wait_s / 60)


@router.get("/v1/queues", response_model=QueueNowList, responses=_ERRORS)
async def queues(
    settings: SettingsDep, registry: RegistryDep, live: LiveDep, snap: NowDep
) -> QueueNowList:
    """Every queue site: people waiting (issued - served, kiosks summed), counters open, and
    the estimated wait in seconds (``wait_s``) and whole minutes rounded up (``wait_min``)."""
    after = settings.stale_after_s
    scale = settings.queue_time_scale
    now = now_ms()
    q = snap.queues
    items = []
    for site_id in dict.fromkeys(s.site for s in registry if s.kind is SensorKind.QUEUE):
        site = registry.sites[site_id]
        row = snap.queue_row.get(live.index.site_pos[site_id])
        vals: dict[str, Any] = {}
        oldest = newest = None
        if row is not None:
            wait = nan_to_none(float(q.wait_s[row]))
            vals = {
                "waiting": int(q.waiting[row]),
                "issued": int(q.issued[row]),
                "served": int(q.served[row]),
                "counters_open": int(q.counters_open[row]),
                "kiosks": int(q.kiosks[row]),
                "wait_s": None if wait is None else wait * scale,
            }
            oldest, newest = int(q.oldest_ms[row]), int(q.newest_ms[row])
        items.append(
            QueueNow(
                site=site.id,
                site_name=site.name,
                site_kind=site.kind.value,
                kelurahan=site.kelurahan,
                kecamatan=registry.kecamatan_of_kelurahan[site.kelurahan].code,
                waiting=vals.get("waiting"),
                issued=vals.get("issued"),
                served=vals.get("served"),
                counters_open=vals.get("counters_open"),
                kiosks=vals.get("kiosks"),
                wait_s=vals.get("wait_s"),
                wait_min=wait_minutes(vals.get("wait_s")),
                observed_at_oldest=iso_ms(oldest),
                observed_at_oldest_ms=oldest,
                observed_at=iso_ms(newest),
                observed_at_ms=newest,
                stale=is_stale(oldest, now=now, stale_after_s=after),
            )
        )
    return QueueNowList(stale_after_s=after, time_scale=scale, generated_at=now_iso(), items=items)

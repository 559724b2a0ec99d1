"""Crowd and queue sites now, built once from a :class:`~cloud.api.state.Snapshot` for every
route that lists them (``/v1/crowds``, ``/v1/queues``, ``/v1/conditions*``).

Every figure is the ingester's (:func:`cloud.ingest.aggregate.crowd_sites` and
:func:`~cloud.ingest.aggregate.queue_sites`, the ``crowd_site``/``queue_site`` points it
writes); this module only picks them out and names them from the registry. The two things it
adds are presentation: the crowd ``status`` band and the queue wait in whole minutes, rounded
up, scaled to the queue's own time (``PANTAU_QUEUE_TIME_SCALE``, docs/api.md "Queues").
"""

from __future__ import annotations

import math
from typing import Any

from city import Registry, Site
from cloud.api.config import ApiSettings
from cloud.api.models_sites import CrowdList, CrowdSite, CrowdStatus, QueueNow, QueueNowList
from cloud.api.queries import is_stale, iso_ms, nan_to_none, now_iso
from cloud.api.registry_views import sites_with
from cloud.api.state import LiveState, Snapshot
from contract.clock import now_ms
from contract.payload import SensorKind

CROWD_HIGH = 0.8
CROWD_OVER = 1.0


def crowd_status(ratio: float | None) -> CrowdStatus | None:
    """``over`` at or above capacity, ``high`` from 80 %, else ``normal``."""
    if ratio is None:
        return None
    if ratio >= CROWD_OVER:
        return CrowdStatus.OVER
    if ratio >= CROWD_HIGH:
        return CrowdStatus.HIGH
    return CrowdStatus.NORMAL


def wait_minutes(wait_s: float | None) -> int | None:
    """Whole minutes, rounded up: 1 s of wait is "1 min", not "0 min"."""
    return None if wait_s is None else math.ceil(wait_s / 60)


def _identity(registry: Registry, site: Site) -> dict[str, Any]:
    return {
        "site": site.id,
        "site_name": site.name,
        "site_kind": site.kind.value,
        "kelurahan": site.kelurahan,
        "kecamatan": registry.kecamatan_of_kelurahan[site.kelurahan].code,
    }


def _times(oldest: int | None, newest: int | None, *, now: int, after: float) -> dict[str, Any]:
    return {
        "observed_at_oldest": iso_ms(oldest),
        "observed_at_oldest_ms": oldest,
        "observed_at": iso_ms(newest),
        "observed_at_ms": newest,
        "stale": is_stale(oldest, now=now, stale_after_s=after),
    }


def crowd_items(live: LiveState, snap: Snapshot, *, after: float) -> list[CrowdSite]:
    """Every crowd site: the ingester's occupancy (gates summed), capacity and ratio, with
    nulls and ``stale`` for a site whose gates never reported."""
    registry = live.index.registry
    c = snap.crowds
    now = now_ms()
    items = []
    for site in sites_with(registry, SensorKind.CROWD):
        row = snap.crowd_row.get(live.index.site_pos[site.id])
        figures: dict[str, Any] = dict.fromkeys(("occupancy", "entries", "exits", "gates"))
        ratio = oldest = newest = None
        if row is not None:
            figures = {name: int(getattr(c, name)[row]) for name in figures}
            ratio = nan_to_none(float(c.ratio[row]))
            oldest, newest = int(c.oldest_ms[row]), int(c.newest_ms[row])
        items.append(
            CrowdSite(
                **_identity(registry, site),
                **figures,
                capacity=site.capacity,
                ratio=ratio,
                percent=None if ratio is None else ratio * 100.0,
                status=crowd_status(ratio),
                **_times(oldest, newest, now=now, after=after),
            )
        )
    return items


def queue_items(live: LiveState, snap: Snapshot, *, after: float, scale: float) -> list[QueueNow]:
    """Every queue site: waiting (issued - served, kiosks summed), counters open and the
    ingester's Little's-law wait times ``scale``; nulls and ``stale`` before any reading."""
    registry = live.index.registry
    q = snap.queues
    now = now_ms()
    items = []
    for site in sites_with(registry, SensorKind.QUEUE):
        row = snap.queue_row.get(live.index.site_pos[site.id])
        names = ("waiting", "issued", "served", "counters_open", "kiosks")
        figures: dict[str, Any] = dict.fromkeys(names)
        wait = oldest = newest = None
        if row is not None:
            figures = {name: int(getattr(q, name)[row]) for name in names}
            raw = nan_to_none(float(q.wait_s[row]))
            wait = None if raw is None else raw * scale
            oldest, newest = int(q.oldest_ms[row]), int(q.newest_ms[row])
        items.append(
            QueueNow(
                **_identity(registry, site),
                **figures,
                wait_s=wait,
                wait_min=wait_minutes(wait),
                **_times(oldest, newest, now=now, after=after),
            )
        )
    return items


def crowd_list(settings: ApiSettings, live: LiveState, snap: Snapshot) -> CrowdList:
    """Every crowd site now."""
    after = settings.stale_after_s
    items = crowd_items(live, snap, after=after)
    return CrowdList(stale_after_s=after, generated_at=now_iso(), items=items)


def queue_list(settings: ApiSettings, live: LiveState, snap: Snapshot) -> QueueNowList:
    """Every queue site now, its wait in the queue's own time."""
    after, scale = settings.stale_after_s, settings.queue_time_scale
    items = queue_items(live, snap, after=after, scale=scale)
    return QueueNowList(stale_after_s=after, time_scale=scale, generated_at=now_iso(), items=items)

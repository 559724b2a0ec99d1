"""Gateways and devices (``/v1/gateways``, ``/v1/gateways/{gateway_id}``): link state, last
seen, spool depth and drops, silent sensors, from each gateway's retained status
(cloud/api/state_gateways.py), with each device's latest stored reading time from the
in-memory state."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, HTTPException, Query, Response, status

from cloud.api.auth import Caller, require
from cloud.api.auth_roles import Role
from cloud.api.deps import LiveDep, NowDep, RegistryDep
from cloud.api.models import ErrorBody, list_envelope
from cloud.api.models_ops import GatewayList, GatewayView
from cloud.api.now_cache import AnswerDep
from cloud.api.queries import now_iso
from cloud.api.registry_views import devices_of
from cloud.api.state import LiveState, Snapshot
from cloud.ingest.aggregate import NO_TIME
from contract.secrets import bounded_echo

router = APIRouter(tags=["gateways"])
#: Gateways per page by default, and at most: a province's gateway holds about 100 devices,
#: so a default page is 2 000 devices (300 KB of JSON; all 80 gateways: 1.2 MB).
PAGE = 20
MAX_PAGE = 1000
_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "cursor not in the list (start again)"},
    404: {"model": ErrorBody, "description": "unknown gateway or site"},
    503: {"model": ErrorBody, "description": "state not loaded and InfluxDB unreachable"},
}


class GatewayState(StrEnum):
    """A gateway's state as ``/v1/gateways`` shows it."""

    ONLINE = "online"
    OFFLINE = "offline"
    UNKNOWN = "unknown"


def _int(value: object) -> int | None:
    return value if isinstance(value, int) else None


def view(gateway_id: str, live: LiveState, snap: Snapshot) -> dict[str, Any]:
    """One gateway of the registry with its latest status (``unknown`` before any), as the
    JSON object of :class:`GatewayView`: plain dicts, no model per device, because a
    province's page holds thousands of devices (docs/performance.md)."""
    registry = live.index.registry
    gw = registry.gateways[gateway_id]
    site = registry.sites[gw.site]
    entry = live.gateways.get(gateway_id)
    st = None if entry is None else entry.status
    stats = {} if st is None else dict(st.stats)
    silent = [] if st is None else list(st.sensors_silent)
    sensors, positions = devices_of(registry, gateway_id)
    observed = snap.state.ts[positions].tolist()
    if st is None:
        devices = [
            {
                "sensor": sensor.id,
                "kind": sensor.kind.value,
                "last_seen_ms": None,
                "observed_at_ms": None if ts == NO_TIME else ts,
                "silent": False,
                "seq_gaps": None,
                "resets": None,
                "skew_ms": None,
            }
            for sensor, ts in zip(sensors, observed, strict=True)
        ]
    else:
        quiet = set(silent)
        devices = [
            {
                "sensor": sensor.id,
                "kind": sensor.kind.value,
                "last_seen_ms": st.sensors_last_seen.get(sensor.id),
                "observed_at_ms": None if ts == NO_TIME else ts,
                "silent": sensor.id in quiet,
                "seq_gaps": st.sensor_seq_gaps.get(sensor.id),
                "resets": st.sensor_resets.get(sensor.id),
                "skew_ms": st.sensor_skew_ms.get(sensor.id),
            }
            for sensor, ts in zip(sensors, observed, strict=True)
        ]
    link = stats.get("link")
    return list_envelope(
        devices,
        gateway=gateway_id,
        site=site.id,
        site_name=site.name,
        state="unknown" if st is None else st.state.value,
        status_ts_ms=None if st is None else st.ts,
        received_at_ms=None if entry is None else entry.received_ms,
        link=link if isinstance(link, str) else None,
        spool_depth=_int(stats.get("spool_depth")),
        spool_dropped=_int(stats.get("spool_dropped_total")),
        clock_offset_ms=None if st is None else st.clock_offset_ms,
        silent=silent,
        stats=stats,
    )


def _state_and_link(live: LiveState, gateway_id: str) -> tuple[str, str | None]:
    entry = live.gateways.get(gateway_id)
    if entry is None:
        return "unknown", None
    link = entry.status.stats.get("link")
    return entry.status.state.value, link if isinstance(link, str) else None


def page_of(ids: list[str], cursor: str | None, limit: int) -> tuple[list[str], str | None]:
    """The ``limit`` ids after ``cursor`` (the first ones without), and the cursor of the
    page after them (None on the last page). An id, not an offset: a gateway added or
    removed by a registry reload does not shift the pages after it."""
    start = 0
    if cursor is not None:
        try:
            start = ids.index(cursor) + 1
        except ValueError:
            raise HTTPException(
                status.HTTP_400_BAD_REQUEST,
                f"cursor {bounded_echo(cursor)} is not a gateway of this list"
                " (it may have been removed); start again without cursor",
            ) from None
    page = ids[start : start + limit]
    more = start + limit < len(ids)
    return page, page[-1] if more and page else None


@router.get("/v1/gateways", response_model=GatewayList, responses=_ERRORS)
async def gateways(
    caller: Annotated[Caller, require(Role.OPS)],
    registry: RegistryDep,
    live: LiveDep,
    snap: NowDep,
    answer: AnswerDep,
    site: Annotated[str | None, Query(description="only this site's gateways")] = None,
    state: Annotated[GatewayState | None, Query(description="only gateways in this state")] = None,
    link: Annotated[
        str | None, Query(max_length=64, description="only gateways reporting this link state")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="gateways per page")] = PAGE,
    cursor: Annotated[
        str | None, Query(max_length=200, description="``next_cursor`` of the previous page")
    ] = None,
) -> Response:
    """The city's gateways (within the key's regions) that match the filters, in registry
    order, with their devices, a page at a time: follow ``next_cursor`` until it is null
    (``total`` says how many match)."""
    if site is not None and site not in registry.sites:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, f"no site {bounded_echo(site)} in {registry.city.name}"
        )

    def build() -> bytes:
        ids = []
        for gw_id, gw in registry.gateways.items():
            if (site is not None and gw.site != site) or not caller.sees(gw_id):
                continue
            if state is not None or link is not None:
                now_state, now_link = _state_and_link(live, gw_id)
                if (state is not None and now_state != state.value) or (
                    link is not None and now_link != link
                ):
                    continue
            ids.append(gw_id)
        page, next_cursor = page_of(ids, cursor, limit)
        items = [view(gw_id, live, snap) for gw_id in page]
        return orjson.dumps(
            list_envelope(items, generated_at=now_iso(), total=len(ids), next_cursor=next_cursor)
        )

    return answer(build)


@router.get(
    "/v1/gateways/{gateway_id}",
    response_model=GatewayView,
    responses=_ERRORS,
    dependencies=[require(Role.OPS, region=("gateway_id",))],
)
async def gateway(
    gateway_id: str, registry: RegistryDep, live: LiveDep, snap: NowDep
) -> GatewayView:
    """One gateway with its devices."""
    if gateway_id not in registry.gateways:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            f"no gateway {bounded_echo(gateway_id)} in {registry.city.name}",
        )
    return GatewayView.model_validate(view(gateway_id, live, snap))

"""Gateways and devices (``/v1/gateways``, ``/v1/gateways/{gateway_id}``): link state, last
seen, spool depth and drops, silent sensors, from each gateway's retained status
(cloud/api/state_gateways.py), with each device's latest stored reading time from the
in-memory state."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Response, status

from cloud.api.auth import Caller, require
from cloud.api.auth_roles import Role
from cloud.api.deps import LiveDep, NowDep, RegistryDep
from cloud.api.models import ErrorBody
from cloud.api.models_ops import Device, GatewayList, GatewayView
from cloud.api.now_cache import AnswerDep
from cloud.api.queries import now_iso
from cloud.api.registry_views import sensors_by_gateway
from cloud.api.state import LiveState, Snapshot
from cloud.ingest.aggregate import NO_TIME
from contract.secrets import bounded_echo

router = APIRouter(tags=["gateways"])
_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "unknown gateway"},
    503: {"model": ErrorBody, "description": "state not loaded and InfluxDB unreachable"},
}


def _int(value: object) -> int | None:
    return value if isinstance(value, int) else None


def view(gateway_id: str, live: LiveState, snap: Snapshot) -> GatewayView:
    """One gateway of the registry with its latest status (``unknown`` before any)."""
    registry = live.index.registry
    gw = registry.gateways[gateway_id]
    site = registry.sites[gw.site]
    entry = live.gateways.get(gateway_id)
    st = None if entry is None else entry.status
    stats = {} if st is None else dict(st.stats)
    silent = [] if st is None else list(st.sensors_silent)
    devices = []
    for sensor in sensors_by_gateway(registry).get(gateway_id, ()):
        ts = int(snap.state.ts[live.index.sensor_pos[sensor.id]])
        devices.append(
            Device(
                sensor=sensor.id,
                kind=sensor.kind.value,
                last_seen_ms=None if st is None else st.sensors_last_seen.get(sensor.id),
                observed_at_ms=None if ts == NO_TIME else ts,
                silent=sensor.id in silent,
                seq_gaps=None if st is None else st.sensor_seq_gaps.get(sensor.id),
                resets=None if st is None else st.sensor_resets.get(sensor.id),
                skew_ms=None if st is None else st.sensor_skew_ms.get(sensor.id),
            )
        )
    link = stats.get("link")
    return GatewayView(
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
        items=devices,
    )


@router.get("/v1/gateways", response_model=GatewayList, responses=_ERRORS)
async def gateways(
    caller: Annotated[Caller, require(Role.OPS)],
    registry: RegistryDep,
    live: LiveDep,
    snap: NowDep,
    answer: AnswerDep,
) -> Response:
    """Every gateway of the city (within the key's regions), in registry order, with its
    devices."""

    def build() -> GatewayList:
        items = [view(gw, live, snap) for gw in registry.gateways if caller.sees(gw)]
        return GatewayList(generated_at=now_iso(), items=items)

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
    return view(gateway_id, live, snap)

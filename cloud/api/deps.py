"""Dependencies the routes declare with ``Annotated``: settings, registry, InfluxDB client,
and the parsing of parameters every bed route shares (bed type, group, region filters).

The getters are ``async`` although they only read ``app.state``: FastAPI runs a plain ``def``
dependency in its thread pool, and four thread hops per request cost a now-endpoint more than
its own work (docs/performance.md)."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status

from city import Registry
from cloud.api.config import ApiSettings
from cloud.api.models import BedGroup
from cloud.api.state import LiveState, Snapshot
from cloud.influx import InfluxHTTP
from contract.beds import BED_GROUPS, BED_TYPES
from contract.secrets import bounded_echo


async def get_settings(request: Request) -> ApiSettings:
    """The settings the app was created with."""
    settings: ApiSettings = request.app.state.settings
    return settings


async def pinned_live(request: Request) -> LiveState:
    """The live state this request reads, and with it the registry, taken once per request
    on the event loop, where a registry reload swaps them too (cloud/api/registry_follow.py):
    a reload never changes the registry under a request."""
    live: LiveState = request.app.state.live
    return live


PinnedLive = Annotated[LiveState, Depends(pinned_live)]


async def get_registry(live: PinnedLive) -> Registry:
    """The city registry in use (loaded at start-up, or swapped in by a reload)."""
    return live.index.registry


async def get_influx(request: Request) -> InfluxHTTP:
    """The InfluxDB client started in the app's lifespan."""
    influx: InfluxHTTP = request.app.state.influx
    return influx


async def get_live(live: PinnedLive) -> LiveState:
    """The in-memory state the now-endpoints read (cloud/api/state.py)."""
    return live


async def get_now(request: Request, live: PinnedLive) -> Snapshot:
    """The current figures. Until the state has been read from InfluxDB once, each request
    tries that first, so an unreachable store is a 503 rather than a city of empty wards."""
    if not live.seeded:
        await asyncio.to_thread(live.seed, request.app.state.influx)
    return live.snapshot()


SettingsDep = Annotated[ApiSettings, Depends(get_settings)]
RegistryDep = Annotated[Registry, Depends(get_registry)]
InfluxDep = Annotated[InfluxHTTP, Depends(get_influx)]
LiveDep = Annotated[LiveState, Depends(get_live)]
NowDep = Annotated[Snapshot, Depends(get_now)]


def valid_bed_types() -> str:
    """The SIRANAP codes, for error messages."""
    return ", ".join(f"{code} ({name})" for code, name in BED_TYPES.items())


def parse_bed_type(raw: str | None, *, allow_all: bool) -> int | None:
    """A SIRANAP code from a query parameter; None for absent (or ``all`` where allowed).

    Raises 422 naming the valid codes for anything else."""
    if raw is None or (allow_all and raw.strip().lower() == "all"):
        return None
    try:
        code = int(raw)
    except ValueError:
        code = -1
    if code not in BED_TYPES:
        also = '"all" or ' if allow_all else ""
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"unknown bed type {bounded_echo(raw)}; use {also}a SIRANAP code: {valid_bed_types()}",
        )
    return code


def bed_type_codes(
    bed_type: str | None, group: BedGroup | None, *, allow_all: bool
) -> list[int] | None:
    """The bed type codes a request asks for (None: every type). ``bed_type`` and ``group``
    exclude each other (400)."""
    if bed_type is not None and group is not None:
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST,
            "give either bed_type or group, not both "
            f"(group {group.value!r} already selects its bed types)",
        )
    if group is not None:
        return sorted(BED_GROUPS[group.value])
    code = parse_bed_type(bed_type, allow_all=allow_all)
    return None if code is None else [code]


def check_region(
    registry: Registry, *, kecamatan: str | None = None, kelurahan: str | None = None
) -> None:
    """404 naming a kecamatan or kelurahan code the city does not have."""
    city = registry.city
    if kecamatan is not None and kecamatan not in {k.code for k in city.kecamatan}:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            f"no kecamatan {bounded_echo(kecamatan)} in {city.name}"
            " (see /v1/regions for the codes)",
        )
    if kelurahan is not None and kelurahan not in registry.kelurahan:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            f"no kelurahan {bounded_echo(kelurahan)} in {city.name}"
            " (see /v1/regions for the codes)",
        )

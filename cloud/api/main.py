"""The app factory: ``create_app(settings)`` builds the FastAPI app without any I/O; the
registry is read and the InfluxDB client started in the app's lifespan."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from city import load_registry
from cloud.api.config import ApiSettings
from cloud.api.routes import beds_router, conditions_router, health_router, regions_router
from cloud.influx import InfluxHTTP
from contract.errors import StorageError

log = logging.getLogger(__name__)

DESCRIPTION = """
Read API for health officers and operations: hospital and isolation-centre beds (BOR per ward,
site and region), crowds against health-protocol capacity, and queues at public offices.

Data comes from InfluxDB as written by the Pantau ingester (see docs/schema.md); names, codes
and the hierarchy come from the city registry. Every reading carries its observation time, and
anything older than the stale limit (`PANTAU_STALE_AFTER_S`) is flagged `stale`.
Errors are `{"detail": "..."}`.
"""


def create_app(settings: ApiSettings | None = None) -> FastAPI:
    """A ready-to-serve app. ``settings`` default to the ``PANTAU_*`` environment."""
    settings = settings if settings is not None else ApiSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.registry = load_registry(settings.city_file)
        influx = InfluxHTTP(
            url=settings.influx_url,
            database=settings.influx_db,
            username=settings.influx_username,
            password=settings.influx_password.get_secret_value()
            if settings.influx_password
            else None,
            token=settings.influx_token.get_secret_value() if settings.influx_token else None,
            timeout=settings.influx_timeout_s,
        )
        app.state.influx = influx.start()
        log.info(
            "API for %s, InfluxDB %s/%s",
            app.state.registry.city.name,
            settings.influx_url,
            settings.influx_db,
        )
        try:
            yield
        finally:
            influx.close()

    app = FastAPI(
        title="Pantau API",
        version="1.0.0",
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.add_exception_handler(StorageError, _storage_unavailable)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    for router in (health_router, regions_router, beds_router, conditions_router):
        app.include_router(router)
    return app


async def _storage_unavailable(request: Request, exc: Exception) -> JSONResponse:
    settings: ApiSettings = request.app.state.settings
    log.warning("InfluxDB unavailable for %s: %s", request.url.path, exc)
    return JSONResponse(
        status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
        content={
            "detail": f"InfluxDB at {settings.influx_url} is unavailable, try again shortly ({exc})"
        },
        headers={"Retry-After": "5"},
    )


async def _invalid_request(request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's list of validation errors, as one sentence a person can read."""
    problems = []
    for err in exc.errors() if isinstance(exc, RequestValidationError) else []:
        loc = [str(p) for p in err.get("loc", ())]
        where = f"{loc[0]} parameter {'.'.join(loc[1:])!r}" if len(loc) > 1 else ".".join(loc)
        got = f" (got {err['input']!r})" if "input" in err and err["input"] is not None else ""
        problems.append(f"{where}: {err.get('msg', 'invalid')}{got}")
    return JSONResponse(
        status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
        content={"detail": "; ".join(problems) or "invalid request"},
    )

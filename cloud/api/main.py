"""The app factory: ``create_app(settings)`` builds the FastAPI app without any I/O; the
registry is read and the InfluxDB client started in the app's lifespan."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from city import Registry, load_registry
from cloud.api import auth, errors
from cloud.api.config import ApiSettings
from cloud.api.live import LiveHub
from cloud.api.now_cache import NowCache
from cloud.api.registry_follow import RegistryFollower
from cloud.api.routes import (
    beds_router,
    conditions_router,
    health_router,
    keys_router,
    regions_router,
)
from cloud.api.routes.board import router as board_router
from cloud.api.routes.stream import router as stream_router
from cloud.api.routes_now import NOW_ROUTERS
from cloud.api.state import LiveState
from cloud.api.state_follow import StateFollower
from cloud.influx import InfluxHTTP
from cloud.registry_watch import RegistryWatch
from contract.errors import StorageError
from contract.secrets import redact_url

log = logging.getLogger(__name__)

DESCRIPTION = """
Read API for health officers and operations: hospital and isolation-centre beds (BOR per ward,
site and region), crowds against health-protocol capacity, and queues at public offices.

Data comes from InfluxDB as written by the Pantau ingester (see docs/schema.md); names, codes
and the hierarchy come from the city registry. Every reading carries its observation time, and
anything older than the stale limit (`PANTAU_STALE_AFTER_S`) is flagged `stale`.
Errors are `{"detail": "..."}`; server errors (5xx) add a `request_id`, also sent as the
`X-Request-ID` header of every response, under which the cause is in the server log.

Send an API key as `Authorization: Bearer <key>`; without one a request has the public role.
Each operation states the role it needs ("**Access:**"); see docs/api.md "Authentication".
"""


def create_app(settings: ApiSettings | None = None, *, registry: Registry | None = None) -> FastAPI:
    """A ready-to-serve app. ``settings`` default to the ``PANTAU_*`` environment; ``registry``
    to the one in ``settings.city_file``, read at start-up (``pantau api run`` reads it first,
    so a bad file is one line rather than a failed lifespan)."""
    settings = settings if settings is not None else ApiSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Stamped before the file is read, so a change made while it loads is not missed.
        watch = RegistryWatch(path=settings.city_file, interval_s=settings.registry_poll_s)
        watch.start()
        app.state.registry = registry if registry is not None else load_registry(settings.city_file)
        influx = InfluxHTTP(
            url=settings.influx_url,
            database=settings.influx_db,
            username=settings.influx_username,
            password=settings.influx_password,
            token=settings.influx_token,
            timeout=settings.influx_timeout_s,
        )
        app.state.influx = influx.start()
        app.state.live = live = LiveState(
            registry=app.state.registry, rebuild_s=settings.now_rebuild_s
        )
        try:
            await asyncio.to_thread(live.seed, influx)
        except StorageError as exc:  # the follower seeds again once it has subscribed
            log.warning("InfluxDB not ready at start-up, current values wait for it: %s", exc)
        log.info(
            "API for %s, InfluxDB %s/%s",
            app.state.registry.city.name,
            redact_url(settings.influx_url),
            settings.influx_db,
        )
        # One broker connection per API process (the broker binds the API's account to one
        # client id): the state follower also feeds the live stream's hub.
        app.state.hub = hub = LiveHub.from_settings(settings, app.state.registry)
        hub.fed = True
        async with hub:
            follower = StateFollower(live=live, settings=settings, influx=influx, hub=hub)
            app.state.follower = follower.start()
            reloads = RegistryFollower(
                app=app, watch=watch, influx=influx, follower=follower, hub=hub
            )
            app.state.registry_follower = reloads
            reloading = asyncio.create_task(reloads.run()) if watch.interval_s > 0 else None
            try:
                with auth.open_keys(app):
                    yield
            finally:
                if reloading is not None:
                    reloading.cancel()
                await asyncio.to_thread(follower.stop)
                influx.close()

    app = FastAPI(
        title="Pantau API",
        version="1.0.0",
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.now_cache = NowCache(ttl_s=settings.now_cache_s)
    errors.install(app)
    auth.install(app, settings)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET"],
            allow_headers=["Authorization"],
            expose_headers=["Retry-After", errors.REQUEST_ID_HEADER],
            max_age=600,
        )
    for router in (health_router, regions_router, beds_router, conditions_router, keys_router):
        app.include_router(router)
    for router in NOW_ROUTERS:
        app.include_router(router)
    for router in (stream_router, board_router):
        app.include_router(router)
    return app

"""The routers that answer from the in-memory state (cloud/api/state.py), added to the app in
one place so main.py needs one line for all of them."""

from __future__ import annotations

from fastapi import APIRouter

from cloud.api.routes.crowds import router as crowds_router
from cloud.api.routes.freshness import router as freshness_router
from cloud.api.routes.gateways import router as gateways_router
from cloud.api.routes.hospitals import router as hospitals_router
from cloud.api.routes.queues import router as queues_router
from cloud.api.routes.siranap import router as siranap_router

NOW_ROUTERS: tuple[APIRouter, ...] = (
    hospitals_router,
    siranap_router,
    freshness_router,
    gateways_router,
    crowds_router,
    queues_router,
)

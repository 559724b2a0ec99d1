"""Liveness for load balancers and ``pantau demo``: is InfluxDB answering?"""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from cloud.api.auth import Role, require
from cloud.api.deps import InfluxDep
from cloud.api.models import Health

router = APIRouter(tags=["health"], dependencies=[require(Role.PUBLIC)])


@router.get(
    "/healthz",
    response_model=Health,
    responses={503: {"model": Health, "description": "InfluxDB does not answer /ping"}},
)
def healthz(influx: InfluxDep, response: Response) -> Health:
    """200 when InfluxDB answers ``/ping``, 503 otherwise."""
    if influx.ping():
        return Health(status="ok", influxdb="ok")
    response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    return Health(status="unavailable", influxdb="unreachable")

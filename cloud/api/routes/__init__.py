"""One router per resource."""

from cloud.api.routes.beds import router as beds_router
from cloud.api.routes.conditions import router as conditions_router
from cloud.api.routes.health import router as health_router
from cloud.api.routes.keys import router as keys_router
from cloud.api.routes.regions import router as regions_router

__all__ = ["beds_router", "conditions_router", "health_router", "keys_router", "regions_router"]

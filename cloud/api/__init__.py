"""The read API for health officers and operations (FastAPI): beds, BOR rollups, crowds,
queues and regions, read from InfluxDB with InfluxQL."""

from cloud.api.config import ApiSettings
from cloud.api.main import create_app

__all__ = ["ApiSettings", "create_app"]

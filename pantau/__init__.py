"""Pantau: the command line, the demo and the local service runners that tie the parts together."""

from pantau.services import InfluxDB, Mosquitto, ServiceError, free_port

__all__ = ["InfluxDB", "Mosquitto", "ServiceError", "free_port"]

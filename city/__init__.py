"""The city registry: who is where, and what the hierarchy above them is."""

from city.registry import (
    DEMO_CITY,
    Gateway,
    Level,
    Region,
    Registry,
    Sensor,
    Site,
    SiteKind,
    load_registry,
)
from contract.yamlfile import read_yaml

__all__ = [
    "DEMO_CITY",
    "Gateway",
    "Level",
    "Region",
    "Registry",
    "Sensor",
    "Site",
    "SiteKind",
    "load_registry",
    "read_yaml",
]

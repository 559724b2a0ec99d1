"""The ingester keeps what start-up built out of the cyclic GC's full collections while it
consumes (docs/adr/0029): paho leaves a reference cycle per message, so collections run
every few hundred messages, and each full one used to walk the whole registry too."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest

from city import Registry
from pantau.services import InfluxDB, Mosquitto
from tests.ingest_support import ingester_thread, settings_for

pytestmark = pytest.mark.integration


def _collected(obj: object) -> bool:
    """``obj`` is in a generation the collector walks (frozen objects are in none)."""
    return any(o is obj for o in gc.get_objects())


def test_start_up_objects_are_frozen_while_consuming_and_thawed_after(
    mosquitto: Mosquitto, influxdb: InfluxDB, city: Registry, tmp_path: Path
) -> None:
    """While the ingester runs, its registry (built before it started) is in the permanent
    generation; once run() returns it is walked again, as before the run."""
    assert _collected(city)
    with ingester_thread(settings_for(mosquitto, influxdb, tmp_path), city):
        assert not _collected(city)
        assert gc.get_freeze_count() > 0
    assert _collected(city)
    assert gc.get_freeze_count() == 0

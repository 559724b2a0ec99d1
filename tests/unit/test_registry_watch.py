"""Noticing a changed city file (cloud/registry_watch.py) and carrying state over to the new
registry (cloud/ingest/remap.py), on real files in a temp dir and a fake clock."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from prometheus_client import CollectorRegistry

from city import DEMO_CITY, Registry, load_registry
from cloud.ingest.aggregate import NO_TIME, SensorState
from cloud.ingest.remap import diff, remap_state
from cloud.ingest.topology import CityIndex
from cloud.registry_watch import RegistryWatch
from tests.ingest_support import wait_for


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def demo_doc() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(DEMO_CITY.read_text(encoding="utf-8"))
    return doc


def write(path: Path, doc: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    tmp.replace(path)


def without_gateway(doc: dict[str, Any], gateway: str) -> dict[str, Any]:
    return {
        **doc,
        "gateways": [g for g in doc["gateways"] if g["id"] != gateway],
        "sensors": [s for s in doc["sensors"] if s["gateway"] != gateway],
    }


@pytest.fixture
def city_file(tmp_path: Path) -> Path:
    path = tmp_path / "city.yaml"
    write(path, without_gateway(demo_doc(), "gw-kariadi"))
    return path


def watch_of(path: Path, clock: Clock, metrics: CollectorRegistry | None = None) -> RegistryWatch:
    watch = RegistryWatch(path=path, interval_s=5.0, metrics=metrics, clock=clock)
    watch.start()
    return watch


def test_an_unchanged_file_is_not_loaded_again(city_file: Path) -> None:
    clock = Clock()
    watch = watch_of(city_file, clock)
    clock.now += 60
    assert watch.poll() is None
    assert (watch.reloads, watch.failures) == (0, 0)


def test_a_replaced_file_is_loaded_once_the_interval_has_passed_and_only_once(
    city_file: Path,
) -> None:
    clock = Clock()
    watch = watch_of(city_file, clock)
    write(city_file, demo_doc())
    clock.now += 4.9
    assert watch.poll() is None  # not due yet
    clock.now += 0.1
    registry = watch.poll()
    assert registry is not None
    assert "gw-kariadi" in registry.gateways
    clock.now += 5
    assert watch.poll() is None
    assert watch.reloads == 1


def test_a_broken_file_is_refused_once_counted_and_a_fixed_one_loads_after_it(
    city_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The refusal names the file, the place in it and the problem, once however often the
    file is looked at; the counter is the one an alert reads."""
    clock = Clock()
    metrics = CollectorRegistry()
    watch = watch_of(city_file, clock, metrics)
    broken = demo_doc()
    broken["sensors"][0]["gateway"] = "gw-nowhere"
    write(city_file, broken)
    with caplog.at_level(logging.ERROR, logger="cloud.registry_watch"):
        for _ in range(3):
            clock.now += 5
            assert watch.poll() is None
    assert [r.getMessage() for r in caplog.records] == [
        "registry reload refused, keeping the registry in use: "
        f"{city_file} at sensors[0].gateway: no gateway 'gw-nowhere'"
    ]
    assert metrics.get_sample_value("pantau_registry_reload_failures_total") == 1.0
    write(city_file, demo_doc())
    clock.now += 5
    assert watch.poll() is not None
    assert metrics.get_sample_value("pantau_registry_reloads_total") == 1.0
    assert (watch.reloads, watch.failures) == (1, 1)


def test_a_deleted_file_is_refused_and_the_registry_in_use_stays(city_file: Path) -> None:
    clock = Clock()
    watch = watch_of(city_file, clock)
    city_file.unlink()
    clock.now += 5
    assert watch.poll() is None
    assert watch.failures == 1


def test_a_request_loads_at_once_even_with_the_periodic_look_off(city_file: Path) -> None:
    """SIGHUP: the operator says the file changed, so it is read even if its stamp did not
    move and no interval passed."""
    clock = Clock()
    watch = RegistryWatch(path=city_file, interval_s=0, clock=clock)
    watch.start()
    write(city_file, demo_doc())
    clock.now += 3600
    assert watch.poll() is None  # 0: no periodic look
    watch.request()
    assert watch.poll() is not None
    watch.request()
    assert watch.poll() is not None  # unchanged, but asked for
    assert watch.reloads == 2


def _reading_state(index: CityIndex, readings: dict[str, tuple[int, int]]) -> SensorState:
    """A state where each named sensor has (ts, first value)."""
    state = SensorState(n_sensors=index.n_sensors)
    rows = np.array([index.sensor_pos[s] for s in readings], dtype=np.int32)
    ts = np.array([t for t, _ in readings.values()], dtype=np.int64)
    values = np.zeros((len(rows), state.values.shape[1]), dtype=np.int64)
    values[:, 0] = [v for _, v in readings.values()]
    state.update(rows, ts, np.zeros(len(rows), np.int64), values)
    return state


def test_state_follows_sensors_by_id_removed_ones_leave_and_added_ones_start_unknown(
    city: Registry, tmp_path: Path
) -> None:
    path = tmp_path / "city.yaml"
    write(path, without_gateway(demo_doc(), "gw-kariadi"))
    small = load_registry(path)
    old, new = CityIndex.from_registry(city), CityIndex.from_registry(small)
    state = _reading_state(old, {"bed-kariadi-icu": (100, 18), "bed-wongso-icu": (200, 5)})

    carried = remap_state(state, old, new)
    assert carried.values.shape[0] == new.n_sensors == old.n_sensors - 6
    wongso = new.sensor_pos["bed-wongso-icu"]
    assert (carried.ts[wongso], carried.values[wongso, 0]) == (200, 5)
    assert int(np.count_nonzero(carried.known)) == 1  # kariadi's ward left with its sensor

    back = remap_state(carried, new, old)
    assert back.ts[old.sensor_pos["bed-kariadi-icu"]] == NO_TIME  # added: unknown until read
    assert back.ts[old.sensor_pos["bed-wongso-icu"]] == 200


def test_the_diff_names_the_gateways_whose_refused_readings_a_change_cures(
    city: Registry, tmp_path: Path
) -> None:
    path = tmp_path / "city.yaml"
    doc = without_gateway(demo_doc(), "gw-kariadi")
    moved = next(s for s in doc["sensors"] if s["id"] == "bed-wongso-hcu")
    write(path, doc)
    before = load_registry(path)
    moved["id"] = "bed-wongso-hcu-2"  # a sensor added to an existing gateway
    write(path, doc)
    middle = load_registry(path)
    change = diff(before, middle)
    assert change.gateways_gaining_sensors == {"gw-wongsonegoro"}
    assert change.added_sensors == {"bed-wongso-hcu-2"}
    assert change.removed_sensors == {"bed-wongso-hcu"}
    change = diff(middle, city)
    assert change.gateways_gaining_sensors == {"gw-kariadi", "gw-wongsonegoro"}
    assert change.added_gateways == {"gw-kariadi"}
    assert str(change) == "+ 1 gateways, + 7 sensors, - 1 sensors"


def test_in_background_mode_a_thread_loads_the_file_and_take_hands_it_over_once(
    city_file: Path,
) -> None:
    """The ingester's mode: the consumer loop only takes what the watching thread loaded."""
    stop = threading.Event()
    watch = RegistryWatch(path=city_file, interval_s=0)
    watch.start(background=stop)
    try:
        assert watch.take() is None
        write(city_file, demo_doc())
        watch.request()
        registry = wait_for(watch.take, "the watching thread's load", timeout=10)
        assert "gw-kariadi" in registry.gateways
        assert watch.take() is None
    finally:
        stop.set()

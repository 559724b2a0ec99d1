"""Rows built as plain dicts (ward rows, cloud/api/ward_rows.py; places, /v1/hospitals) are
exactly their model's JSON: the same fields, types and figures, for what reported and what did
not."""

from __future__ import annotations

import numpy as np

from city import Registry
from cloud.api.models import BedWard
from cloud.api.models_places import BedPlace
from cloud.api.queries import format_ms, format_ms_many
from cloud.api.routes.hospitals import place
from cloud.api.state import LiveState
from cloud.api.ward_rows import ward_rows
from cloud.ingest import SensorState
from cloud.ingest.cluster import deltas_of
from contract.cluster import encode_state_delta


def _kariadi_icu_reported(city: Registry) -> LiveState:
    """The demo city with one reading: bed-kariadi-icu, 18 of 24 occupied, 3 waiting."""
    live = LiveState(registry=city)
    state = SensorState(n_sensors=live.index.n_sensors)
    icu = live.index.sensor_pos["bed-kariadi-icu"]
    state.update(
        np.array([icu], np.int32),
        np.array([1_719_802_800_000], np.int64),
        np.zeros(1, np.int64),
        np.array([[24, 18, 2, 5, 3]], np.int64),
    )
    rows = np.array([icu], np.intp)
    live.merge_payloads([encode_state_delta(d) for d in deltas_of(state, rows, live.digest)])
    return live


def test_a_ward_row_is_the_bed_ward_models_json_reported_or_not(city: Registry) -> None:
    live = _kariadi_icu_reported(city)
    snap = live.snapshot()
    now = 1_719_802_800_000 + 60_000
    got = ward_rows(city, snap, lambda meta: meta["site"] == "rs-kariadi", now=now, after=900)
    assert [r["sensor"] for r in got] == [
        s.id for s in city.doc.sensors if s.site == "rs-kariadi" and s.kind.value == "bed"
    ]
    for row in got:
        assert BedWard.model_validate(row).model_dump(mode="json") == row
    first, second = got[0], got[1]
    assert (first["capacity"], first["occupied"], first["free"], first["waiting"]) == (24, 18, 6, 3)
    assert (first["bor"], first["band"], first["stale"]) == (75.0, "high", False)
    assert first["observed_at"] == "2024-07-01T03:00:00.000Z"
    assert (second["capacity"], second["bor"], second["observed_at_ms"], second["stale"]) == (
        None,
        None,
        None,
        True,
    )


def test_no_ward_reported_yet_gives_null_rows_not_an_error(city: Registry) -> None:
    live = LiveState(registry=city)
    got = ward_rows(city, live.snapshot(), lambda meta: True, now=0, after=900)
    assert len(got) == sum(1 for s in city.doc.sensors if s.kind.value == "bed")
    assert {r["free"] for r in got} == {None}


def test_times_formatted_at_once_read_exactly_as_one_at_a_time() -> None:
    stamps = np.array([0, 999, 1_719_802_800_000, 1_719_802_800_007, 4_102_444_799_999])
    assert format_ms_many(stamps) == [format_ms(int(ms)) for ms in stamps]
    assert format_ms_many(stamps)[2] == "2024-07-01T03:00:00.000Z"


def test_a_place_row_is_the_bed_place_models_json_reported_or_not(city: Registry) -> None:
    live = _kariadi_icu_reported(city)
    snap = live.snapshot()
    now = 1_719_802_800_000 + 60_000
    kariadi = place(city.sites["rs-kariadi"], live, snap, now=now, after=900)
    silent = place(city.sites["iso-tegalsari-rw03"], live, snap, now=now, after=900)
    for row in (kariadi, silent):
        assert BedPlace.model_validate(row).model_dump(mode="json") == row
    assert (kariadi["capacity"], kariadi["free"], kariadi["bor"], kariadi["stale"]) == (
        24,
        6,
        75.0,
        False,
    )
    assert kariadi["groups"][0] == {
        "group": "icu",
        "capacity": 24,
        "occupied": 18,
        "free": 6,
        "waiting": 3,
    }
    assert (silent["capacity"], silent["bor"], silent["stale"]) == (None, None, True)

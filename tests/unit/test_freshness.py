"""Region freshness (cloud/ingest/aggregate/freshness.py) and the ``region_freshness`` points
the ingester stores from it, on the demo city, against a count made sensor by sensor from the
registry."""

from __future__ import annotations

import numpy as np

from city import DEMO_CITY, load_registry
from cloud.ingest.aggregate import NO_TIME
from cloud.ingest.aggregate.freshness import region_freshness
from cloud.ingest.freshness_points import FRESH_WITHIN_MIN, FreshnessPoints, freshness_lines
from cloud.ingest.topology import CityIndex
from contract import KIND_CODES, SensorKind

NOW = 1_764_000_000_000
MIN = 60_000
INDEX = CityIndex.from_registry(load_registry(DEMO_CITY))


def _ages() -> np.ndarray:
    """Every third sensor never reported; the others are 1, 9, 11 or 30 minutes old."""
    ts = np.full(INDEX.n_sensors, NO_TIME, dtype=np.int64)
    for i in range(INDEX.n_sensors):
        if i % 3:
            ts[i] = NOW - (1, 9, 11, 30)[i % 4] * MIN
    return ts


def _by_hand(ts: np.ndarray, kind: SensorKind | None) -> dict[str, tuple[int, int, int]]:
    """kecamatan code -> (sensors, reported, fresh within 10 min), one sensor at a time."""
    reg = INDEX.registry
    out: dict[str, tuple[int, int, int]] = {}
    for i, sensor in enumerate(reg.doc.sensors):
        if kind is not None and sensor.kind is not kind:
            continue
        code = reg.kecamatan_of_kelurahan[reg.sites[sensor.site].kelurahan].code
        n, rep, fresh = out.get(code, (0, 0, 0))
        seen = int(ts[i]) != NO_TIME
        out[code] = (n + 1, rep + seen, fresh + (seen and NOW - int(ts[i]) <= 10 * MIN))
    return out


def test_kecamatan_counts_equal_a_count_sensor_by_sensor() -> None:
    ts = _ages()
    for kind in (None, SensorKind.BED, SensorKind.CROWD):
        got = region_freshness(
            INDEX,
            ts,
            level="kecamatan",
            kind_code=None if kind is None else KIND_CODES[kind],
            now_ms=NOW,
            within_ms=10 * MIN,
        )
        counted = {
            INDEX.groups[g].code: (
                int(got.sensors[g]),
                int(got.reported[g]),
                int(got.fresh[g]),
            )
            for g in got.groups()
        }
        assert counted == _by_hand(ts, kind)
        assert all(INDEX.groups[g].level == "kecamatan" for g in got.groups())


def test_a_sensor_exactly_at_the_window_is_fresh_and_one_ms_older_is_not() -> None:
    ts = np.full(INDEX.n_sensors, NO_TIME, dtype=np.int64)
    ts[0] = NOW - 10 * MIN
    ts[1] = NOW - 10 * MIN - 1
    got = region_freshness(INDEX, ts, level="kota", kind_code=None, now_ms=NOW, within_ms=10 * MIN)
    [city] = got.groups()
    assert (got.sensors[city], got.reported[city], got.fresh[city]) == (INDEX.n_sensors, 2, 1)
    assert (got.oldest_ms[city], got.newest_ms[city]) == (NOW - 10 * MIN - 1, NOW - 10 * MIN)


def test_points_carry_the_counts_and_share_of_every_region_and_kind() -> None:
    ts = _ages()
    lines = freshness_lines(INDEX, ts, NOW)
    by_hand = _by_hand(ts, SensorKind.BED)
    kec_bed = [line for line in lines if ",kind=bed," in line and ",level=kecamatan," in line]
    assert len(kec_bed) == len(by_hand)
    for line in kec_bed:
        code = line.split(",code=", 1)[1].split(",", 1)[0]
        n, rep, fresh = by_hand[code]
        assert (
            f"sensors={n}i,reported={rep}i,fresh={fresh}i,share={fresh / n!r},"
            f"within_s={FRESH_WITHIN_MIN * 60}i {NOW * 1000}"
        ) in line
    city_all = [line for line in lines if ",kind=all," in line and ",level=kota," in line]
    assert len(city_all) == 1
    assert f"sensors={INDEX.n_sensors}i" in city_all[0]


def test_points_are_due_at_the_first_call_and_then_once_per_period() -> None:
    points = FreshnessPoints(every_ms=10_000)
    ts = _ages()
    assert points.due_lines(INDEX, ts, NOW)
    assert points.due_lines(INDEX, ts, NOW + 9_999) == []
    assert points.due_lines(INDEX, ts, NOW + 10_000)

"""Numpy state and rollups equal a slow, obviously correct pure-Python reference."""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from city import Registry
from cloud.ingest import CityIndex, SensorState, bed_rollups, crowd_sites, queue_sites
from cloud.ingest.topology import FACILITIES, MAX_FIELDS
from contract import KIND_FIELDS, SensorKind

Reading = tuple[int, int, list[int]]  # sensor index, ts, values


def _valid_values(kind: SensorKind, a: int, b: int, c: int, d: int, e: int) -> list[int]:
    if kind is SensorKind.BED:
        cap = a
        occ = min(b, cap)
        sus = min(c, occ)
        conf = min(d, occ - sus)
        return [cap, occ, sus, conf, e]
    if kind is SensorKind.QUEUE:
        return [max(a, b), min(a, b), c, 0, 0]
    return [a, b, c, 0, 0]


@st.composite
def windows(draw: st.DrawFn, n_sensors: int, kinds: list[SensorKind]) -> list[list[Reading]]:
    out = []
    for _ in range(draw(st.integers(1, 4))):
        window = []
        for _ in range(draw(st.integers(0, 25))):
            s = draw(st.integers(0, n_sensors - 1))
            ts = draw(st.integers(1_000, 1_020)) * 1000  # few distinct times: many ties
            nums = draw(st.lists(st.integers(0, 60), min_size=5, max_size=5))
            window.append((s, ts, _valid_values(kinds[s], *nums)))
        out.append(window)
    return out


def reference(history: list[Reading]) -> tuple[dict[int, Reading], dict[int, Reading]]:
    """Latest = greatest ts, last arrival among ties; previous = same, strictly older."""
    latest: dict[int, Reading] = {}
    prev: dict[int, Reading] = {}
    by_sensor: dict[int, list[Reading]] = defaultdict(list)
    for r in history:
        by_sensor[r[0]].append(r)
    for s, rs in by_sensor.items():
        top = max(r[1] for r in rs)
        latest[s] = [r for r in rs if r[1] == top][-1]
        older = [r for r in rs if r[1] < top]
        if older:
            t2 = max(r[1] for r in older)
            prev[s] = [r for r in older if r[1] == t2][-1]
    return latest, prev


def _arrays(window: list[Reading]) -> tuple[np.ndarray, ...]:
    s = np.array([r[0] for r in window], dtype=np.int32)
    ts = np.array([r[1] for r in window], dtype=np.int64)
    vals = np.array([r[2] for r in window], dtype=np.int64).reshape(-1, MAX_FIELDS)
    return s, ts, np.zeros(len(window), dtype=np.int64), vals


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_state_and_rollups_match_reference(city: Registry, data: st.DataObject) -> None:
    index = CityIndex.from_registry(city)
    kinds = [s.kind for s in city.doc.sensors]
    wins = data.draw(windows(index.n_sensors, kinds))
    state = SensorState(n_sensors=index.n_sensors)
    history: list[Reading] = []
    for w in wins:
        state.update(*_arrays(w))
        history += w
    latest, prev = reference(history)

    assert sorted(np.flatnonzero(state.known).tolist()) == sorted(latest)
    for s, (_, ts, vals) in latest.items():
        assert state.ts[s] == ts
        assert state.values[s].tolist() == vals
        if s in prev:
            assert state.prev_ts[s] == prev[s][1]
            assert state.prev_values[s].tolist() == prev[s][2]
        else:
            assert state.prev_ts[s] == -1

    # bed rollups, reference by dictionaries
    sensors = city.doc.sensors
    ref: dict[tuple[str, str, str, str], list[int]] = defaultdict(lambda: [0] * 6 + [2**62, -1])
    for s, (_, ts, v) in latest.items():
        sensor = sensors[s]
        if sensor.kind is not SensorKind.BED:
            continue
        site = city.sites[sensor.site]
        cells = [("site", site.id)] + [(r.level.value, r.code) for r in city.regions_of(site.id)]
        for level, code in cells:
            for bt in (str(sensor.bed_type), "all"):
                for fac in (site.kind.value, "all"):
                    acc = ref[(level, code, bt, fac)]
                    for i in range(5):
                        acc[i] += v[i]
                    acc[5] += 1
                    acc[6] = min(acc[6], ts)
                    acc[7] = max(acc[7], ts)
    got = bed_rollups(state, index)
    seen = {}
    for i in range(len(got.group)):
        g = index.groups[got.group[i]]
        bt = "all" if got.bed_type[i] == 0 else str(got.bed_type[i])
        key = (g.level, g.code, bt, FACILITIES[got.facility[i]])
        seen[key] = [
            int(got.capacity[i]),
            int(got.occupied[i]),
            int(got.suspect[i]),
            int(got.confirmed[i]),
            int(got.waiting[i]),
            int(got.sensors[i]),
            int(got.oldest_ms[i]),
            int(got.newest_ms[i]),
        ]
        assert got.free[i] == got.capacity[i] - got.occupied[i]
        if got.capacity[i]:
            assert got.bor[i] == got.occupied[i] * 100.0 / got.capacity[i]
        else:
            assert math.isnan(got.bor[i])
    assert seen == dict(ref)

    # crowd and queue per site
    crowd_ref: dict[str, list[int]] = {}
    queue_ref: dict[str, list[float]] = {}
    for s, (_, ts, v) in sorted(latest.items()):
        sensor = sensors[s]
        if sensor.kind is SensorKind.CROWD:
            acc = crowd_ref.setdefault(sensor.site, [0, 0, 0, 0, 2**62, -1])
            acc[0] += v[2]
            acc[1] += v[0]
            acc[2] += v[1]
            acc[3] += 1
            acc[4], acc[5] = min(acc[4], ts), max(acc[5], ts)
        elif sensor.kind is SensorKind.QUEUE:
            q = queue_ref.setdefault(sensor.site, [0, 0, 0, 0, 0, 0.0, 0])
            q[0] += v[0] - v[1]
            q[1] += v[0]
            q[2] += v[1]
            q[3] += v[2]
            q[4] += 1
            p = prev.get(s)
            if p is not None and ts > p[1] and v[1] >= p[2][1]:
                q[5] += (v[1] - p[2][1]) * 1000.0 / (ts - p[1])
                q[6] += 1
    cs = crowd_sites(state, index)
    assert {
        index.site_ids[cs.site[i]]: [
            int(cs.occupancy[i]),
            int(cs.entries[i]),
            int(cs.exits[i]),
            int(cs.gates[i]),
            int(cs.oldest_ms[i]),
            int(cs.newest_ms[i]),
        ]
        for i in range(len(cs.site))
    } == crowd_ref
    for i in range(len(cs.site)):
        cap = city.sites[index.site_ids[cs.site[i]]].capacity
        assert cs.capacity[i] == cap
        assert cs.ratio[i] == cs.occupancy[i] / cap
    qs = queue_sites(state, index)
    assert sorted(index.site_ids[x] for x in qs.site) == sorted(queue_ref)
    for i in range(len(qs.site)):
        q = queue_ref[index.site_ids[qs.site[i]]]
        assert [
            int(qs.waiting[i]),
            int(qs.issued[i]),
            int(qs.served[i]),
            int(qs.counters_open[i]),
            int(qs.kiosks[i]),
        ] == q[:5]
        if q[6] == q[4] and q[5] > 0:
            assert math.isclose(qs.wait_s[i], q[0] / q[5], rel_tol=1e-12)
        else:
            assert math.isnan(qs.wait_s[i])


def test_littles_law_wait_for_one_kiosk(city: Registry) -> None:
    """20 waiting, 6 served in the last 60 s (0.1/s): the expected wait is 200 s."""
    index = CityIndex.from_registry(city)
    state = SensorState(n_sensors=index.n_sensors)
    q = index.sensor_pos["q-mpp"]
    fields = len(KIND_FIELDS[SensorKind.QUEUE])
    pad = [0] * (MAX_FIELDS - fields)
    state.update(*_arrays([(q, 1_700_000_000_000, [50, 24, 4, *pad])]))
    assert math.isnan(queue_sites(state, index).wait_s[0])  # no service rate yet
    state.update(*_arrays([(q, 1_700_000_060_000, [50, 30, 4, *pad])]))
    qs = queue_sites(state, index)
    assert qs.waiting.tolist() == [20]
    assert qs.wait_s.tolist() == [200.0]
    # A late, older reading never becomes the latest state; it becomes the previous one
    # (the latest strictly older), so the rate is now measured over the last 30 s.
    state.update(*_arrays([(q, 1_700_000_030_000, [45, 27, 4, *pad])]))
    assert state.values[q, :3].tolist() == [50, 30, 4]
    assert state.ts[q] == 1_700_000_060_000
    assert queue_sites(state, index).wait_s.tolist() == [200.0]


def test_state_order_is_the_same_when_times_span_too_far_for_one_sort_key() -> None:
    """Times more than 2**42 ms apart take the three-key sort: same latest and previous."""
    sensor = np.array([1, 0, 1, 1, 0], dtype=np.int32)
    far = 2**43
    for base in (0, far):  # 0: one combined key; far: the fallback
        ts = np.array([5, 7, base + 9, 5, 3], dtype=np.int64)
        vals = np.arange(5 * MAX_FIELDS, dtype=np.int64).reshape(5, MAX_FIELDS)
        state = SensorState(n_sensors=2)
        assert state.update(sensor, ts, np.zeros(5, dtype=np.int64), vals) == 2
        assert state.ts.tolist() == [7, base + 9]
        assert state.values[:, 0].tolist() == [MAX_FIELDS, 2 * MAX_FIELDS]
        # sensor 1's previous: time 5, the later arrival of the two (row 3)
        assert state.prev_ts.tolist() == [3, 5]
        assert state.prev_values[:, 0].tolist() == [4 * MAX_FIELDS, 3 * MAX_FIELDS]

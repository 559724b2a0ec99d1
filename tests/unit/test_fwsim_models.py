"""Device models keep their kind's invariants for any seed, and the same seed gives the same
frames."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from city import Registry
from contract import KIND_FIELDS, FrameDecoder, SensorKind, check_values
from firmware_sim import BedWard, Devices, Firmware, GateCounter, Kiosk, Scenario
from firmware_sim.models import DAY_S

START = 1_709_506_800.0  # 2024-03-04 06:00 WIB
seeds = st.integers(min_value=0, max_value=2**32)
steps_s = st.sampled_from([1.0, 60.0, 600.0, 3600.0])


def _run(model: BedWard | GateCounter | Kiosk, step_s: float, n: int) -> list[tuple[int, ...]]:
    return [model.step(START + i * step_s) for i in range(n)]


@settings(max_examples=40, deadline=None)
@given(seed=seeds, beds=st.integers(1, 80), bed_type=st.sampled_from([5, 7, 12, 26]), dt=steps_s)
def test_a_ward_never_holds_more_patients_than_beds(
    seed: int, beds: int, bed_type: int, dt: float
) -> None:
    ward = BedWard(beds=beds, rng=random.Random(seed), bed_type=bed_type)
    for values in _run(ward, dt, 150):
        capacity, occupied, suspect, confirmed, waiting = values
        assert capacity == beds
        assert 0 <= occupied <= capacity
        assert min(suspect, confirmed, waiting) >= 0
        assert suspect + confirmed <= occupied
        named = dict(zip(KIND_FIELDS[SensorKind.BED], values, strict=True))
        assert check_values(SensorKind.BED, named) is None


@settings(max_examples=40, deadline=None)
@given(seed=seeds, cap=st.integers(1, 3000), market=st.booleans(), dt=steps_s)
def test_a_gate_never_lets_out_more_people_than_came_in(
    seed: int, cap: int, market: bool, dt: float
) -> None:
    gate = GateCounter(gate_capacity=cap, rng=random.Random(seed), market=market)
    previous = (0, 0)
    for entries, exits, occupancy in _run(gate, dt, 150):
        assert entries >= exits >= 0
        assert occupancy == entries - exits
        assert (entries, exits) >= previous  # cumulative counters never go back
        assert exits >= previous[1]
        previous = (entries, exits)


@settings(max_examples=40, deadline=None)
@given(seed=seeds, counters=st.integers(1, 12), dt=steps_s)
def test_a_kiosk_never_serves_more_tickets_than_it_issued(
    seed: int, counters: int, dt: float
) -> None:
    kiosk = Kiosk(counters=counters, rng=random.Random(seed))
    for issued, served, counters_open in _run(kiosk, dt, 150):
        assert 0 <= served <= issued
        assert 0 <= counters_open <= counters


def test_a_kiosk_restarts_its_ticket_numbers_each_day() -> None:
    kiosk = Kiosk(counters=4, rng=random.Random(1))
    noon = kiosk.step(START)
    for i in range(1, 8 * 6):  # 06:00 to 14:00 in 10-minute steps
        noon = kiosk.step(START + i * 600)
    assert noon[0] > 0
    next_morning = kiosk.step(START + DAY_S)
    assert next_morning[0] < noon[0]
    assert next_morning[1] <= next_morning[0]


def test_wards_fill_and_queue_when_admissions_outrun_discharges() -> None:
    """Over seeds, some wards run full and build a waiting list; none overfills."""
    saw_waiting = False
    for seed in range(30):
        ward = BedWard(beds=10, rng=random.Random(seed), bed_type=12)
        for values in _run(ward, 1800.0, 200):
            saw_waiting = saw_waiting or (values[4] > 0 and values[1] == 10)
    assert saw_waiting


@settings(max_examples=25, deadline=None)
@given(seed=seeds)
def test_seq_increases_by_one_per_reading(seed: int) -> None:
    fw = Firmware(sensor="q-1", model=Kiosk(counters=3, rng=random.Random(seed)))
    seqs = [fw.read(START + i * 60, 1_709_506_800_000 + i).seq for i in range(50)]
    assert seqs == list(range(50))


def test_a_sensor_without_a_clock_sends_an_empty_timestamp() -> None:
    fw = Firmware(sensor="q-1", model=Kiosk(counters=3, rng=random.Random(0)), clock=False)
    frame = fw.read(START, 1_709_506_800_000)
    assert frame.ts_ms is None


def _frames(city: Registry, seed: int) -> bytes:
    devices = Devices(registry=city, scenario=Scenario(seed=seed, speedup=300, steps=20))
    return b"".join(e.data for step in range(20) for _, e in devices.emit(step, 1_709_506_800_000))


def test_the_same_seed_gives_identical_frames(city: Registry) -> None:
    first, again = _frames(city, 11), _frames(city, 11)
    assert first == again
    assert first != _frames(city, 12)
    decoder = FrameDecoder()
    frames = decoder.feed(first)
    serial_sensors = sum(1 for s in city if not city.gateways[s.gateway].direct)
    assert len(frames) == 20 * serial_sensors
    assert decoder.stats.frames == len(frames)
    assert decoder.stats.malformed == 0

"""Scenario files load, refuse mistakes with a message that names the place, and scripted
events give exactly the readings a test states."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from city import Registry
from contract import FrameDecoder, SensorKind, SerialFrame
from firmware_sim import Devices, FaultType, Scenario, ScenarioError, load_scenario
from firmware_sim.faults import FaultInjector
from firmware_sim.scenario import Fault, parse_scenario
from pantau.paths import ROOT

SCENARIOS = ROOT / "firmware-sim" / "scenarios"
TS = 1_709_506_800_000


@pytest.mark.parametrize("name", ["demo", "e2e", "faults", "scripted"])
def test_shipped_scenarios_load_and_build_for_the_demo_city(name: str, city: Registry) -> None:
    scenario = load_scenario(SCENARIOS / f"{name}.yaml")
    assert scenario.name == name
    assert Devices(registry=city, scenario=scenario).sensors


def test_demo_runs_until_stopped_and_e2e_is_short() -> None:
    assert load_scenario(SCENARIOS / "demo.yaml").total_steps is None
    e2e = load_scenario(SCENARIOS / "e2e.yaml")
    assert (e2e.total_steps, e2e.interval_s, e2e.faults) == (6, 0.2, [])


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "s.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "where", "words"),
    [
        ("seed: 1\nspeedup: 0\n", "speedup", "greater than 0"),
        ("steps: 3\nduration_s: 5\n", "", "not both"),
        ("faults:\n  - {type: lightning}\n", "faults[0].type", "garbage"),
        ("faults:\n  - {type: garbage, probability: 2}\n", "faults[0].probability", "1"),
        ("interval: 1\n", "interval", "Extra inputs"),
        ("mode: scripted\n", "", "needs a non-empty script"),
        ("script: {q-mpp: [{issue: 1}]}\n", "", "only for mode: scripted"),
        ("seed: [1\n", "line 2", "not valid YAML"),
        ("- 1\n", "", "YAML mapping"),
    ],
)
def test_scenario_mistakes_are_named(tmp_path: Path, text: str, where: str, words: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    assert info.value.path == str(path)
    assert info.value.location.startswith(where)
    assert words in info.value.message


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="cannot read"):
        load_scenario(tmp_path / "nope.yaml")


def test_unknown_sensors_are_refused(city: Registry) -> None:
    scenario = parse_scenario({"clockless": ["bed-nowhere"]}, source="x.yaml")
    with pytest.raises(ScenarioError, match="clockless: no sensor 'bed-nowhere'"):
        Devices(registry=city, scenario=scenario)


def test_a_script_that_breaks_an_invariant_is_refused_before_sending(city: Registry) -> None:
    scenario = parse_scenario(
        {"mode": "scripted", "script": {"crowd-johar-utara": [{"enter": 5}, {"leave": 6}]}},
        source="x.yaml",
    )
    with pytest.raises(ScenarioError) as info:
        Devices(registry=city, scenario=scenario)
    assert info.value.location == "script.crowd-johar-utara[1]"
    assert "leave 6 > people inside 5" in info.value.message


def test_a_script_event_with_a_field_of_another_kind_is_refused(city: Registry) -> None:
    scenario = parse_scenario(
        {"mode": "scripted", "script": {"q-mpp": [{"admit": 1}]}}, source="x.yaml"
    )
    with pytest.raises(ScenarioError, match=r"script\.q-mpp\[0\].*queue"):
        Devices(registry=city, scenario=scenario)


def test_scripted_events_give_the_stated_counts(city: Registry) -> None:
    scenario = load_scenario(SCENARIOS / "scripted.yaml")
    devices = Devices(registry=city, scenario=scenario)
    last: dict[str, SerialFrame] = {}
    for step in range(scenario.total_steps or 0):
        for _, emission in devices.emit(step, TS):
            for frame in FrameDecoder().feed(emission.data):
                last[frame.sensor] = frame
    assert last["bed-kariadi-icu"].values_dict() == {
        "capacity": 24, "occupied": 24, "suspect": 0, "confirmed": 5, "waiting": 1,
    }  # fmt: skip
    assert last["bed-kariadi-icu"].seq == 3
    assert last["crowd-johar-utara"].values == (55, 40, 15)
    assert last["q-mpp"].values == (6, 6, 3)


def _frame(seq: int = 4) -> SerialFrame:
    return SerialFrame("q-mpp", SensorKind.QUEUE, seq, TS, (10, 7, 3))


@pytest.mark.parametrize(
    ("fault", "stat"),
    [
        (FaultType.BAD_CHECKSUM, "bad_checksum"),
        (FaultType.TRUNCATE, "truncated"),
    ],
)
def test_an_invalidated_frame_is_counted_by_the_decoder_and_the_next_one_survives(
    fault: FaultType, stat: str
) -> None:
    for seed in range(50):
        bad = FaultInjector(
            sensor="q-mpp", rules=[Fault(type=fault)], rng=random.Random(seed)
        ).apply(0, _frame())
        good = FaultInjector(sensor="q-mpp", rules=[], rng=random.Random(0)).apply(1, _frame(5))
        assert (bad.frames, bad.invalid, bad.faults) == ((), 1, (fault,))
        decoder = FrameDecoder()
        assert decoder.feed(bad.data + good.data) == [_frame(5)]
        assert getattr(decoder.stats, stat) == 1


def test_a_bit_flip_never_yields_a_valid_frame() -> None:
    for seed in range(300):
        bad = FaultInjector(
            sensor="q-mpp", rules=[Fault(type=FaultType.BIT_FLIP)], rng=random.Random(seed)
        ).apply(0, _frame())
        decoder = FrameDecoder()
        assert decoder.feed(bad.data + b"$") == []
        assert bad.invalid == 1


def test_garbage_and_duplicates_keep_the_frame_valid() -> None:
    rules = [Fault(type=FaultType.GARBAGE, bytes=40), Fault(type=FaultType.DUPLICATE)]
    emission = FaultInjector(sensor="q-mpp", rules=rules, rng=random.Random(3)).apply(0, _frame())
    decoder = FrameDecoder()
    assert decoder.feed(emission.data) == [_frame(), _frame()]
    assert decoder.stats.garbage_bytes == 40
    assert emission.frames == (_frame(), _frame())


def test_silence_and_clock_jump_follow_their_window() -> None:
    rules = [
        Fault(type=FaultType.SILENCE, from_step=2, steps=2),
        Fault(type=FaultType.CLOCK_JUMP, from_step=3, offset_s=3600),
    ]
    injector = FaultInjector(sensor="q-mpp", rules=rules, rng=random.Random(0))
    stamps = [injector.stamp(step, TS) for step in range(6)]
    assert stamps == [TS, TS, TS, TS + 3_600_000, TS + 3_600_000, TS + 3_600_000]
    silent = [bool(injector.apply(step, _frame(step)).data) for step in range(6)]
    assert silent == [True, True, False, False, True, True]


def test_a_scenario_built_in_code_is_the_same_as_from_yaml(tmp_path: Path) -> None:
    path = _write(tmp_path, "seed: 5\nsteps: 3\ninterval_s: 0.5\n")
    loaded = load_scenario(path)
    assert loaded.model_dump(exclude={"name"}) == Scenario(
        seed=5, steps=3, interval_s=0.5
    ).model_dump(exclude={"name"})

"""Scenario files: what the simulator does, from a YAML file a technician can read.

A scenario names a seed (same seed, same readings), how fast simulated time runs, how often
sensors report (wall seconds), how long the run lasts and which faults to inject. With
``mode: scripted`` the readings follow explicit events instead of the device models.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from contract import ConfigFileError
from contract.topics import ID_PATTERN
from contract.yamlfile import read_yaml

SensorId = Annotated[str, Field(pattern=f"^{ID_PATTERN}$")]


class ScenarioError(ConfigFileError):
    """A scenario that cannot run; names the file, the place inside it and the problem."""


class FaultType(StrEnum):
    """What can go wrong on a serial line."""

    GARBAGE = "garbage"  # line noise before a frame (the frame itself stays valid)
    BIT_FLIP = "bit_flip"  # one bit of the frame body flipped: the frame is invalid
    TRUNCATE = "truncate"  # the frame is cut off (sensor reset mid-write): invalid
    BAD_CHECKSUM = "bad_checksum"  # the checksum is wrong: invalid
    DUPLICATE = "duplicate"  # the same frame sent twice (same seq): valid
    SILENCE = "silence"  # the sensor sends nothing (cable pulled); readings still numbered
    CLOCK_JUMP = "clock_jump"  # the sensor's clock jumps by offset_s, and stays jumped
    DRIFT = "drift"  # the sensor's clock runs ppm fast (negative: slow) inside the window
    RESET = "reset"  # the sensor restarts: its sequence starts again at 0
    UNPLUG = "unplug"  # the sensor's serial line disappears for duration_s, then comes back


#: One line per fault type, for ``pantau fwsim faults`` and the README.
FAULT_HELP: dict[FaultType, str] = {
    FaultType.GARBAGE: "noise bytes (never '$' or a line end) before a frame; the frame stays"
    " valid. Field: bytes",
    FaultType.BIT_FLIP: "one bit of the frame body flipped: the frame is invalid",
    FaultType.TRUNCATE: "the frame is cut off before its checksum: invalid",
    FaultType.BAD_CHECKSUM: "the checksum is wrong: invalid",
    FaultType.DUPLICATE: "the same frame (same seq) sent twice",
    FaultType.SILENCE: "nothing is sent; readings are still numbered, so the gateway sees a gap",
    FaultType.CLOCK_JUMP: "the sensor clock jumps by offset_s (once) and stays off. Field:"
    " offset_s",
    FaultType.DRIFT: "the sensor clock gains ppm millionths of a second per second while the"
    " rule applies; the error stays after. Field: ppm",
    FaultType.RESET: "the sensor restarts: seq starts again at 0 (use steps: 1 for one reset)",
    FaultType.UNPLUG: "the sensor's whole serial line vanishes for duration_s wall seconds (the"
    " PTY is closed; frames meanwhile are lost), then a new PTY appears behind the same"
    " --link path. Field: duration_s (use steps: 1 for one unplug)",
}


#: Faults that make the frame itself undecodable (never counted in the ground truth).
INVALIDATING = frozenset({FaultType.BIT_FLIP, FaultType.TRUNCATE, FaultType.BAD_CHECKSUM})


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Fault(_Model):
    """One fault rule. It applies to ``sensors`` (all serial sensors if omitted), to steps
    ``from_step <= step < from_step + steps`` (all if ``steps`` is omitted), to each frame in
    that window with ``probability``."""

    type: FaultType
    sensors: list[SensorId] | None = None
    probability: float = Field(default=1.0, ge=0.0, le=1.0)
    from_step: int = Field(default=0, ge=0)
    steps: int | None = Field(default=None, ge=1)
    #: garbage: how many noise bytes
    bytes: int = Field(default=16, ge=1, le=4096)
    #: clock_jump: seconds added to the sensor's clock (negative: backwards)
    offset_s: int = 0
    #: drift: how fast the sensor clock runs, in millionths (50 = 4.3 s a day; 100000 = 10 %)
    ppm: float = Field(default=0.0, ge=-1_000_000, le=1_000_000)
    #: unplug: wall seconds the line stays away
    duration_s: float = Field(default=5.0, gt=0, le=3600)

    def applies(self, sensor: str, step: int) -> bool:
        """True if ``sensor``'s reading at ``step`` is inside this rule's window."""
        if self.sensors is not None and sensor not in self.sensors:
            return False
        if step < self.from_step:
            return False
        return self.steps is None or step < self.from_step + self.steps


class Scenario(_Model):
    """A validated scenario (see ``firmware-sim/README.md`` for every field)."""

    name: str = "scenario"
    #: where the scenario came from, for error messages
    source: str = Field(default="<memory>", exclude=True)
    mode: Literal["model", "scripted"] = "model"
    seed: int = 0
    #: simulated seconds per wall second; only the models' clock runs faster, never the
    #: timestamps on the frames
    speedup: float = Field(default=1.0, gt=0)
    #: wall seconds between two readings of each sensor
    interval_s: float = Field(default=1.0, gt=0)
    #: readings per sensor; or ``duration_s`` (wall); neither: run until stopped
    steps: int | None = Field(default=None, ge=1)
    duration_s: float | None = Field(default=None, gt=0)
    #: simulated start (site-local morning by default, so the demo starts with activity)
    sim_start: datetime = datetime.fromisoformat("2024-03-04T06:00:00+07:00")
    #: wait this long after start() before the first reading
    start_delay_s: float = Field(default=0.0, ge=0)
    #: a finite run waits at most this long for readers to take the last frames
    drain_timeout_s: float = Field(default=30.0, ge=0)
    #: only these sensors (default: every sensor of the selected gateways)
    sensors: list[SensorId] | None = None
    #: sensors without a clock: their frames carry an empty timestamp field
    clockless: list[SensorId] = Field(default_factory=list)
    faults: list[Fault] = Field(default_factory=list)
    #: scripted mode: sensor id -> one event per reading (see firmware_sim.scripted)
    script: dict[SensorId, list[dict[str, Any]]] | None = None
    #: scripted mode: sensor id -> starting values (e.g. {capacity: 10, occupied: 4})
    initial: dict[SensorId, dict[str, int]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> Scenario:
        if self.steps is not None and self.duration_s is not None:
            raise ValueError("give steps or duration_s, not both")
        if self.sim_start.tzinfo is None:
            raise ValueError("sim_start needs a UTC offset, e.g. 2024-03-04T06:00:00+07:00")
        if self.mode == "scripted":
            if not self.script:
                raise ValueError("mode scripted needs a non-empty script")
            longest = max(len(events) for events in self.script.values())
            if self.steps is not None and self.steps < longest:
                raise ValueError(f"steps {self.steps} < the longest script ({longest} events)")
        elif self.script is not None or self.initial:
            raise ValueError("script and initial are only for mode: scripted")
        return self

    @property
    def finite(self) -> bool:
        """True if the run ends by itself."""
        return self.total_steps is not None

    @property
    def total_steps(self) -> int | None:
        """Readings per sensor, or None for a run until stopped."""
        if self.steps is not None:
            return self.steps
        if self.duration_s is not None:
            return max(1, round(self.duration_s / self.interval_s))
        if self.mode == "scripted" and self.script:
            return max(len(events) for events in self.script.values())
        return None

    @property
    def sim_step_s(self) -> float:
        """Simulated seconds between two readings."""
        return self.interval_s * self.speedup

    def sim_time(self, step: int) -> float:
        """Simulated time (epoch seconds) of reading number ``step``."""
        return self.sim_start.timestamp() + step * self.sim_step_s


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def parse_scenario(raw: Any, *, source: str = "<memory>") -> Scenario:
    """Validate a parsed scenario document; raises :class:`ScenarioError` naming the place."""
    if not isinstance(raw, dict):
        raise ScenarioError(source, "", "a scenario must be a YAML mapping")
    try:
        return Scenario.model_validate(raw).model_copy(update={"source": source})
    except ValidationError as exc:
        first = exc.errors()[0]
        message = str(first["msg"]).removeprefix("Value error, ")
        raise ScenarioError(source, _loc(first["loc"]), message) from None


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file. Every failure is a :class:`ScenarioError` that
    names the file, the place in it and the problem."""
    source = str(path)
    raw = read_yaml(path, ScenarioError)
    scenario = parse_scenario(raw, source=source)
    return scenario.model_copy(update={"name": raw.get("name", Path(path).stem)})

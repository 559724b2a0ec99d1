"""Scripted devices: readings follow explicit events, so a test can state what happened
("admit 3, discharge 1") and know exactly what the pipeline must show."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from contract import SensorKind

Count = Annotated[int, Field(ge=0)]


class _Event(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BedEvent(_Event):
    """Patients admitted and discharged since the last reading; ``suspect``, ``confirmed``
    and ``capacity`` set the new absolute value when given. Admissions that find no free bed
    join the waiting list; beds freed by discharges go to waiting patients first."""

    admit: Count = 0
    discharge: Count = 0
    suspect: Count | None = None
    confirmed: Count | None = None
    capacity: Count | None = None


class CrowdEvent(_Event):
    """People through the gate since the last reading."""

    enter: Count = 0
    leave: Count = 0


class QueueEvent(_Event):
    """Tickets issued and served since the last reading; ``counters`` sets the desks open."""

    issue: Count = 0
    serve: Count = 0
    counters: Count | None = None


EVENT_TYPES: dict[SensorKind, type[_Event]] = {
    SensorKind.BED: BedEvent,
    SensorKind.CROWD: CrowdEvent,
    SensorKind.QUEUE: QueueEvent,
}


class ScriptError(ValueError):
    """An event that would break the device's invariants (message says which)."""


class ScriptedDevice:
    """Applies one event per :meth:`step`; keeps every kind's invariants or raises
    :class:`ScriptError`. After the last event it reports its final state unchanged."""

    def __init__(
        self,
        *,
        kind: SensorKind,
        events: list[_Event],
        initial: dict[str, int] | None = None,
    ) -> None:
        self.kind = kind
        self.events = list(events)
        state = {
            SensorKind.BED: {
                "capacity": 0,
                "occupied": 0,
                "suspect": 0,
                "confirmed": 0,
                "waiting": 0,
            },
            SensorKind.CROWD: {"entries": 0, "exits": 0},
            SensorKind.QUEUE: {"issued": 0, "served": 0, "counters_open": 0},
        }[kind]
        for name, value in (initial or {}).items():
            if name not in state:
                raise ScriptError(f"unknown initial field {name!r} for a {kind.value} sensor")
            state[name] = value
        self.state = state
        self._next = 0
        self._check()

    def step(self, sim_time: float) -> tuple[int, ...]:
        """Apply the next event (if any) and return the values."""
        del sim_time  # scripted devices count events, not time
        if self._next < len(self.events):
            self._apply(self.events[self._next])
            self._next += 1
        return self.values()

    def values(self) -> tuple[int, ...]:
        """The current values in wire order."""
        s = self.state
        if self.kind is SensorKind.BED:
            return (s["capacity"], s["occupied"], s["suspect"], s["confirmed"], s["waiting"])
        if self.kind is SensorKind.CROWD:
            return (s["entries"], s["exits"], s["entries"] - s["exits"])
        return (s["issued"], s["served"], s["counters_open"])

    def _apply(self, event: _Event) -> None:
        s = self.state
        if isinstance(event, BedEvent):
            if event.capacity is not None:
                s["capacity"] = event.capacity
            if event.discharge > s["occupied"]:
                raise ScriptError(f"discharge {event.discharge} > occupied {s['occupied']}")
            s["occupied"] -= event.discharge
            queue = s["waiting"] + event.admit
            placed = min(queue, s["capacity"] - s["occupied"])
            s["occupied"] += max(0, placed)
            s["waiting"] = queue - max(0, placed)
            if event.suspect is not None:
                s["suspect"] = event.suspect
            if event.confirmed is not None:
                s["confirmed"] = event.confirmed
            # Discharged COVID patients leave the suspect/confirmed counts first if the script
            # did not say otherwise, so the counts stay within the occupied beds.
            overflow = s["suspect"] + s["confirmed"] - s["occupied"]
            if overflow > 0 and event.suspect is None and event.confirmed is None:
                cut = min(overflow, s["suspect"])
                s["suspect"] -= cut
                s["confirmed"] -= overflow - cut
        elif isinstance(event, CrowdEvent):
            s["entries"] += event.enter
            if event.leave > s["entries"] - s["exits"]:
                raise ScriptError(
                    f"leave {event.leave} > people inside {s['entries'] - s['exits']}"
                )
            s["exits"] += event.leave
        elif isinstance(event, QueueEvent):
            s["issued"] += event.issue
            if event.serve > s["issued"] - s["served"]:
                raise ScriptError(f"serve {event.serve} > waiting {s['issued'] - s['served']}")
            s["served"] += event.serve
            if event.counters is not None:
                s["counters_open"] = event.counters
        self._check()

    def _check(self) -> None:
        s = self.state
        if self.kind is SensorKind.BED:
            if s["occupied"] > s["capacity"]:
                raise ScriptError(f"occupied {s['occupied']} > capacity {s['capacity']}")
            if s["suspect"] + s["confirmed"] > s["occupied"]:
                raise ScriptError(
                    f"suspect {s['suspect']} + confirmed {s['confirmed']} > "
                    f"occupied {s['occupied']}"
                )
        elif self.kind is SensorKind.CROWD:
            if s["exits"] > s["entries"]:
                raise ScriptError(f"exits {s['exits']} > entries {s['entries']}")
        elif s["served"] > s["issued"]:
            raise ScriptError(f"served {s['served']} > issued {s['issued']}")

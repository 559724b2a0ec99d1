"""Helpers for the spool's unit tests (shared by test_edge_outbox and test_edge_spool_file):
a settable clock and readings of each kind."""

from __future__ import annotations

from contract.payload import ClockSource, Reading, SensorKind
from edge.spool import Outbox

T0 = 1_700_000_000_000


class FakeClock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> int:
        return self.now


def reading(seq: int, sensor: str = "icu-1") -> Reading:
    return Reading(
        sensor=sensor,
        kind=SensorKind.QUEUE,
        ts=T0 + seq,
        seq=seq,
        values={"issued": 10 + seq, "served": seq, "counters_open": 2},
        clock=ClockSource.GATEWAY if seq % 2 else ClockSource.SENSOR,
    )


_VALUES = {
    SensorKind.BED: {"capacity": 40, "occupied": 10, "suspect": 2, "confirmed": 1, "waiting": 3},
    SensorKind.QUEUE: {"issued": 30, "served": 20, "counters_open": 2},
    SensorKind.CROWD: {"entries": 500, "exits": 400, "occupancy": 100},
}
_SENSOR = {SensorKind.BED: "icu-1", SensorKind.QUEUE: "kiosk-1", SensorKind.CROWD: "gate-a"}


def of(kind: SensorKind, *seqs: int) -> list[Reading]:
    """Readings of the one sensor of ``kind`` with these per-sensor seqs."""
    return [
        Reading(sensor=_SENSOR[kind], kind=kind, ts=T0 + s, seq=s, values=_VALUES[kind])
        for s in seqs
    ]


def held(box: Outbox) -> list[tuple[str, int]]:
    """(kind, seq) of every stored reading, in the order take() hands them out."""
    return [(r.kind.value, r.seq) for b in box.take(limit=10_000) for r in b.readings]


def nonzero(stats: dict[str, int]) -> dict[str, int]:
    return {k: v for k, v in stats.items() if v and not k.startswith("spool_depth_")}

"""Free beds and BOR, the one formula for each, and every ward's beds from the latest state:
pure numpy, no I/O. The ingester's raw ``bed`` points and ``bed_rollup`` rows and the read
API's "now" answers (cloud/api/state.py) all come through here, so they cannot disagree::

    free = capacity - occupied
    bor  = occupied x 100 / capacity      [percent; NaN where capacity is 0]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from cloud.ingest.topology import CityIndex
from contract import KIND_CODES, SensorKind

if TYPE_CHECKING:
    from cloud.ingest.aggregate.state import SensorState

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]

_BED = KIND_CODES[SensorKind.BED]


def free_beds(capacity: I64, occupied: I64) -> I64:
    """Free beds: capacity - occupied (negative if a ward reports more patients than beds,
    which is shown, not hidden)."""
    return np.asarray(capacity - occupied, dtype=np.int64)


def bor_percent(occupied: I64, capacity: I64) -> F64:
    """Bed occupancy rate in percent; NaN where there are no beds to occupy."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(capacity > 0, occupied * 100.0 / np.maximum(capacity, 1), np.nan)


@dataclass(frozen=True, kw_only=True)
class WardBeds:
    """One row per bed sensor that has reported; ``sensor`` indexes ``CityIndex.sensor_ids``."""

    sensor: npt.NDArray[np.intp]
    capacity: I64
    occupied: I64
    free: I64
    suspect: I64
    confirmed: I64
    waiting: I64
    bor: F64
    ts: I64


def ward_beds(state: SensorState, index: CityIndex) -> WardBeds:
    """Every reporting bed sensor's latest figures (wire order: capacity, occupied, suspect,
    confirmed, waiting)."""
    sensors = np.flatnonzero(state.known & (index.sensor_kind == _BED))
    vals = state.values[sensors]
    capacity, occupied = vals[:, 0], vals[:, 1]
    return WardBeds(
        sensor=sensors,
        capacity=capacity,
        occupied=occupied,
        free=free_beds(capacity, occupied),
        suspect=vals[:, 2],
        confirmed=vals[:, 3],
        waiting=vals[:, 4],
        bor=bor_percent(occupied, capacity),
        ts=state.ts[sensors],
    )

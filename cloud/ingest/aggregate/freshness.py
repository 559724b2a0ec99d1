"""Region freshness: per region, how many of its sensors observed something within a window.

The one formula for it. The API answers ``/v1/freshness`` with it from its state, and the
ingester stores it as ``region_freshness`` points (cloud/ingest/freshness_points.py) so that
Grafana can chart and alert on it: raw points carry only their sensor (ADR 0028) and InfluxQL
cannot join them to the registry's regions.

A sensor counts in a region when its site belongs to that region at the level asked for. It is
*reported* once it has a latest observation, and *fresh* when that observation is at most
``within_ms`` old at ``now_ms``; ``share`` = fresh / sensors, so a sensor that never reported
lowers the share like a silent one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from cloud.ingest.aggregate.state import NO_TIME
from cloud.ingest.topology import ROLLUP_LEVELS, CityIndex

I64 = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class Freshness:
    """Per rollup group id (``CityIndex.groups``): counts and the oldest/newest latest
    observation; groups of another level, or without sensors of the kind, have ``sensors`` 0."""

    sensors: I64
    reported: I64
    fresh: I64
    #: oldest and newest latest observation (ms); meaningful only where ``reported`` > 0
    oldest_ms: I64
    newest_ms: I64

    def groups(self) -> list[int]:
        """The group ids that have sensors."""
        return [int(g) for g in np.flatnonzero(self.sensors)]


def region_freshness(
    index: CityIndex,
    ts: I64,
    *,
    level: str,
    kind_code: int | None,
    now_ms: int,
    within_ms: float,
) -> Freshness:
    """Freshness of every region at ``level`` (one of ``ROLLUP_LEVELS``) over the sensors of
    ``kind_code`` (``contract.KIND_CODES``; None: every kind), from each sensor's latest
    observation time ``ts`` (``SensorState.ts``, ``NO_TIME`` when it never reported)."""
    col = ROLLUP_LEVELS.index(level)
    group = index.site_group[index.sensor_site, col].astype(np.int64)
    mask = group >= 0
    if kind_code is not None:
        mask &= index.sensor_kind == kind_code
    reported = mask & (ts != NO_TIME)
    fresh = reported & (now_ms - ts <= within_ms)
    n = len(index.groups)
    oldest = np.full(n, np.iinfo(np.int64).max, dtype=np.int64)
    newest = np.full(n, NO_TIME, dtype=np.int64)
    np.minimum.at(oldest, group[reported], ts[reported])
    np.maximum.at(newest, group[reported], ts[reported])
    return Freshness(
        sensors=np.bincount(group[mask], minlength=n).astype(np.int64),
        reported=np.bincount(group[reported], minlength=n).astype(np.int64),
        fresh=np.bincount(group[fresh], minlength=n).astype(np.int64),
        oldest_ms=oldest,
        newest_ms=newest,
    )

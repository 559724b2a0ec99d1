"""``region_freshness`` points: every region's freshness, stored for Grafana's board and alert.

Raw points carry only their sensor (ADR 0028) and InfluxQL cannot join them to the registry's
regions, so the ingester, which holds every sensor's latest observation time, writes the share
itself: every ``every_ms`` (10 s, like ``ingest_health``), for each rollup level and sensor
kind (and ``all``), one point per region that has such sensors, with the formula of
cloud/ingest/aggregate/freshness.py. The points are written on the loop's clock even while no
message arrives, which is exactly when freshness falls. A scale-out member holds the group's
whole state, so each writes the same figures (one series per region; the latest wins).
"""

from __future__ import annotations

from cloud.influx import FieldValue, format_line, series_key
from cloud.ingest.aggregate.freshness import I64, region_freshness
from cloud.ingest.health import DEFAULT_EVERY_MS
from cloud.ingest.topology import ROLLUP_LEVELS, CityIndex
from cloud.storage_schema import Measurement
from contract import KIND_CODES

#: A sensor is fresh when its latest observation is at most this old: the window of the
#: freshness alert and board (pantau/grafana). The API's ``/v1/freshness`` asks for any window.
FRESH_WITHIN_MIN = 10
#: ``kind`` tag values: every sensor kind, then each kind.
KINDS: tuple[tuple[str, int | None], ...] = (
    ("all", None),
    *((kind.value, code) for kind, code in KIND_CODES.items()),
)


def freshness_lines(index: CityIndex, ts: I64, now_ms: int) -> list[str]:
    """The ``region_freshness`` points of every region at ``now_ms``, from the latest
    observation time of each sensor (``SensorState.ts``)."""
    within_ms = FRESH_WITHIN_MIN * 60_000
    lines = []
    for level in ROLLUP_LEVELS:
        for kind, code in KINDS:
            got = region_freshness(
                index, ts, level=level, kind_code=code, now_ms=now_ms, within_ms=within_ms
            )
            for gid in got.groups():
                g = index.groups[gid]
                sensors, fresh = int(got.sensors[gid]), int(got.fresh[gid])
                fields: dict[str, FieldValue] = {
                    "sensors": sensors,
                    "reported": int(got.reported[gid]),
                    "fresh": fresh,
                    "share": fresh / sensors,
                    "within_s": within_ms // 1000,
                }
                tags = {"level": g.level, "code": g.code, "name": g.name, "kind": kind}
                key = series_key(Measurement.REGION_FRESHNESS, tags)
                lines.append(format_line(key, fields, now_ms * 1000))
    return lines


class FreshnessPoints:
    """Hands out the points when a period has ended (or none was written yet)."""

    def __init__(self, *, every_ms: int = DEFAULT_EVERY_MS) -> None:
        self._every_ms = every_ms
        self._last_ms: int | None = None

    def due_lines(self, index: CityIndex, ts: I64, now_ms: int) -> list[str]:
        if self._last_ms is not None and now_ms - self._last_ms < self._every_ms:
            return []
        self._last_ms = now_ms
        return freshness_lines(index, ts, now_ms)

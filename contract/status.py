"""The stats a gateway may report in its status, and the type of each.

A status is a contract, not free text: the ingester turns each numeric stat into a field of the
``gateway_status`` measurement, and every distinct name it ever writes is a field key InfluxDB
keeps for good (one status with 5 000 made-up keys used to add 5 000 of them). So only the
names below are stored. A stat not listed here is dropped and counted
(``pantau_ingest_status_stats_dropped_total``), never refused: an agent newer than the cloud
may report more, and its status must still show it online. A *listed* stat of the wrong type is
a schema violation, as a mistyped reading is.

The names are what ``edge.agent.EdgeAgent.status`` reports (a test keeps the two in step):
the serial decoder's counters (:class:`contract.serial_frame.FrameStats`), the agent's and its
spool's counters, and the uplink's state.

Every other field is validated as strictly as a reading: integers are JSON integers (``"ts":
"1"`` is refused), ids are ids. The status time is not range-checked like a reading's: the
point is stamped on receipt, and a gateway whose clock reset to 1970 must still be seen online
(its ``clock_offset_ms`` tells the operator why its readings are refused).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import fields
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, StrictInt

from contract.payload import Identifier, SensorKind, Version, _Strict
from contract.serial_frame import FrameStats


class StatType(StrEnum):
    """How a stat's value is typed on the wire (and in InfluxDB)."""

    COUNT = "count"  # a JSON integer, 0 <= n < 2**63: an InfluxDB integer field
    SECONDS = "seconds"  # a finite JSON number >= 0 (an integer is taken as its float)
    TEXT = "text"  # a JSON string: shown by `pantau edge status`, never stored


#: Spool lanes (one per sensor kind) and why readings leave the spool unsent: the agent reports
#: ``spool_depth_<lane>``, ``spool_dropped_<why>_<lane>`` and the sums over each.
_LANES = tuple(kind.value for kind in SensorKind)
_DROP_REASONS = ("full", "expired")

_COUNTS = (
    # serial decoding, summed over ports, and the readers' own counters
    *(f.name for f in fields(FrameStats)),
    "rejected",
    "opens",
    "open_failures",
    "ports",
    "ports_open",
    # publishing
    "batches_sent",
    "batches_acked",
    "readings_acked",
    "resent_batches",
    "publish_errors",
    "connects",
    "commands",
    "in_flight",
    # the spool
    "spool_depth",
    "spool_high_water",
    "spool_quarantined",
    "spool_dropped_total",
    *(f"spool_depth_{lane}" for lane in _LANES),
    *(f"spool_dropped_{why}" for why in _DROP_REASONS),
    *(f"spool_dropped_{lane}" for lane in _LANES),
    *(f"spool_dropped_{why}_{lane}" for why in _DROP_REASONS for lane in _LANES),
    # the uplink (link_since is a time in ms since the epoch)
    "link_since",
    "link_reconnects",
    "link_losses",
    "link_stalls",
    # the sensors' stream health
    "sensors",
    "sensors_silent",
    "sensors_skewed",
    "seq_gaps",
    "sensor_resets",
    "duplicates",
    "clock_jumps",
)

#: Every stat name a status may carry, and its type.
STAT_TYPES: Mapping[str, StatType] = {
    **dict.fromkeys(_COUNTS, StatType.COUNT),
    "spool_oldest_age_s": StatType.SECONDS,
    "link_for_s": StatType.SECONDS,
    "link_stall_silence_s": StatType.SECONDS,
    "link": StatType.TEXT,
    "link_reason": StatType.TEXT,
    "link_loss_reason": StatType.TEXT,
}

#: Largest integer an InfluxDB integer field holds.
_INT64_MAX = 2**63 - 1

StatValue = int | float | str


def check_stat(name: str, value: Any) -> StatValue:
    """The value of known stat ``name`` as stored; raises ValueError (naming the stat, never
    echoing the value) if it has the wrong type or range."""
    kind = STAT_TYPES[name]
    if kind is StatType.TEXT:
        if type(value) is not str:
            raise ValueError(f"stats.{name} must be a string")
        return value
    if type(value) is int and 0 <= value <= _INT64_MAX:
        # A SECONDS stat that happens to be whole is still a float: InfluxDB fixes a field's
        # type on its first write, and the next status must not be refused for a type change.
        return value if kind is StatType.COUNT else float(value)
    if kind is StatType.SECONDS and type(value) is float and math.isfinite(value) and value >= 0:
        return value
    what = "an integer >= 0" if kind is StatType.COUNT else "a number >= 0"
    raise ValueError(f"stats.{name} must be {what}")


def known_stats(stats: Mapping[str, Any]) -> tuple[dict[str, StatValue], int]:
    """The known stats of ``stats``, each checked by :func:`check_stat`, and how many unknown
    names were dropped."""
    kept = {name: check_stat(name, value) for name, value in stats.items() if name in STAT_TYPES}
    return kept, len(stats) - len(kept)


def _stats_of(value: Any) -> Any:
    # Unknown names are dropped before validation (they are not refused, see the module
    # docstring); the ingester counts them from the raw document with known_stats.
    if not isinstance(value, dict):
        raise ValueError("stats must be an object")  # noqa: TRY004 - pydantic wants ValueError
    return known_stats(value)[0]


#: A non-negative int64, as InfluxDB stores integers.
Count = Annotated[StrictInt, Field(ge=0, le=_INT64_MAX)]
#: Any int64 (times in ms, clock offsets).
Int64 = Annotated[StrictInt, Field(ge=-_INT64_MAX - 1, le=_INT64_MAX)]


class GatewayState(StrEnum):
    ONLINE = "online"
    OFFLINE = "offline"


class GatewayStatus(_Strict):
    """Retained on ``.../status``; the broker publishes the offline form as the last-will."""

    v: Version = 1
    gw: Identifier
    state: GatewayState
    ts: Annotated[Count, Field(description="when the status was made (a last-will: connect)")]
    #: the stats of STAT_TYPES the gateway reports (unknown names are dropped on validation)
    stats: Annotated[dict[str, StatValue], BeforeValidator(_stats_of)] = Field(default_factory=dict)
    #: sensor id -> last time (ms) the gateway decoded a frame from it
    sensors_last_seen: dict[Identifier, Int64] = Field(default_factory=dict)
    #: gateway clock minus NTP time (ms); absent when the gateway cannot tell
    clock_offset_ms: Int64 | None = None
    #: sensor id -> that sensor's clock minus the gateway's (ms), from its last stamped frame
    sensor_skew_ms: dict[Identifier, Int64] = Field(default_factory=dict)
    #: sensors heard before (or configured) whose last frame is too old
    sensors_silent: list[Identifier] = Field(default_factory=list)
    #: sensor id -> readings missing from its sequence, and times its sequence restarted
    sensor_seq_gaps: dict[Identifier, Count] = Field(default_factory=dict)
    sensor_resets: dict[Identifier, Count] = Field(default_factory=dict)

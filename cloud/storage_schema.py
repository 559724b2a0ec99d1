"""The storage schema in one place: every measurement, tag and field the ingester writes to
InfluxDB, and the retention policies it keeps them in.

The writer (``cloud.ingest.writer``, ``.health``), the storage set-up (``cloud.ingest.schema``,
``.seed``) and the API's InfluxQL name measurements through :class:`Measurement`. The Grafana
builders (``pantau.grafana``) keep their InfluxQL readable as text; a test checks every
measurement and field their queries read against :data:`SCHEMA`, as it checks the writer's
lines and docs/schema.md (tests/unit/test_storage_schema.py). A new field is added here first.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from contract import KIND_FIELDS, SensorKind


class Measurement(StrEnum):
    """Every measurement Pantau stores."""

    # raw readings, one point per accepted reading (named after their sensor kind)
    BED = "bed"
    CROWD = "crowd"
    QUEUE = "queue"
    # aggregates, one point per entity per rollup bucket
    BED_ROLLUP = "bed_rollup"
    CROWD_SITE = "crowd_site"
    QUEUE_SITE = "queue_site"
    # where each sensor is (the registry's answer, for queries that cannot join: Grafana)
    SENSOR_PLACE = "sensor_place"
    # operations
    DEAD_LETTER = "dead_letter"
    GATEWAY_STATUS = "gateway_status"
    INGEST_HEALTH = "ingest_health"
    REGION_FRESHNESS = "region_freshness"


#: The raw measurement of each sensor kind.
RAW: dict[SensorKind, Measurement] = {
    SensorKind.BED: Measurement.BED,
    SensorKind.CROWD: Measurement.CROWD,
    SensorKind.QUEUE: Measurement.QUEUE,
}


@dataclass(frozen=True, slots=True)
class Series:
    """A measurement's tag keys and field keys (in the order the writer emits fields)."""

    tags: tuple[str, ...]
    fields: tuple[str, ...]
    #: further field keys come from a fixed list elsewhere (``gateway_status``: the numeric
    #: stats of ``contract.STAT_TYPES``)
    open_fields: bool = False


_SITE_TAGS = ("site", "site_name", "kelurahan", "kecamatan")
_TIMES = ("oldest_ms", "newest_ms")

#: Raw point fields per kind, in the order the writer emits them: exactly what the device sent
#: (``contract.KIND_FIELDS``) and its reading ``seq``; nothing derived (docs/adr/0028).
BED_FIELDS = (*KIND_FIELDS[SensorKind.BED], "seq")
CROWD_FIELDS = (*KIND_FIELDS[SensorKind.CROWD], "seq")
QUEUE_FIELDS = (*KIND_FIELDS[SensorKind.QUEUE], "seq")
#: The only tag of a raw point: site, region, ward, bed type and gate come from the registry
#: at query time (the API's CityIndex; Grafana's ``sensor_place``), ADR 0028.
RAW_TAGS = ("sensor",)
#: ``sensor_place`` tags: where a sensor is, as the registry says (a tag is left out where it
#: does not apply: ``ward``/``bed_type`` for beds, ``gate`` for crowd gates).
PLACE_TAGS = (
    "sensor",
    "kind",
    *_SITE_TAGS,
    "site_kind",
    "ward",
    "bed_type",
    "gate",
)
#: Rollup fields: the integers, then the float that is absent when undefined, then the times.
BED_ROLLUP_INTS = ("capacity", "occupied", "free", "suspect", "confirmed", "waiting", "sensors")
CROWD_SITE_INTS = ("occupancy", "capacity", "entries", "exits", "gates")
QUEUE_SITE_INTS = ("waiting", "issued", "served", "counters_open", "kiosks")

SCHEMA: dict[Measurement, Series] = {
    Measurement.BED: Series(tags=RAW_TAGS, fields=BED_FIELDS),
    Measurement.CROWD: Series(tags=RAW_TAGS, fields=CROWD_FIELDS),
    Measurement.QUEUE: Series(tags=RAW_TAGS, fields=QUEUE_FIELDS),
    Measurement.SENSOR_PLACE: Series(tags=PLACE_TAGS, fields=("registered",)),
    Measurement.BED_ROLLUP: Series(
        tags=("level", "code", "name", "bed_type", "facility"),
        fields=(*BED_ROLLUP_INTS, "bor", *_TIMES),
    ),
    Measurement.CROWD_SITE: Series(
        tags=(*_SITE_TAGS, "site_kind"), fields=(*CROWD_SITE_INTS, "ratio", *_TIMES)
    ),
    Measurement.QUEUE_SITE: Series(
        tags=(*_SITE_TAGS, "site_kind"), fields=(*QUEUE_SITE_INTS, "wait_s", *_TIMES)
    ),
    Measurement.DEAD_LETTER: Series(
        tags=("reason", "gateway"), fields=("count", "topic", "detail")
    ),
    Measurement.GATEWAY_STATUS: Series(
        tags=("gateway", "site"), fields=("online", "state"), open_fields=True
    ),
    Measurement.REGION_FRESHNESS: Series(
        tags=("level", "code", "name", "kind"),
        fields=("sensors", "reported", "fresh", "share", "within_s"),
    ),
    Measurement.INGEST_HEALTH: Series(
        tags=("ingester",),
        fields=(
            "readings",
            "messages",
            "dead_letters",
            "unacked",
            "readings_per_s",
            "lag_p50_s",
            "lag_p99_s",
            "lag_max_s",
        ),
    ),
}

#: The default retention policy (raw readings, per-flush aggregates, statuses, dead letters).
#: Keeping InfluxDB's own ``autogen`` as the default means every query without a policy, the
#: API's and Grafana's, reads the same place; only its duration is set.
RAW_RP = "autogen"
#: Where the continuous queries write their downsampled copies.
DOWNSAMPLED_RP = "downsampled"
#: Bookkeeping that must outlive the data's retention (duration INF): the schema version
#: marker (cloud/ingest/migrations) and ``sensor_place``, both at time 0.
META_RP = "pantau_meta"

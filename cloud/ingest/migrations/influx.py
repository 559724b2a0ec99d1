"""Migrations of the InfluxDB database the ingester writes.

The version marker is one point, ``schema_version`` (field ``version``) at time 0 in the
retention policy ``pantau_meta`` (duration INF, so the marker never expires with the data).
A database without it is version 1.

Versions:

1. the layout of the release before (git ``5ecc6cb``): the measurements, tags, retention
   policies and continuous queries of docs/schema.md. That is still today's layout (the
   retention policies and continuous queries are reconciled by
   :func:`cloud.ingest.schema.apply_schema` at every start anyway);
2. raw points tagged by ``sensor`` only, without the derived fields
   (:mod:`cloud.ingest.migrations.rawtags`, docs/adr/0028-raw-points-tagged-by-sensor.md).
"""

from __future__ import annotations

from cloud.influx import InfluxHTTP, format_line, ident, series_key
from cloud.ingest.migrations.base import Applied, MigrationError, Step, run_steps
from cloud.ingest.migrations.rawtags import raw_by_sensor
from cloud.storage_schema import META_RP

MARKER = "schema_version"
STORE = "InfluxDB"

INFLUX_STEPS: tuple[Step[InfluxHTTP], ...] = (
    Step(version=2, name="raw points tagged by sensor only", apply=raw_by_sensor),
)
#: The version this release writes.
INFLUX_VERSION = INFLUX_STEPS[-1].version if INFLUX_STEPS else 1


def _has_meta_rp(influx: InfluxHTTP) -> bool:
    return META_RP in {
        str(row["name"])
        for s in influx.query(f"SHOW RETENTION POLICIES ON {ident(influx.database)}")
        for row in s.rows()
    }


def _ensure_meta_rp(influx: InfluxHTTP) -> None:
    if not _has_meta_rp(influx):
        influx.execute(
            [
                f"CREATE RETENTION POLICY {ident(META_RP)} ON {ident(influx.database)} "
                "DURATION INF REPLICATION 1"
            ]
        )


def influx_version(influx: InfluxHTTP) -> int:
    """The database's version (1 when it has no marker). The database must exist."""
    if not _has_meta_rp(influx):
        return 1
    q = f"SELECT last(version) FROM {ident(META_RP)}.{ident(MARKER)}"  # noqa: S608
    for series in influx.query(q):
        for row in series.rows():
            value = row.get("last")
            if not isinstance(value, int):
                raise MigrationError(STORE, f"{META_RP}.{MARKER} holds {value!r}, not a version")
            return value
    return 1


def _stamp(influx: InfluxHTTP, version: int) -> None:
    _ensure_meta_rp(influx)
    influx.write_to_policy(
        [format_line(series_key(MARKER, {}), {"version": version}, 0)], rp=META_RP
    )


def migrate_influx(influx: InfluxHTTP) -> Applied:
    """Bring the database to :data:`INFLUX_VERSION` and make sure the marker says so. Needs
    the rights :func:`cloud.ingest.schema.apply_schema` needs (it creates a retention policy
    the first time)."""
    current = influx_version(influx)
    applied = run_steps(
        store=STORE,
        target=influx,
        current=current,
        steps=INFLUX_STEPS,
        latest=INFLUX_VERSION,
        stamp=_stamp,
    )
    if not applied.steps and current == INFLUX_VERSION:
        _stamp(influx, INFLUX_VERSION)  # idempotent: the same point at time 0
    return applied

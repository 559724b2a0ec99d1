"""The storage schema the ingester owns: retention policies, downsampling continuous queries and
the series budget. docs/schema.md explains each; this module is what makes it true.

:func:`apply_schema` runs in ``pantau ingest init-db`` (as InfluxDB's admin) and is
idempotent: it creates what is missing, alters what differs and leaves the rest. The ingester
runs :func:`ensure_storage` at start: with an account that may not change the schema (the
least-privilege writer, docs/adr/0020) it only checks, and refuses to start in one sentence
when ``init-db`` was not run. Statements go through ``cloud.influx`` (the only module that
speaks to InfluxDB).
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections import Counter
from dataclasses import dataclass

from city import Registry, SiteKind
from cloud.influx import InfluxHTTP, ident
from cloud.ingest.migrations import migrate_influx
from cloud.storage_schema import DOWNSAMPLED_RP, RAW_RP, Measurement
from contract import ConfigError, SensorKind, StorageError

log = logging.getLogger(__name__)

#: What InfluxDB answers an account that may not do what it asked: 401 bad credentials, 403 a
#: statement beyond its privileges (or no admin account yet).
_REFUSED = frozenset({401, 403})

#: Our continuous queries are named ``pantau_<measurement>_<every>_<digest>``; anything else
#: with that prefix that is not wanted any more is dropped.
CQ_PREFIX = "pantau_"

#: measurement -> downsampled fields: (aggregate, field, name in the downsampled measurement).
#: Levels keep their last value in the bucket; peaks keep their maximum, because a bucket's
#: last value hides the moment a ward was full.
DOWNSAMPLE: dict[Measurement, tuple[tuple[str, str, str], ...]] = {
    Measurement.BED: (
        ("last", "capacity", "capacity"),
        ("last", "occupied", "occupied"),
        ("max", "occupied", "occupied_max"),
        ("last", "suspect", "suspect"),
        ("last", "confirmed", "confirmed"),
        ("last", "waiting", "waiting"),
    ),
    Measurement.BED_ROLLUP: (
        ("last", "capacity", "capacity"),
        ("last", "occupied", "occupied"),
        ("max", "occupied", "occupied_max"),
        ("last", "free", "free"),
        ("last", "suspect", "suspect"),
        ("last", "confirmed", "confirmed"),
        ("last", "waiting", "waiting"),
        ("last", "sensors", "sensors"),
        ("mean", "bor", "bor"),
        ("max", "bor", "bor_max"),
    ),
    Measurement.CROWD_SITE: (
        ("last", "occupancy", "occupancy"),
        ("max", "occupancy", "occupancy_max"),
        ("last", "capacity", "capacity"),
        ("mean", "ratio", "ratio"),
        ("max", "ratio", "ratio_max"),
        ("last", "entries", "entries"),
        ("last", "exits", "exits"),
    ),
    Measurement.QUEUE_SITE: (
        ("last", "waiting", "waiting"),
        ("max", "waiting", "waiting_max"),
        ("last", "issued", "issued"),
        ("last", "served", "served"),
        ("last", "counters_open", "counters_open"),
        ("mean", "wait_s", "wait_s"),
        ("max", "wait_s", "wait_s_max"),
    ),
    Measurement.DEAD_LETTER: (("sum", "count", "count"),),
}

_DURATION = re.compile(r"^(?:([1-9][0-9]*)([smhdw])|INF)$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def _seconds(duration: str) -> float:
    m = _DURATION.fullmatch(duration)
    if m is None:
        raise ValueError(f"not an InfluxQL duration: {duration!r}")
    if duration == "INF":
        return float("inf")
    return int(m.group(1)) * _SECONDS[m.group(2)]


def shard_duration(duration: str) -> str:
    """InfluxDB's own rule for a shard group's length: 1h below 2 days, 1d up to 6 months, 7d
    beyond (a shard must not outlive its retention)."""
    s = _seconds(duration)
    if s < 2 * 86400:
        return "1h"
    return "1d" if s <= 182 * 86400 else "7d"


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """One retention policy of the database."""

    name: str
    duration: str
    default: bool = False

    def statement(self, database: str, *, exists: bool) -> str:
        """CREATE (or ALTER, if it ``exists``) this policy on ``database``."""
        verb = "ALTER" if exists else "CREATE"
        body = f"{verb} RETENTION POLICY {ident(self.name)} ON {ident(database)} "
        body += f"DURATION {self.duration} "
        if not exists:
            body += "REPLICATION 1 "
        body += f"SHARD DURATION {shard_duration(self.duration)}"
        return body + (" DEFAULT" if self.default else "")


@dataclass(frozen=True, slots=True)
class ContinuousQuery:
    """A downsampling query: ``measurement`` in the raw RP to the same name in the downsampled
    RP, one point per ``every`` bucket and series (``GROUP BY *`` keeps every tag)."""

    database: str
    measurement: Measurement
    every: str

    def select(self, where: str = "") -> str:
        """The ``SELECT ... INTO`` of the query, optionally with a ``WHERE`` (by hand runs)."""
        fields = ", ".join(
            f"{agg}({ident(field)}) AS {ident(name)}"
            for agg, field, name in DOWNSAMPLE[self.measurement]
        )
        db = ident(self.database)
        into = f"{db}.{ident(DOWNSAMPLED_RP)}.{ident(self.measurement)}"
        source = f"{db}.{ident(RAW_RP)}.{ident(self.measurement)}"
        where_part = f" WHERE {where}" if where else ""
        # Identifiers are quoted by ident(); nothing here comes from a request.
        return (
            f"SELECT {fields} INTO {into} FROM {source}{where_part} "  # noqa: S608
            f"GROUP BY time({self.every}), *"
        )

    def select_between(self, start_ms: int, end_ms: int) -> str:
        """The query's ``SELECT ... INTO`` over ``[start_ms, end_ms)``: what InfluxDB runs for
        those buckets, runnable by hand (backfill, tests)."""
        return self.select(f"time >= {int(start_ms)}ms AND time < {int(end_ms)}ms")

    @property
    def name(self) -> str:
        """Stable while the query is unchanged; a changed query gets a new name, so
        :func:`apply_schema` replaces it instead of keeping a stale one."""
        digest = hashlib.sha256(self.select().encode()).hexdigest()[:8]
        return f"{CQ_PREFIX}{self.measurement}_{self.every}_{digest}"

    def statement(self) -> str:
        """``CREATE CONTINUOUS QUERY`` for this query."""
        return (
            f"CREATE CONTINUOUS QUERY {ident(self.name)} ON {ident(self.database)} "
            f"BEGIN {self.select()} END"
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class StorageSchema:
    """The retention policies and continuous queries one database should have."""

    database: str
    retention: str = "30d"
    downsampled_retention: str = "730d"
    every: str = "5m"

    @property
    def policies(self) -> tuple[RetentionPolicy, ...]:
        """The raw (default) and the downsampled policy."""
        return (
            RetentionPolicy(RAW_RP, self.retention, default=True),
            RetentionPolicy(DOWNSAMPLED_RP, self.downsampled_retention),
        )

    @property
    def continuous_queries(self) -> tuple[ContinuousQuery, ...]:
        """One downsampling query per measurement of :data:`DOWNSAMPLE`."""
        return tuple(ContinuousQuery(self.database, m, self.every) for m in DOWNSAMPLE)


def apply_schema(influx: InfluxHTTP, schema: StorageSchema) -> list[str]:
    """Make the database's retention policies and continuous queries match ``schema``;
    returns the statements it ran (none when everything already matched). The database must
    exist."""
    ran = plan_schema(influx, schema)
    influx.execute(ran)
    return ran


def ensure_storage(influx: InfluxHTTP, schema: StorageSchema) -> list[str]:
    """The ingester's start-up step: the database and ``schema`` are in place afterwards, or
    :class:`ConfigError` says in one sentence why not. What is missing is created only when
    the account may (development's open server, an admin); the least-privilege writer
    (docs/adr/0020) finds everything made by ``pantau ingest init-db`` and changes nothing.
    Returns the statements it ran. Unreachable-server errors propagate (retryable)."""
    try:
        ran = create_database(influx, schema.database)
        planned = plan_schema(influx, schema)
        influx.execute(planned)
        # Versioned layout (cloud/ingest/migrations): pending steps run here, with the
        # rights init-db's account has; the writer finds the marker init-db made.
        log.info("%s", migrate_influx(influx).describe())
    except StorageError as exc:
        if exc.status not in _REFUSED:
            raise
        what = "refused the credentials" if exc.status == 401 else "refused a statement"
        raise ConfigError(
            f"InfluxDB {what} while checking database {schema.database!r} and its retention"
            f" policies ({exc}): run `pantau ingest init-db` as the admin account once, and"
            " give the ingester the writer account it creates (docs/operations.md)"
        ) from None
    return ran + planned


def create_database(influx: InfluxHTTP, database: str) -> list[str]:
    """Create ``database`` unless it exists (asking first: a non-admin may not even run an
    idempotent ``CREATE DATABASE``); returns the statement run, if any."""
    names = {str(row[0]) for s in influx.query("SHOW DATABASES") for row in s.values}
    ran = [] if database in names else [f"CREATE DATABASE {ident(database)}"]
    influx.execute(ran)
    return ran


def plan_schema(influx: InfluxHTTP, schema: StorageSchema) -> list[str]:
    """The statements that would make the database match ``schema`` (none when it does);
    only reads (``SHOW``), so any account with READ on the database may ask."""
    db = schema.database
    ran: list[str] = []
    existing = {
        str(row["name"]): row
        for s in influx.query(f"SHOW RETENTION POLICIES ON {ident(db)}")
        for row in s.rows()
    }
    for rp in schema.policies:
        row = existing.get(rp.name)
        if row is not None and _same_policy(row, rp):
            continue
        ran.append(rp.statement(db, exists=row is not None))
    cqs = {
        str(row["name"])
        for s in influx.query("SHOW CONTINUOUS QUERIES")
        if s.name == db
        for row in s.rows()
    }
    wanted = {cq.name: cq for cq in schema.continuous_queries}
    ran += [
        f"DROP CONTINUOUS QUERY {ident(name)} ON {ident(db)}"
        for name in sorted(cqs)
        if name.startswith(CQ_PREFIX) and name not in wanted
    ]
    ran += [cq.statement() for name, cq in wanted.items() if name not in cqs]
    return ran


def _same_policy(row: dict[str, object], rp: RetentionPolicy) -> bool:
    want_s = _seconds(rp.duration)
    got_s = _influx_duration_s(str(row.get("duration", "")))
    same_shard = _influx_duration_s(str(row.get("shardGroupDuration", ""))) == _seconds(
        shard_duration(rp.duration)
    )
    return got_s == want_s and same_shard and bool(row.get("default")) == rp.default


def _influx_duration_s(text: str) -> float:
    """Seconds of an InfluxDB-rendered duration (``720h0m0s``; ``0s`` is infinite)."""
    parts = re.findall(r"(\d+)([hms])", text)
    total = sum(int(n) * _SECONDS[u] for n, u in parts)
    return float("inf") if total == 0 else float(total)


def series_budget(registry: Registry) -> dict[str, int]:
    """Series the data measurements of ``registry`` reach once every sensor has reported,
    per measurement, by the formula of docs/schema.md ("Series budget"). Plain Python over
    the registry, independent of the numpy code that writes the points, so a test can hold
    one against the other.

    * ``bed``/``crowd``/``queue``: one series per sensor of that kind (every tag is a
      function of the sensor).
    * ``bed_rollup``: per rollup group g (each bed site, and each region that contains one):
      ``|P_g| + |T_g| + |F_g| + 1``, where T_g is the set of bed types in g, F_g the set of
      facility kinds and P_g the set of (type, facility) pairs that occur: the cells
      (type, facility), (type, all), (all, facility) and (all, all).
    * ``crowd_site``/``queue_site``: one series per site with a sensor of that kind.
    """
    kinds = Counter(s.kind for s in registry.doc.sensors)
    pairs: dict[tuple[str, str], set[tuple[int, str]]] = {}
    for sensor in registry.doc.sensors:
        if sensor.kind is not SensorKind.BED:
            continue
        site = registry.sites[sensor.site]
        regions = registry.regions_of(site.id)
        groups = [("site", site.id)] + [(r.level.value, r.code) for r in regions]
        cell = (sensor.bed_type or 0, site.kind.value)
        for g in groups:
            pairs.setdefault(g, set()).add(cell)
    facility_kinds = {SiteKind.HOSPITAL.value, SiteKind.ISOLATION_CENTRE.value}
    rollup = 0
    for cells in pairs.values():
        p = {c for c in cells if c[1] in facility_kinds}
        types = {c[0] for c in cells}
        facilities = {c[1] for c in p}
        rollup += len(p) + len(types) + len(facilities) + 1

    def sites_with(kind: SensorKind) -> int:
        return len({s.site for s in registry.doc.sensors if s.kind is kind})

    return {
        Measurement.BED: kinds[SensorKind.BED],
        Measurement.CROWD: kinds[SensorKind.CROWD],
        Measurement.QUEUE: kinds[SensorKind.QUEUE],
        Measurement.BED_ROLLUP: rollup,
        Measurement.CROWD_SITE: sites_with(SensorKind.CROWD),
        Measurement.QUEUE_SITE: sites_with(SensorKind.QUEUE),
    }

"""The API's "now": every sensor's latest state held in memory and kept fresh, so current
values are answered without an InfluxDB scan per request.

Where it comes from: at start-up (and after every MQTT (re)subscription, see
cloud/api/state_follow.py) the state is seeded from InfluxDB with the ingester's own
:func:`cloud.ingest.seed.bootstrap_state`; in between, it merges the state deltas the ingesters
publish on ``contract.topics.ingest_state`` (PSD1, ADR 0006) with the ingesters' own join
(:mod:`cloud.ingest.cluster`). Merging is commutative, associative and idempotent, so seeding
after subscribing can only add what a missed delta held; nothing is applied twice wrongly.

What it answers: a :class:`Snapshot`, immutable, rebuilt lazily after a change. Every figure in
it comes from the ingester's math (:mod:`cloud.ingest.wards` for a ward's free beds and BOR,
:mod:`cloud.ingest.aggregate` for the rollups): the API computes no BOR or free count of its own.

Change events (for the live stream): :meth:`LiveState.subscribe` gives an async iterator of
:class:`Change` for the calling event loop; see its docstring for the contract.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from functools import cached_property
from typing import Self

import numpy as np

from city import Registry
from cloud.api.state_gateways import GatewayBook
from cloud.influx import InfluxHTTP
from cloud.ingest.aggregate import (
    BedLayouts,
    BedRollups,
    CrowdSites,
    QueueSites,
    SensorState,
    bed_rollups,
    crowd_sites,
    queue_sites,
)
from cloud.ingest.cluster import Rows, changed_sensors, fits, merge_rows
from cloud.ingest.remap import remap_state
from cloud.ingest.seed import bootstrap_state
from cloud.ingest.topology import MAX_FIELDS, CityIndex
from cloud.ingest.wards import WardBeds, ward_beds
from contract.clock import now_ms
from contract.cluster import StateDelta, decode_state_delta, registry_digest
from contract.errors import PayloadError, StorageError

log = logging.getLogger(__name__)

#: InfluxDB answers this until the ingester has created the database: no data yet, not an error.
_NO_DATABASE = "database not found"


@dataclass(frozen=True, slots=True, kw_only=True)
class Change:
    """The state changed. ``version`` counts changes (1, 2, ...; a gap means this listener
    missed events, see :meth:`LiveState.subscribe`); ``sensors`` are the ids whose latest or
    previous reading changed; ``source`` is ``delta`` (an ingester's state delta), ``seed``
    (read from InfluxDB), ``status`` (a gateway's retained status, named in ``gateways``) or
    ``registry`` (:meth:`LiveState.reloaded`: sensors and sites may have come or gone);
    ``at_ms`` is when the API applied it."""

    version: int
    sensors: tuple[str, ...]
    source: str
    at_ms: int
    #: with ``source`` ``status``: the gateways whose retained status changed
    gateways: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Snapshot:
    """Everything the now-endpoints read, as of ``version``. Row lookups: ``ward_row`` maps a
    sensor index to its row in ``wards``; ``bed_row`` maps (rollup group, bed type slot,
    facility) to its row in ``beds``; ``crowd_row``/``queue_row`` map a site index."""

    version: int
    built_at_ms: int
    seeded: bool
    state: SensorState
    wards: WardBeds
    beds: BedRollups
    crowds: CrowdSites
    queues: QueueSites
    bed_row: dict[tuple[int, int, int], int]
    crowd_row: dict[int, int]
    queue_row: dict[int, int]

    @cached_property
    def bed_columns(self) -> dict[str, list[int]]:
        """``beds``' count columns as Python lists (made on first use): routes sum a few rows
        at a time, which numpy scalars make slower than plain ints."""
        b = self.beds
        names = ("capacity", "occupied", "free", "suspect", "confirmed", "waiting", "sensors")
        return {name: getattr(b, name).tolist() for name in names}

    @cached_property
    def ward_row(self) -> dict[int, int]:
        """Sensor index -> its row in ``wards`` (made on first use: the routes gather rows
        by ``np.searchsorted`` on ``wards.sensor``, so most snapshots never need it)."""
        return {s: i for i, s in enumerate(self.wards.sensor.tolist())}

    @classmethod
    def build(
        cls,
        state: SensorState,
        index: CityIndex,
        *,
        version: int,
        seeded: bool,
        beds: BedRollups | None = None,
    ) -> Self:
        """Derive every figure from ``state`` (which the snapshot then owns). ``beds``: the bed
        rollups of ``state`` when the caller has them (:class:`LiveState` computes them with
        its sorted cell layout); else the ingester's ``bed_rollups`` from scratch."""
        wards = ward_beds(state, index)
        beds = bed_rollups(state, index) if beds is None else beds
        crowds = crowd_sites(state, index)
        queues = queue_sites(state, index)
        keys = zip(beds.group.tolist(), beds.bed_type.tolist(), beds.facility.tolist(), strict=True)
        return cls(
            version=version,
            built_at_ms=now_ms(),
            seeded=seeded,
            state=state,
            wards=wards,
            beds=beds,
            crowds=crowds,
            queues=queues,
            bed_row={k: i for i, k in enumerate(keys)},
            crowd_row={s: i for i, s in enumerate(crowds.site.tolist())},
            queue_row={s: i for i, s in enumerate(queues.site.tolist())},
        )


@dataclass(eq=False)
class Changes:
    """One listener's change events (an async iterator, bounded). Close it (or use it as an
    async context manager) when done."""

    _owner: LiveState
    _loop: asyncio.AbstractEventLoop
    _queue: asyncio.Queue[Change]
    #: events dropped because this listener fell ``maxsize`` behind
    missed: int = field(default=0)

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Change:
        return await self._queue.get()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop receiving events."""
        self._owner._drop(self)

    def _offer(self, change: Change) -> None:
        # Runs on the listener's loop: a slow listener loses events, never blocks the follower.
        try:
            self._queue.put_nowait(change)
        except asyncio.QueueFull:
            self.missed += 1


class LiveState:
    """The latest state of every sensor of ``registry``, merged from seeds and deltas.
    Thread-safe: the follower thread writes, request handlers read snapshots.

    ``rebuild_s`` bounds how often a snapshot is rebuilt while changes keep coming (ADR 0025):
    a snapshot younger than that is served although the state moved on, so under the
    ingesters' five deltas a second the figures (and every cached answer, keyed by the
    snapshot's version) are rebuilt at most once per ``rebuild_s``, at most that late. The
    first change after a quieter spell is rebuilt at once. 0 (the default) rebuilds after
    every change."""

    def __init__(self, *, registry: Registry, rebuild_s: float = 0.0) -> None:
        self.index = CityIndex.from_registry(registry)
        self.rebuild_ms = int(rebuild_s * 1000)
        self.digest = registry_digest(self.index.sensor_ids)
        #: (level, region code or site id) -> rollup group (index into ``index.groups``)
        self.group_ids = {(g.level, g.code): i for i, g in enumerate(self.index.groups)}
        self._state = SensorState(n_sensors=self.index.n_sensors)
        self._lock = threading.Lock()
        self._version = 0
        self._seeded = False
        self._snapshot: Snapshot | None = None
        #: the bed rollup cells, sorted once while the same bed sensors report
        self._layouts = BedLayouts(index=self.index)
        self._listeners: list[Changes] = []
        #: deltas refused (not PSD1, or from an ingester with another registry)
        self.refused = 0
        #: every gateway's latest retained status (cloud/api/state_gateways.py)
        self.gateways = GatewayBook()

    def reloaded(self, registry: Registry) -> LiveState:
        """The state of ``registry``, carried over from this one (cloud/ingest/remap.py:
        removed sensors leave every figure, new ones start unknown until seeded), sharing its
        listeners and gateway statuses, and continuing its version count. This object keeps
        the old registry for the requests already reading it (cloud/api/registry_follow.py
        swaps them). Thread-safe: it reads this state under its lock."""
        new = LiveState(registry=registry, rebuild_s=self.rebuild_ms / 1000)
        with self._lock:
            new._state = remap_state(self._state, self.index, new.index)
            new._lock, new._listeners, new.gateways = self._lock, self._listeners, self.gateways
            new._seeded, new.refused = self._seeded, self.refused
            new._version = self._version + 1
            change = Change(version=new._version, sensors=(), source="registry", at_ms=now_ms())
        new._announce(change)
        return new

    @property
    def version(self) -> int:
        """How many changes have been applied."""
        return self._version

    @property
    def seeded(self) -> bool:
        """True once the state has been read from InfluxDB at least once."""
        return self._seeded

    def snapshot(self) -> Snapshot:
        """The current figures (at most ``rebuild_s`` late); cheap when nothing changed since
        the last call."""
        snap = self._snapshot
        if snap is not None and self._current(snap):
            return snap
        with self._lock:
            snap = self._snapshot
            if snap is None or not self._current(snap):
                state = self._state.copy()
                beds = bed_rollups(state, self.index, self._layouts)
                snap = Snapshot.build(
                    state, self.index, version=self._version, seeded=self._seeded, beds=beds
                )
                self._snapshot = snap
            return snap

    def _current(self, snap: Snapshot) -> bool:
        if snap.version == self._version:
            return True
        # Serve a young snapshot while changes stream in; never one from before the seed.
        return snap.seeded == self._seeded and now_ms() - snap.built_at_ms < self.rebuild_ms

    def seed(self, influx: InfluxHTTP) -> int:
        """Merge every sensor's latest stored reading from InfluxDB (a kiosk's previous one
        too); returns how many sensors changed. Raises :class:`StorageError` when InfluxDB
        cannot answer; a database that does not exist yet is no data."""
        fresh = SensorState(n_sensors=self.index.n_sensors)
        try:
            bootstrap_state(influx, self.index, fresh)
        except StorageError as exc:
            if _NO_DATABASE not in str(exc):
                raise
            log.info("database %s does not exist yet: no data to seed", influx.database)
        known = np.flatnonzero(fresh.known)
        rows = (known.astype(np.int32), fresh.ts[known], fresh.seq[known], fresh.values[known])
        # The previous readings (kiosks) go first so the join sees them as older.
        has_prev = known[fresh.prev_ts[known] >= 0]
        if len(has_prev):
            self._apply(
                (
                    has_prev.astype(np.int32),
                    fresh.prev_ts[has_prev],
                    np.zeros(len(has_prev), np.int64),
                    fresh.prev_values[has_prev],
                ),
                source="seed",
                seeding=True,
            )
        return self._apply(rows, source="seed", seeding=True)

    def merge_payloads(self, payloads: list[bytes]) -> int:
        """Merge PSD1 state deltas as received; returns how many sensors changed. A payload
        that is not a delta, or comes from a registry other than ours, is refused and logged."""
        deltas: list[StateDelta] = []
        for raw in payloads:
            try:
                delta = decode_state_delta(raw)
            except PayloadError as exc:
                log.warning("refused a state delta: %s", exc)
                self.refused += 1
                continue
            if not fits(
                delta, digest=self.digest, n_sensors=self.index.n_sensors, fields=MAX_FIELDS
            ):
                log.error(
                    "refused a state delta from an ingester with another registry (digest %s, "
                    "ours %s): the API must load the ingesters' city file",
                    delta.digest.hex(),
                    self.digest.hex(),
                )
                self.refused += 1
                continue
            deltas.append(delta)
        if not deltas:
            return 0
        with self._lock:
            rows = merge_rows(deltas, self._state)
        return self._apply(rows, source="delta")

    def _apply(
        self,
        rows: Rows,
        *,
        source: str,
        seeding: bool = False,
    ) -> int:
        with self._lock:
            before = self._state.copy()
            self._state.update(*rows)
            changed = changed_sensors(self._state, before)
            if seeding:
                self._seeded = True
            if not len(changed):
                return 0
            self._version += 1
            change = Change(
                version=self._version,
                sensors=tuple(self.index.sensor_ids[i] for i in changed.tolist()),
                source=source,
                at_ms=now_ms(),
            )
        self._announce(change)
        return len(changed)

    def offer_status(self, topic: str, payload: bytes) -> None:
        """Take a gateway's retained status (from the follower) and announce the change."""
        gateway = self.gateways.offer(topic, payload)
        if gateway is None:
            return
        with self._lock:
            self._version += 1
            change = Change(
                version=self._version,
                sensors=(),
                source="status",
                at_ms=now_ms(),
                gateways=(gateway,),
            )
        self._announce(change)

    def _announce(self, change: Change) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener._loop.call_soon_threadsafe(listener._offer, change)
            except RuntimeError:  # its loop has closed: it will never read again
                self._drop(listener)

    def subscribe(self, *, maxsize: int = 1024) -> Changes:
        """Change events for the running event loop, from now on. Each :class:`Change` says
        which sensors changed; read the figures with :meth:`snapshot`. A listener more than
        ``maxsize`` events behind loses the newest (``Changes.missed`` counts them, and the
        next event's ``version`` jumps): re-read the snapshot then. Must be called from
        inside the event loop that will iterate it."""
        listener = Changes(self, asyncio.get_running_loop(), asyncio.Queue(maxsize))
        with self._lock:
            self._listeners.append(listener)
        return listener

    def _drop(self, listener: Changes) -> None:
        with self._lock:
            if listener in self._listeners:
                self._listeners.remove(listener)

    async def changes(self) -> AsyncIterator[Change]:
        """:meth:`subscribe` as an async generator that closes itself."""
        async with self.subscribe() as events:
            async for change in events:
                yield change

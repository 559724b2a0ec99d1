"""A new registry in a running ingester: swapped in between windows, then the readings the old
one refused for want of it replayed from the dead-letter store, in process.

Called by the consumer loop (``Ingester._consume``) between two windows, so no window is ever
decoded with one registry and aggregated with another. The swap:

* renumbers the state to the new registry (:func:`cloud.ingest.remap.remap_state`): sensors
  in both keep their latest and previous readings, removed ones drop out of every rollup;
  added ones are read from InfluxDB as at start-up (a sensor removed and added back has its
  stored readings; the read API seeds the same way, so both count it alike);
* rebuilds what is indexed by sensor or gateway number: the point builder, the late-data
  history (restarted from the remapped state, as after a start-up), the batch dedup memory
  (forgotten: a batch redelivered across the change is stored again, which overwrites itself);
* writes the current bucket's rollups at once, so regions lose a removed site now;
* sends the whole state under the new registry digest (a HELLO, ADR 0006): the read API and
  the other members refuse deltas of another registry, so each side resynchronises as soon
  as both have reloaded, whichever reloads first.

Then every message dead-lettered as ``unknown_gateway`` or ``unknown_sensor`` by a gateway that
gained sensors goes through the normal path again (``Ingester._process``), as
``pantau ingest replay`` would send it, but without the broker and with the time it was first
received: stored if good now, refused again otherwise (a refusal already stored for the same
payload and reason is not stored twice). Raw points and state are idempotent, and the batch
dedup drops a later manual replay of the same batch, so nothing is counted twice.
docs/adr/0018-registry-hot-reload.md.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from city import Registry
from cloud.influx import InfluxHTTP
from cloud.ingest.aggregate import SensorState
from cloud.ingest.bootstrap import start_history
from cloud.ingest.decode import Message
from cloud.ingest.dedup import BatchDedup
from cloud.ingest.pipeline import WindowPipeline
from cloud.ingest.places import publish_places
from cloud.ingest.remap import RegistryDiff, diff, remap_state, take_rows
from cloud.ingest.seed import bootstrap_state
from cloud.ingest.topology import CityIndex
from contract import RejectReason, StorageError

if TYPE_CHECKING:
    from cloud.ingest.service import Ingester

log = logging.getLogger(__name__)

#: The refusals a registry change can cure.
REPLAYED_REASONS = (RejectReason.UNKNOWN_GATEWAY, RejectReason.UNKNOWN_SENSOR)


def follow_registry(ing: Ingester) -> None:
    """Between windows: if the watch (polling in its own thread) loaded a changed, valid
    registry file, swap it in and replay what it cures (see the module docstring)."""
    registry = ing.registry_watch.take()
    if registry is None:
        return
    ing._inflight.drain()  # a window in flight is finished with the registry it was decoded by
    change = swap_registry(ing, registry)
    replayed = replay_refused(ing, sorted(change.gateways_gaining_sensors))
    log.info("registry swapped in (%s); replayed %d dead-lettered messages", change, replayed)


def swap_registry(ing: Ingester, registry: Registry) -> RegistryDiff:
    """Make ``registry`` the ingester's, carrying the state over; returns what changed."""
    old_state, old = ing._require()
    old_index = ing.index
    index = CityIndex.from_registry(registry)
    state = remap_state(old_state, old_index, index)
    change = diff(old_index.registry, registry)
    try:
        publish_places(old.writer.influx, index)
    except StorageError as exc:
        # Only Grafana's place lookups lag (until the next swap or start); the readings of
        # the new sensors must not wait for that.
        log.warning("sensor_place not updated for the new registry: %s", exc)
    if change.added_sensors:
        added = np.array(sorted(index.sensor_pos[s] for s in change.added_sensors), np.intp)
        _seed_rows(old.writer.influx, index, state, added)
    dedup = BatchDedup(per_gateway=ing.settings.dedup_per_gateway)
    pipeline = WindowPipeline(
        settings=ing.settings,
        index=index,
        state=state,
        writer=old.writer,
        dead=old.dead,
        metrics=old.metrics,
        health=old.health,
        dedup=dedup,
        history=start_history(ing.settings, index, state),
        clock_ms=ing._clock_ms,
    )
    ing._registry = registry
    ing.index = index
    ing.state = state
    ing._dedup = dedup
    ing._pipeline = pipeline
    ing._peers.start(state, index.sensor_ids)
    ing._session.hello_due.set()
    pipeline.write_rollups(ing._clock_ms())
    return change


def _seed_rows(
    influx: InfluxHTTP, index: CityIndex, state: SensorState, rows: npt.NDArray[np.intp]
) -> None:
    """Take ``rows``' latest stored readings from InfluxDB into ``state``."""
    stored = SensorState(n_sensors=index.n_sensors)
    try:
        bootstrap_state(influx, index, stored)
    except StorageError as exc:
        # Not fatal: these sensors start unknown, as new ones do, until they report.
        log.warning("registry reload: the added sensors' stored readings not read: %s", exc)
        return
    take_rows(state, stored, rows)


def replay_refused(ing: Ingester, gateways: list[str]) -> int:
    """Send the dead letters of ``gateways`` refused for a reason in :data:`REPLAYED_REASONS`
    through the ingester's own window processing, oldest first, in windows of
    ``window_max_messages``; returns how many messages went through. Each message goes once
    even if it was refused for both reasons, with the time it was first received: a reading
    without a clock is stamped on receipt, and a gateway's status is stored at that time."""
    first_seen: dict[str, int] = {}
    for gateway in gateways:
        for reason in REPLAYED_REASONS:
            for record in ing.dead.read(reason=reason.value, gateway=gateway):
                seen = first_seen.get(record.fingerprint)
                if seen is None or record.received_at < seen:
                    first_seen[record.fingerprint] = record.received_at
    found = ing.dead.payloads(set(first_seen))  # rotated away meanwhile: left out
    order = sorted((at, fp) for fp, at in first_seen.items() if fp in found)
    size = ing.settings.window_max_messages
    for start in range(0, len(order), size):
        window = [
            # QoS 0 and no packet id: nothing to acknowledge to the broker, which never had it.
            Message(
                topic=found[fp][0], payload=found[fp][1], received_ms=at, mid=0, qos=0, generation=0
            )
            for at, fp in order[start : start + size]
        ]
        # The window's acknowledgement releases what it holds: count them in as received.
        for _ in window:
            ing.metrics.received()
        ing._process(window)
    return len(order)

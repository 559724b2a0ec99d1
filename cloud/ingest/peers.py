"""Scale-out: the state deltas a member sends to the other members of its group, and the ones
it takes from them (docs/adr/0006-ingester-scale-out.md).

A member publishes, before acknowledging a window, the sensors whose state the others do not
know yet; it merges theirs last-writer-wins. ``shared`` is what the other members know of our
state (our published deltas merged with theirs), so only our own changes are sent. A lone
ingester publishes too, for the read API, but nothing waits for those publications.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import paho.mqtt.client as mqtt

from cloud.ingest.aggregate import SensorState
from cloud.ingest.cluster import (
    Rows,
    apply_rows,
    changed_sensors,
    copy_state,
    deltas_of,
    fits,
    mark_shared,
    merge_rows,
)
from cloud.ingest.decode import Message
from cloud.ingest.metrics import IngestMetrics
from contract import PantauError, PayloadError
from contract.cluster import StateDelta, decode_state_delta, encode_state_delta, registry_digest

log = logging.getLogger(__name__)


class StatePeers:
    """Our side of the state exchange. Construction does no I/O; :meth:`start` takes the
    bootstrapped state (which every member read from InfluxDB: nothing to tell)."""

    def __init__(self, *, topic: str, in_group: bool, metrics: IngestMetrics) -> None:
        self.topic = topic
        #: False for a lone ingester: its publications are for the API, nobody waits for them
        self.in_group = in_group
        self.metrics = metrics
        self.shared: SensorState | None = None
        self.digest = b""

    def start(self, state: SensorState, sensor_ids: Sequence[str]) -> None:
        """From now on the peers are taken to know ``state``."""
        self.shared = copy_state(state)
        self.digest = registry_digest(sensor_ids)

    def changed(self, state: SensorState) -> npt.NDArray[np.intp]:
        """The sensors whose state the other members do not know yet."""
        if self.shared is None:
            return np.zeros(0, np.intp)
        return changed_sensors(state, self.shared)

    def send(
        self,
        client: mqtt.Client,
        state: SensorState,
        sensors: npt.NDArray[np.intp],
        *,
        hello: bool = False,
    ) -> list[mqtt.MQTTMessageInfo]:
        """Publish the state of ``sensors`` (QoS 1) without waiting for the broker; the
        publications an acknowledgement must wait for (none for a lone ingester). The peers are
        taken to know it from now on: if the connection is lost before the PUBACK, the HELLO
        after the reconnect resends our whole state."""
        shared = self.shared
        if shared is None:
            return []
        infos = [
            client.publish(self.topic, encode_state_delta(delta), qos=1)
            for delta in deltas_of(state, sensors, self.digest, hello=hello)
        ]
        mark_shared(shared, state, sensors)
        self.metrics.deltas_published.inc(len(infos))
        self.metrics.delta_sensors_published.inc(len(sensors))
        # A lone ingester publishes for the read API only, which re-reads InfluxDB after any
        # gap: no member's state depends on it, so its windows wait for nothing.
        return infos if self.in_group else []

    def accept(self, msgs: list[Message], *, n_sensors: int, fields: int) -> list[StateDelta]:
        """The deltas of ``msgs`` that this member can merge; the others are logged and
        counted (a garbled delta, or one from a member with another registry)."""
        deltas: list[StateDelta] = []
        for msg in msgs:
            try:
                delta = decode_state_delta(msg.payload)
            except PayloadError as exc:
                log.warning("refused a state delta on %s: %s", msg.topic, exc)
                self.metrics.deltas_refused.inc()
                continue
            if not fits(delta, digest=self.digest, n_sensors=n_sensors, fields=fields):
                log.error(
                    "refused a state delta from a member with another registry (digest %s, "
                    "ours %s): every member must load the same city file",
                    delta.digest.hex(),
                    self.digest.hex(),
                )
                self.metrics.deltas_refused.inc()
                continue
            deltas.append(delta)
        return deltas

    def merge(self, deltas: list[StateDelta], state: SensorState) -> tuple[Rows, int]:
        """Merge ``deltas`` into ``state`` (last writer wins) and into ``shared`` (so only our
        own changes are sent); the merged rows and how many sensors' state changed."""
        if self.shared is None:
            raise PantauError("StatePeers.merge before start()")
        rows = merge_rows(deltas, state)
        changed = apply_rows(state, self.shared, rows)
        self.metrics.deltas_merged.inc(len(deltas))
        self.metrics.delta_sensors_changed.inc(changed)
        return rows, changed

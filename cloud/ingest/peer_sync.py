"""The ingester's side of the state exchange between members (docs/adr/0006-ingester-scale-out.md):
the delta it publishes before acknowledging a window, the HELLO after (re)subscribing, and the
other members' deltas merged in. Functions of the running ``Ingester``, as in ``reload``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
import paho.mqtt.client as mqtt

from cloud.ingest.decode import Message
from cloud.ingest.pipeline import WindowPipeline

if TYPE_CHECKING:
    from cloud.ingest.service import Ingester


def publish_state(ing: Ingester) -> list[mqtt.MQTTMessageInfo] | None:
    """Publish the sensors whose state the other members do not know yet; the
    publications to wait for before acknowledging (None: not connected)."""
    state, _ = ing._require()
    changed = ing._peers.changed(state)
    return send(ing, changed) if len(changed) else []


def greet(ing: Ingester) -> None:
    """After (re)subscribing: send our whole state with HELLO, so every member answers
    with its whole state. A member that joins or returns then misses nothing the group
    learned before its subscription existed."""
    if ing._peers.shared is None or not ing._session.hello_due.is_set():
        return
    ing._inflight.drain()  # the HELLO carries every window we stored
    ing._session.hello_due.clear()
    state, _ = ing._require()
    # Nothing waits for the HELLO to be acknowledged, but a broker that never takes it
    # is a lost connection like any other (PendingAcks.overdue).
    ing._park(send(ing, np.flatnonzero(state.known), hello=True), [])


def send(
    ing: Ingester, sensors: npt.NDArray[np.intp], *, hello: bool = False
) -> list[mqtt.MQTTMessageInfo] | None:
    """Publish the state of ``sensors``; None if there is no connection."""
    client = ing._session.client
    if client is None or ing._session.lost.is_set():
        return None
    state, _ = ing._require()
    return ing._peers.send(client, state, sensors, hello=hello)


def merge_peers(ing: Ingester, msgs: list[Message], pipeline: WindowPipeline) -> None:
    """Merge the other members' state deltas (last writer wins), rewrite the rollups if
    that changed our state, then acknowledge the deltas."""
    state, _ = ing._require()
    deltas = ing._peers.accept(msgs, n_sensors=ing.index.n_sensors, fields=state.values.shape[1])
    if deltas:
        rows, changed = ing._peers.merge(deltas, state)
        if pipeline.history is not None:  # so rewritten past buckets include peers' sensors
            pipeline.history.add(*rows, now_ms=ing._clock_ms())
        if changed:
            pipeline.write_rollups(ing._clock_ms())
        # A member (re)joined: answer with everything we know before acking its HELLO,
        # so a crash here makes the broker deliver the HELLO again.
        if any(d.hello for d in deltas):
            ing._park(send(ing, np.flatnonzero(state.known)), msgs)
            return
    ing._park([], msgs)

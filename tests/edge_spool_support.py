"""Helpers for the edge spool's integration tests (shared by test_edge_spool and
test_edge_spool_kill): frames of five sensors in three lanes, a recorder of what the broker
delivered, deduplicated as the ingester does, and the order checks."""

from __future__ import annotations

import collections
import os
import threading
from typing import Any

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from contract import SensorKind, SerialFrame, encode_frame
from contract.payload import KIND_FIELDS, Reading
from contract.topics import Channel, build
from edge import EdgeAgent
from pantau.services import Mosquitto
from tests.edge_support import (
    GW,
    SITE,
    T0,
    wait_for,
)

#: Sensor -> kind, as the frames below send them (one sensor, one kind, one lane).
SENSORS = {
    "icu-1": SensorKind.BED,
    "hcu-2": SensorKind.BED,
    "kiosk-1": SensorKind.QUEUE,
    "gate-a": SensorKind.CROWD,
    "gate-b": SensorKind.CROWD,
}
LANE = {SensorKind.BED: 0, SensorKind.QUEUE: 1, SensorKind.CROWD: 2}
_VALUES = {
    SensorKind.BED: (40, 10, 2, 1, 3),
    SensorKind.QUEUE: (30, 20, 2),
    SensorKind.CROWD: (500, 400, 100),
}


def frame(sensor: str, seq: int) -> bytes:
    kind = SENSORS[sensor]
    return encode_frame(
        SerialFrame(sensor=sensor, kind=kind, seq=seq, ts_ms=T0 + seq, values=_VALUES[kind])
    )


def reading(sensor: str, seq: int) -> Reading:
    kind = SENSORS[sensor]
    return Reading(
        sensor=sensor,
        kind=kind,
        ts=T0 + seq,
        seq=seq,
        values=dict(zip(KIND_FIELDS[kind], _VALUES[kind], strict=True)),
    )


class Recorder:
    """An ops client (pantau-ops) that keeps every batch and status of the gateway, decoded
    once on arrival. Its session is persistent, so what the agent publishes while the recorder
    reconnects after a broker restart is queued for it, not lost."""

    def __init__(self, broker: Mosquitto, *, client_id: str = "spool-recorder") -> None:
        self.broker = broker
        self.lock = threading.Lock()
        #: (batch seq, [(sensor, kind, reading seq), ...]) in arrival order, duplicates kept.
        self.batches: list[tuple[int, list[tuple[str, str, int]]]] = []
        self.statuses: list[dict[str, Any]] = []
        self._seqs: set[int] = set()
        #: Readings in distinct batches so far (a cheap progress count for waiting).
        self.unique = 0
        self.subscribed = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=MQTTProtocolVersion.MQTTv5
        )
        # The broker binds every account to one client id: the recorder is an ops account.
        broker.add_user(client_id, "recorder-pw", role="pantau-ops")
        self.client.username_pw_set(client_id, "recorder-pw")
        self.client.reconnect_delay_set(0.05, 0.5)  # type: ignore[arg-type]  # floats work
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe

    def _on_connect(self, c: mqtt.Client, _u: Any, _f: Any, _rc: Any, _p: Any) -> None:
        c.subscribe(f"pantau/v1/{SITE}/{GW}/#", qos=1)

    def _on_subscribe(self, _c: mqtt.Client, _u: Any, _mid: int, _rc: Any, _p: Any) -> None:
        self.subscribed.set()

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        doc = orjson.loads(msg.payload)
        with self.lock:
            if msg.topic == build(SITE, GW, Channel.READINGS):
                rows = [(r["sensor"], r["kind"], r["seq"]) for r in doc["readings"]]
                self.batches.append((doc["seq"], rows))
                if doc["seq"] not in self._seqs:
                    self._seqs.add(doc["seq"])
                    self.unique += len(rows)
            elif msg.topic == build(SITE, GW, Channel.STATUS):
                self.statuses.append(doc)

    def __enter__(self) -> Recorder:
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = 600
        self.client.connect(self.broker.host, self.broker.port, clean_start=False, properties=props)
        self.client.loop_start()
        wait_for(self.subscribed.is_set, "recorder subscription granted")
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def deduped(self) -> list[tuple[int, list[tuple[str, str, int]]]]:
        """Batches as the ingester keeps them: the first copy of each batch seq. A repeated
        seq must carry the same readings (a resend), or the dedup would lose data."""
        first: dict[int, list[tuple[str, str, int]]] = {}
        with self.lock:
            arrived = list(self.batches)
        for seq, rows in arrived:
            kept = first.setdefault(seq, rows)
            assert kept == rows, f"batch seq {seq} was sent twice with different readings"
        return list(first.items())

    def readings(self) -> list[tuple[str, str, int]]:
        return [r for _seq, rows in self.deduped() for r in rows]

    def last_status(self) -> dict[str, Any]:
        with self.lock:
            return self.statuses[-1] if self.statuses else {"stats": {}}


def write(master: int, frames: list[bytes]) -> None:
    for i in range(0, len(frames), 20):  # a PTY buffers a few KiB; the agent reads as we go
        os.write(master, b"".join(frames[i : i + 20]))


def stat(agent: EdgeAgent, name: str) -> int | float | str:
    return agent.status().stats.get(name, -1)


def assert_exactly_once_in_order(got: list[tuple[str, str, int]], want: dict[str, int]) -> None:
    """Each sensor's readings 0..n-1 arrived once each, in order."""
    counts = collections.Counter((sensor, seq) for sensor, _kind, seq in got)
    assert [k for k, n in counts.items() if n != 1] == []
    per_sensor: dict[str, list[int]] = {}
    for sensor, _kind, seq in got:
        per_sensor.setdefault(sensor, []).append(seq)
    assert per_sensor == {sensor: list(range(n)) for sensor, n in want.items()}


def lanes_in_order(batches: list[tuple[int, list[tuple[str, str, int]]]]) -> list[int]:
    """The lane of each batch, in arrival order (each batch holds one kind)."""
    out = []
    for _seq, rows in batches:
        kinds = {kind for _s, kind, _n in rows}
        assert len(kinds) == 1, f"a batch mixes kinds {kinds}"
        out.append(LANE[SensorKind(kinds.pop())])
    return out

"""The edge spool under outages, a full disk budget, old age and SIGKILL: a real Mosquitto
(stopped and restarted on its port), real pseudo-terminals, the agent in-process and as a
``python -m edge run`` subprocess.

Readings are checked the way the ingester sees them: deduplicated by (gateway, batch seq)."""

from __future__ import annotations

import collections
import os
import signal
import threading
from pathlib import Path
from typing import Any

import httpx
import orjson
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from typer.testing import CliRunner

from contract import SensorKind, SerialFrame, encode_frame
from contract.payload import KIND_FIELDS, Reading
from contract.topics import Channel, build
from edge import EdgeAgent
from edge.cli import app
from edge.spool import SpoolLimits, SqliteOutbox
from pantau.services import Mosquitto, free_port
from tests.edge_support import (
    GW,
    SITE,
    T0,
    agent_env,
    agent_process,
    make_settings,
    running,
    wait_for,
)

pytestmark = pytest.mark.integration

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


@pytest.fixture(autouse=True)
def _no_pantau_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The agent reads PANTAU_* from the environment; the test's settings must be the only ones."""
    for name in list(os.environ):
        if name.upper().startswith("PANTAU_"):
            monkeypatch.delenv(name)


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
        self.client.username_pw_set("pantau-ops", "pantau-ops-secret")
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


def test_a_long_outage_backlog_drains_beds_first_exactly_once_with_its_high_water_mark(
    mosquitto: Mosquitto, pty_pair: tuple[int, str], tmp_path: Path
) -> None:
    master, path = pty_pair
    rounds = 30
    settings = make_settings(mosquitto, tmp_path, {"bus0": path}, batch_max_readings=5)
    agent = EdgeAgent(settings=settings)
    with Recorder(mosquitto) as rec:
        mosquitto.stop()  # the uplink is down before the agent starts: all goes to the spool
        with running(agent):
            # The sensors keep reporting through the outage, interleaved on one bus.
            write(master, [frame(s, i) for i in range(rounds) for s in SENSORS])
            total = rounds * len(SENSORS)
            wait_for(lambda: stat(agent, "spool_depth") == total, f"{total} readings spooled")
            assert stat(agent, "batches_sent") == 0
            mosquitto.start()
            wait_for(lambda: len(rec.readings()) == total, "the whole backlog", timeout=30)
            wait_for(
                lambda: rec.last_status()["stats"].get("readings_acked") == total,
                "a status after the drain",
            )
    batches = rec.deduped()
    assert_exactly_once_in_order(rec.readings(), dict.fromkeys(SENSORS, rounds))
    lanes = lanes_in_order(batches)
    assert lanes == sorted(lanes)  # every bed batch, then every queue batch, then crowd
    # Reading by reading: the 60 bed readings, then the 30 queue ones, then the 60 crowd ones.
    kinds = [LANE[SensorKind(kind)] for _sensor, kind, _seq in rec.readings()]
    assert kinds == [0] * 60 + [1] * 30 + [2] * 60
    stats = rec.last_status()["stats"]
    assert stats["spool_high_water"] == total
    assert stats["spool_depth"] == 0
    assert stats["spool_dropped_total"] == 0


def feed_in_phases(
    agent: EdgeAgent, master: int, phases: list[list[tuple[str, int]]], depths: list[int]
) -> None:
    """Write each phase's frames and wait until the spool holds ``depth`` readings, so that
    no batch window mixes two phases."""
    for phase, depth in zip(phases, depths, strict=True):
        write(master, [frame(s, i) for s, i in phase])

        def reached(want: int = depth) -> bool:
            return stat(agent, "spool_depth") == want

        wait_for(reached, f"spool depth {depth}")


CROWD_12 = [(s, i) for i in range(6) for s in ("gate-a", "gate-b")]
QUEUE_6 = [("kiosk-1", i) for i in range(6)]
BED_6 = [("icu-1", i) for i in range(6)]


@pytest.mark.parametrize(
    ("policy", "dropped", "counts"),
    [
        (
            "drop_oldest_lowest_lane",
            # the four oldest crowd readings, never a bed
            {("gate-a", 0), ("gate-b", 0), ("gate-a", 1), ("gate-b", 1)},
            {"spool_dropped_full_crowd": 4, "spool_dropped_crowd": 4},
        ),
        (
            "refuse_new",
            # the newest readings, which here are beds: why it is not the default
            {("icu-1", 2), ("icu-1", 3), ("icu-1", 4), ("icu-1", 5)},
            {"spool_dropped_full_bed": 4, "spool_dropped_bed": 4},
        ),
    ],
)
def test_a_full_spool_applies_its_policy_and_the_drops_are_counted_in_the_status(
    mosquitto: Mosquitto,
    pty_pair: tuple[int, str],
    tmp_path: Path,
    policy: str,
    dropped: set[tuple[str, int]],
    counts: dict[str, int],
) -> None:
    master, path = pty_pair
    metrics_port = free_port()
    settings = make_settings(
        mosquitto,
        tmp_path,
        {"bus0": path},
        spool_max_readings=20,
        spool_full_policy=policy,
        metrics_port=metrics_port,
    )
    agent = EdgeAgent(settings=settings)
    with Recorder(mosquitto) as rec:
        mosquitto.stop()
        with running(agent):
            # 12 crowd, 6 queue, then 6 bed readings: 24 for a spool of 20.
            feed_in_phases(agent, master, [CROWD_12, QUEUE_6, BED_6], [12, 18, 20])
            wait_for(lambda: stat(agent, "spool_dropped_total") == 4, "4 drops")
            mosquitto.start()
            wait_for(
                lambda: rec.last_status()["stats"].get("readings_acked") == 20,
                "a status after the 20 kept readings were acked",
                timeout=30,
            )

            def scraped() -> str:
                return httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=2).text

            # The metrics snapshot is refreshed once a second.
            line = f'pantau_edge_spool_dropped_total{{gateway="{GW}"}} 4.0'
            wait_for(lambda: line in scraped(), "the drops in the metrics")
            metrics = scraped()
    fed = {(s, i) for s, i in CROWD_12 + QUEUE_6 + BED_6}
    got = [(sensor, seq) for sensor, _kind, seq in rec.readings()]
    assert sorted(got) == sorted(fed - dropped)
    stats = rec.last_status()["stats"]
    expected = {
        "spool_dropped_total": 4,
        "spool_dropped_full": 4,
        "spool_dropped_expired": 0,
        "spool_high_water": 20,
        "spool_depth": 0,
        "spool_dropped_full_bed": 0,
        "spool_dropped_full_queue": 0,
        "spool_dropped_full_crowd": 0,
        **counts,
    }
    assert {k: stats[k] for k in expected} == expected
    assert f'pantau_edge_spool_high_water{{gateway="{GW}"}} 20.0' in metrics
    # `pantau edge status` shows the same counts from the file the agent left behind.
    shown = CliRunner().invoke(
        app,
        ["status"],
        env={
            "PANTAU_GATEWAY_ID": GW,
            "PANTAU_SITE_ID": SITE,
            "PANTAU_SERIAL_PORTS": orjson.dumps({"bus0": path}).decode(),
            "PANTAU_SPOOL_PATH": str(settings.spool_path),
        },
    )
    assert shown.exit_code == 0, shown.output
    doc = orjson.loads(shown.stdout)
    assert doc["state"] == "offline"
    assert {k: doc["stats"][k] for k in expected} == expected


def test_readings_older_than_the_age_bound_are_expired_counted_and_never_sent(
    mosquitto: Mosquitto, pty_pair: tuple[int, str], tmp_path: Path
) -> None:
    master, path = pty_pair
    settings = make_settings(mosquitto, tmp_path, {"bus0": path}, spool_max_age_s=2.0)
    agent = EdgeAgent(settings=settings)
    with Recorder(mosquitto) as rec:
        mosquitto.stop()
        with running(agent):
            write(master, [frame(s, i) for i in range(2) for s in ("gate-a", "gate-b", "icu-1")])
            # Nothing is put or sent any more: the agent's own sweep must expire them.
            wait_for(
                lambda: stat(agent, "spool_dropped_expired") == 6, "6 readings expired", timeout=10
            )
            assert stat(agent, "spool_depth") == 0
            mosquitto.start()
            wait_for(lambda: stat(agent, "connects") == 1, "agent connected")
            write(master, [frame("icu-1", 2), frame("icu-1", 3)])
            wait_for(lambda: len(rec.readings()) == 2, "the two fresh readings")
            wait_for(
                lambda: rec.last_status()["stats"].get("readings_acked") == 2,
                "a status after they were acked",
            )
    assert rec.readings() == [("icu-1", "bed", 2), ("icu-1", "bed", 3)]
    stats = rec.last_status()["stats"]
    assert {k: v for k, v in stats.items() if k.startswith("spool_dropped")} == {
        "spool_dropped_expired_bed": 2,
        "spool_dropped_expired_queue": 0,
        "spool_dropped_expired_crowd": 4,
        "spool_dropped_expired": 6,
        "spool_dropped_full_bed": 0,
        "spool_dropped_full_queue": 0,
        "spool_dropped_full_crowd": 0,
        "spool_dropped_full": 0,
        "spool_dropped_bed": 2,
        "spool_dropped_queue": 0,
        "spool_dropped_crowd": 4,
        "spool_dropped_total": 6,
    }


def fill_spool(path: Path, rounds: int, per_batch: int) -> dict[str, int]:
    """A backlog as an agent in a long outage leaves it: per round one bed, one queue and one
    crowd batch (two sensors sharing the bed and the crowd batches). Returns readings per
    sensor."""
    counts = dict.fromkeys(SENSORS, 0)

    def take(sensors: tuple[str, ...]) -> list[Reading]:
        out = []
        for i in range(per_batch):
            sensor = sensors[i % len(sensors)]
            out.append(reading(sensor, counts[sensor]))
            counts[sensor] += 1
        return out

    box = SqliteOutbox(path=path, limits=SpoolLimits()).open()
    try:
        for _ in range(rounds):
            box.put(take(("icu-1", "hcu-2")))
            box.put(take(("kiosk-1",)))
            box.put(take(("gate-a", "gate-b")))
    finally:
        box.close()
    return counts


def spool_depth(path: Path) -> int:
    box = SqliteOutbox(path=path).open()
    try:
        return box.depth()
    finally:
        box.close()


def test_sigkill_mid_backlog_then_restart_delivers_every_reading_once_in_order(
    mosquitto: Mosquitto, pty_pair: tuple[int, str], tmp_path: Path
) -> None:
    _master, port = pty_pair
    env = agent_env(mosquitto, tmp_path, port)
    env["PANTAU_STATUS_INTERVAL_S"] = "0.2"
    spool = Path(env["PANTAU_SPOOL_PATH"])
    counts = fill_spool(spool, rounds=300, per_batch=200)  # 180 000 readings, 900 batches
    total = sum(counts.values())
    with Recorder(mosquitto) as rec:
        with agent_process(env, tmp_path / "agent1.log") as proc:
            # At most 64 batches are in flight, so a 100th batch means acks were stored.
            wait_for(lambda: len(rec.batches) >= 100, "the drain under way", timeout=30)
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        left = spool_depth(spool)  # opens cleanly: no corruption, the lock went with the process
        assert 0 < left < total, f"the kill was not mid-backlog: {left} of {total} left"
        with agent_process(env, tmp_path / "agent2.log"):
            wait_for(lambda: rec.unique == total, f"all {total} readings", timeout=60)
            wait_for(lambda: spool_depth_from_status(spool) == 0, "spool drained")
    got = rec.readings()
    assert_exactly_once_in_order(got, counts)
    lanes = lanes_in_order(rec.deduped())
    assert lanes == sorted(lanes)  # beds first across the kill too


def spool_depth_from_status(spool: Path) -> int:
    try:
        doc = orjson.loads(spool.with_name(spool.name + ".status.json").read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return -1
    value = doc["stats"].get("spool_depth", -1)
    return int(value)

"""Helpers for the edge agent's integration tests (shared by several test modules): a watcher
on the gateway's topics, settings against a test broker, the agent run in a thread or as a
process, frames, and waiting for an event."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from contract import Batch, CommandAck, GatewayStatus, SensorKind, SerialFrame, encode_frame
from contract.topics import Channel, build
from edge import EdgeAgent, EdgeSettings
from pantau.services import Mosquitto

SITE = "rs-kariadi"
GW = "gw-test"
PASSWORD = "gw-test-pw"  # noqa: S105 - a throwaway broker user
REPO = Path(__file__).resolve().parents[1]
T0 = 1_700_000_000_000


def wait_for(cond: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    """Poll ``cond`` until true or fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


class Watcher:
    """An ops client (pantau-ops) that records every message on the gateway's topics.

    Its session is persistent, so messages published while the broker restarts still reach it.
    """

    def __init__(self, broker: Mosquitto, *, client_id: str = "test-watcher") -> None:
        self.broker = broker
        self.messages: list[tuple[str, bytes, bool]] = []
        self.lock = threading.Lock()
        self.subscribed = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=MQTTProtocolVersion.MQTTv5
        )
        # The broker binds every account to one client id: each watcher is an ops account.
        broker.add_user(client_id, "watcher-pw", role="pantau-ops")
        self.client.username_pw_set(client_id, "watcher-pw")
        # paho accepts float delays; its annotation says int.
        self.client.reconnect_delay_set(0.05, 0.5)  # type: ignore[arg-type]
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message

    def _on_connect(self, c: mqtt.Client, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        c.subscribe(f"pantau/v1/{SITE}/{GW}/#", qos=1)

    def _on_subscribe(self, _c: mqtt.Client, _u: Any, _mid: int, _rc: Any, _p: Any) -> None:
        # The SUBACK: from here on the broker delivers the gateway's messages to us.
        self.subscribed.set()

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain)))

    def __enter__(self) -> Watcher:
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = 600
        self.client.connect(self.broker.host, self.broker.port, clean_start=False, properties=props)
        self.client.loop_start()
        wait_for(self.subscribed.is_set, "watcher subscription (SUBACK)")
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def on(self, channel: Channel) -> list[bytes]:
        topic = build(SITE, GW, channel)
        with self.lock:
            return [p for t, p, _r in self.messages if t == topic]

    def batches(self) -> list[Batch]:
        return [Batch.model_validate_json(p) for p in self.on(Channel.READINGS)]

    def readings(self) -> list[Any]:
        return [r for b in self.batches() for r in b.readings]

    def statuses(self) -> list[GatewayStatus]:
        return [GatewayStatus.model_validate_json(p) for p in self.on(Channel.STATUS)]

    def acks(self) -> list[CommandAck]:
        return [CommandAck.model_validate_json(p) for p in self.on(Channel.ACK)]

    def command(self, payload: bytes) -> None:
        info = self.client.publish(build(SITE, GW, Channel.CMD), payload, qos=1)
        assert info.rc == mqtt.MQTT_ERR_SUCCESS
        info.wait_for_publish(5)


def make_settings(
    broker: Mosquitto, tmp_path: Path, ports: dict[str, str], **kw: Any
) -> EdgeSettings:
    broker.add_user(GW, PASSWORD, site=SITE)
    values: dict[str, Any] = {
        "gateway_id": GW,
        "site_id": SITE,
        "mqtt_url": broker.url,
        "mqtt_password": PASSWORD,
        "serial_ports": ports,
        "spool_path": tmp_path / "edge" / "gw.spool",
        "batch_max_delay_s": 0.1,
        "reconnect_base_s": 0.05,
        "reconnect_cap_s": 0.5,
        "status_interval_s": 0.3,
    }
    values.update(kw)
    return EdgeSettings(**values)


@contextlib.contextmanager
def running(agent: EdgeAgent) -> Iterator[EdgeAgent]:
    """Run the agent's loop in a thread; stop it cleanly afterwards (and check it did)."""
    errors: list[BaseException] = []

    def target() -> None:
        try:
            agent.run()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test thread below
            errors.append(exc)

    thread = threading.Thread(target=target, name="agent", daemon=True)
    thread.start()
    try:
        # Opening a tty flushes its input: sensors in these tests talk once ports are open.
        wait_for(
            lambda: 0 < int(agent.status().stats["ports"]) == agent.status().stats["ports_open"],
            "serial ports open",
        )
        yield agent
    finally:
        agent.request_stop()
        thread.join(15)
    assert not thread.is_alive(), "agent did not stop"
    assert errors == []


def bed(sensor: str, seq: int, ts: int | None, occupied: int = 10) -> SerialFrame:
    return SerialFrame(
        sensor=sensor, kind=SensorKind.BED, seq=seq, ts_ms=ts, values=(40, occupied, 2, 1, 3)
    )


class PacedSensor:
    """Bed sensors ``names`` writing a frame each on a PTY every ``pace_s`` from a thread
    (their pace, not a wait for an event), seq 0, 1, 2, ... stamped ``t0 + seq``;
    ``written`` lists every (sensor, seq) written, in order."""

    def __init__(
        self, master: int, names: tuple[str, ...], *, t0: int, pace_s: float = 0.01
    ) -> None:
        self.written: list[tuple[str, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(master, names, t0, pace_s), name="sensor", daemon=True
        )

    def _run(self, master: int, names: tuple[str, ...], t0: int, pace_s: float) -> None:
        seq = 0
        while not self._stop.is_set():
            for name in names:
                os.write(master, encode_frame(bed(name, seq, t0 + seq)))
                self.written.append((name, seq))
            seq += 1
            time.sleep(pace_s)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop writing; ``written`` is final once this returns."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)


def crowd(sensor: str, seq: int, ts: int | None) -> SerialFrame:
    return SerialFrame(
        sensor=sensor, kind=SensorKind.CROWD, seq=seq, ts_ms=ts, values=(100 + seq, seq, 100)
    )


def agent_env(broker: Mosquitto, tmp_path: Path, port: str) -> dict[str, str]:
    broker.add_user(GW, PASSWORD, site=SITE)
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("PANTAU_")}
    env.update(
        PANTAU_GATEWAY_ID=GW,
        PANTAU_SITE_ID=SITE,
        PANTAU_MQTT_URL=broker.url,
        PANTAU_MQTT_PASSWORD=PASSWORD,
        PANTAU_SERIAL_PORTS=orjson.dumps({"bus0": port}).decode(),
        PANTAU_SPOOL_PATH=str(tmp_path / "proc" / "gw.spool"),
        PANTAU_BATCH_MAX_DELAY_S="0.1",
        PYTHONUNBUFFERED="1",
    )
    return env


@contextlib.contextmanager
def agent_process(env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "edge", "run"],
            env=env,
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

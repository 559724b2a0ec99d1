"""A known stream of gateway batches, a publisher that keeps going through broker restarts, and
readers that compare what InfluxDB stored with what was sent. Shared by the scale-out and
robustness tests of the ingester."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from city import Registry
from cloud.influx import InfluxHTTP, ident
from cloud.ingest import Ingester, IngestSettings
from contract import KIND_FIELDS, Batch, Channel, Reading, SensorKind, encode, topics
from contract.clock import now_ms
from pantau.broker_identity import SERVICE_ACCOUNTS, ServiceRole
from pantau.services import InfluxDB, Mosquitto

#: (sensor, observation ms, seq, values in KIND_FIELDS order): one reading, as stored.
Row = tuple[str, int, int, tuple[int, ...]]


def wait_for(cond: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    """Poll ``cond`` until truthy; a deadline that expires fails the test, naming ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = cond()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def settings_for(
    mosquitto: Mosquitto, influxdb: InfluxDB, tmp_path: Path, **over: Any
) -> IngestSettings:
    """Ingester settings for the test broker and InfluxDB, with fast windows; ``over``
    replaces any field. A ``mqtt_client_id`` of its own makes a scale-out member: the broker
    binds every account to one client id, so it gets its own ingester account of that name."""
    fields: dict[str, Any] = {
        "mqtt_url": mosquitto.url,
        "influx_url": influxdb.url,
        "influx_db": "pantau",
        "dead_letter_dir": tmp_path / "dead",
        "flush_interval_s": 0.05,
    }
    member = over.get("mqtt_client_id")
    if member is not None and member != SERVICE_ACCOUNTS["pantau-ingest"].client_id:
        mosquitto.add_user(member, f"{member}-pw", role="pantau-ingest")
        fields |= {"mqtt_username": member, "mqtt_password": f"{member}-pw"}
    return IngestSettings.model_validate({**fields, **over})


@contextmanager
def running(ing: Ingester) -> Iterator[Ingester]:
    """Run an ingester in a daemon thread until its subscriptions are granted; stop it (and
    check it stopped) afterwards."""
    thread = threading.Thread(target=ing.run, name=ing.settings.mqtt_client_id, daemon=True)
    thread.start()
    try:
        assert ing.ready.wait(20), f"{ing.settings.mqtt_client_id} did not subscribe"
        yield ing
    finally:
        ing.stop()
        thread.join(20)
        assert not thread.is_alive()


@contextmanager
def ingester_thread(settings: IngestSettings, city: Registry) -> Iterator[Ingester]:
    """:func:`running` for a new ingester of ``settings`` on ``city``."""
    with running(Ingester(settings=settings, registry=city)) as ing:
        yield ing


@contextmanager
def publisher(broker: Mosquitto, gateway: str, *, site: str | None = None) -> Iterator[mqtt.Client]:
    """A connected MQTT v5 client with ``gateway``'s own account (created on the broker, for
    its registry site unless ``site`` says otherwise) and its own id as client id."""
    broker.add_user(gateway, f"{gateway}-pw", site=site)
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=gateway,
        protocol=MQTTProtocolVersion.MQTTv5,
    )
    client.username_pw_set(gateway, f"{gateway}-pw")
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        yield client
    finally:
        client.disconnect()
        client.loop_stop()


def publish(client: mqtt.Client, topic: str, payload: Any) -> None:
    """Publish at QoS 1 (``payload`` as bytes, or a document to JSON) and wait for the PUBACK."""
    data = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    info = client.publish(topic, data, qos=1)
    info.wait_for_publish(10)
    assert info.is_published()


@dataclass(frozen=True, slots=True)
class Message:
    """One batch of the stream."""

    gateway: str
    topic: str
    payload: bytes
    rows: tuple[Row, ...]


@dataclass(slots=True)
class Stream:
    """Batches of valid readings of ``gateways``, each batch one reading per sensor of its
    gateway, observation times 1 s apart, values from a seeded generator (so exact numbers
    are known)."""

    messages: list[Message] = field(default_factory=list)

    @property
    def rows(self) -> set[Row]:
        """Every reading sent."""
        return {r for m in self.messages for r in m.rows}


def make_stream(
    city: Registry,
    gateways: list[str],
    *,
    batches: int,
    t0: int,
    seed: int = 5,
    pad_readings: int = 0,
) -> Stream:
    """``batches`` batches per gateway, interleaved gateway by gateway; a sensor's readings
    are 3 ms apart. ``pad_readings`` > 0 makes every batch that many readings long (more
    readings of the gateway's sensors), for tests that need large messages."""
    rng = random.Random(seed)
    state: dict[str, list[int]] = {}
    out = Stream()
    for i in range(batches):
        for gw in gateways:
            sensors = city.sensors_of(gateway=gw)
            site = city.gateways[gw].site
            readings: list[Reading] = []
            rows: list[Row] = []
            n = max(len(sensors), pad_readings)
            rounds = -(-n // len(sensors))
            for j in range(n):
                k = j % len(sensors)
                sensor = sensors[k]
                # Distinct per sensor across the whole stream, increasing batch by batch.
                ts = t0 + (i * rounds + j // len(sensors)) * 3 + k % 3
                seq = i * n + j
                values = _values(
                    sensor.kind, sensor.beds or 20, state.setdefault(sensor.id, []), rng
                )
                readings.append(
                    Reading(
                        sensor=sensor.id,
                        kind=sensor.kind,
                        ts=ts,
                        seq=seq,
                        values=dict(zip(KIND_FIELDS[sensor.kind], values, strict=True)),
                    )
                )
                rows.append((sensor.id, ts, seq, values))
            batch = Batch(gw=gw, seq=i, sent=now_ms(), readings=readings)
            out.messages.append(
                Message(gw, topics.build(site, gw, Channel.READINGS), encode(batch), tuple(rows))
            )
    return out


def _values(kind: SensorKind, beds: int, last: list[int], rng: random.Random) -> tuple[int, ...]:
    if kind is SensorKind.BED:
        occupied = rng.randint(0, beds)
        suspect = rng.randint(0, occupied // 2)
        confirmed = rng.randint(0, occupied - suspect)
        return (beds, occupied, suspect, confirmed, rng.randint(0, 5))
    if kind is SensorKind.CROWD:
        entries = (last[0] if last else 0) + rng.randint(0, 40)
        exits = min(entries, (last[1] if last else 0) + rng.randint(0, 40))
        last[:] = [entries, exits]
        return (entries, exits, entries - exits)
    issued = (last[0] if last else 0) + rng.randint(1, 6)
    served = min(issued, (last[1] if last else 0) + rng.randint(0, 6))
    last[:] = [issued, served]
    return (issued, served, rng.randint(1, 4))


class Publisher:
    """Gateways publishing a stream at QoS 1. ``publish`` returns once the broker has the
    message, through disconnects (a broker restart): at least once, like a gateway's spool.
    A message in flight when the connection drops is sent again by paho after the reconnect
    and may arrive twice; the ingester stores it once. A merely slow PUBACK never makes a
    second copy (tests that count messages exactly rely on that)."""

    def __init__(
        self, broker: Mosquitto, gateways: list[str], *, role: ServiceRole | None = None
    ) -> None:
        self.clients: dict[str, mqtt.Client] = {}
        for gw in gateways:
            if role is None:
                # It publishes batches, so even a direct device gets a gateway's channels here.
                broker.add_user(gw, f"{gw}-pw", kind="gateway")
            else:
                broker.add_user(gw, f"{gw}-pw", role=role)
            client = mqtt.Client(
                callback_api_version=CallbackAPIVersion.VERSION2,
                client_id=gw,
                protocol=MQTTProtocolVersion.MQTTv5,
            )
            client.username_pw_set(gw, f"{gw}-pw")
            client.reconnect_delay_set(min_delay=0.05, max_delay=0.3)
            client.connect_async(broker.host, broker.port)
            client.loop_start()
            self.clients[gw] = client

    def publish(self, msg: Message, timeout: float = 20.0) -> None:
        """Publish until the broker acknowledged ``msg``."""
        client = self.clients[msg.gateway]
        deadline = time.monotonic() + timeout
        info: mqtt.MQTTMessageInfo | None = None
        while time.monotonic() < deadline:
            if info is None:
                left = max(0.05, deadline - time.monotonic())
                wait_for(client.is_connected, f"{msg.gateway} connected", left)
                info = client.publish(msg.topic, msg.payload, qos=1)
            try:
                # However long the PUBACK takes, wait for this copy: paho resends it itself
                # after a reconnect, and publishing again would deliver the message twice.
                info.wait_for_publish(0.5)
                if info.is_published():
                    return
            except (RuntimeError, ValueError):
                # Refused on the spot (the connection went between the check and the call):
                # publish it again once connected.
                info = None
        raise AssertionError(f"could not publish {msg.topic} within {timeout}s")

    def close(self) -> None:
        """Disconnect every gateway."""
        for client in self.clients.values():
            client.disconnect()
            client.loop_stop()


@contextmanager
def publishing(
    broker: Mosquitto, gateways: list[str], *, role: ServiceRole | None = None
) -> Iterator[Publisher]:
    """A :class:`Publisher`, closed on exit. ``role`` publishes with a service role's rights
    instead of each device's own (e.g. ``pantau-replay``: any device's data topics), to test
    what the ingester does with messages the broker would keep from a device."""
    pub = Publisher(broker, gateways, role=role)
    try:
        for gw, client in pub.clients.items():
            wait_for(client.is_connected, f"{gw} connected")
        yield pub
    finally:
        pub.close()


class StreamThread(threading.Thread):
    """Publishes a stream from a daemon thread, ``pause_s`` between messages; ``sent``
    counts the messages the broker acknowledged. With ``hold_at`` it stops after that many
    messages until :meth:`resume`, so a test acting "mid-stream" has a stream left to send
    whatever the machine's speed."""

    def __init__(
        self, pub: Publisher, stream: Stream, *, pause_s: float = 0.0, hold_at: int | None = None
    ) -> None:
        super().__init__(name="stream-publisher", daemon=True)
        self.pub, self.stream, self.pause_s = pub, stream, pause_s
        self.hold_at = hold_at
        self.sent = 0
        self.error: AssertionError | OSError | None = None
        self._moved = threading.Condition()

    def run(self) -> None:
        try:
            for msg in self.stream.messages:
                with self._moved:
                    self._moved.wait_for(lambda: self.sent != self.hold_at)
                self.pub.publish(msg)
                self.sent += 1
                if self.pause_s:
                    time.sleep(self.pause_s)
        except (AssertionError, OSError) as exc:  # surfaced by finish() in the test thread
            self.error = exc

    def resume(self, *, hold_at: int | None = None) -> None:
        """Let a held stream go on, to be held again after ``hold_at`` messages if given."""
        with self._moved:
            self.hold_at = hold_at
            self._moved.notify_all()

    def finish(self, timeout: float = 30.0) -> None:
        """Resume if held, join, and fail if publishing failed."""
        self.resume()
        self.join(timeout)
        assert not self.is_alive(), "publisher still running"
        if self.error is not None:
            raise self.error


def stored_rows(influx: InfluxHTTP) -> list[Row]:
    """Every raw reading in InfluxDB, as a list (so duplicates would show)."""
    out: list[Row] = []
    for kind in SensorKind:
        names = KIND_FIELDS[kind]
        cols = ", ".join(ident(n) for n in names)
        q = f"SELECT seq, {cols} FROM {ident(kind.value)} GROUP BY sensor"  # noqa: S608
        for series in influx.query(q):
            sensor = series.tags["sensor"]
            for row in series.rows():
                vals = tuple(int(row[n]) for n in names)
                out.append((sensor, int(row["time"]), int(row["seq"]), vals))
    return out


def raw_count(influx: InfluxHTTP) -> int:
    """How many raw readings InfluxDB holds (all kinds)."""
    total = 0
    for kind in SensorKind:
        first = KIND_FIELDS[kind][0]
        q = f"SELECT count({ident(first)}) FROM {ident(kind.value)}"  # noqa: S608
        for series in influx.query(q):
            total += sum(int(r["count"]) for r in series.rows())
    return total


def latest_aggregates(influx: InfluxHTTP) -> dict[tuple[str, tuple[tuple[str, str], ...]], Any]:
    """The newest point of every aggregate series, without its time: what a dashboard shows."""
    out: dict[tuple[str, tuple[tuple[str, str], ...]], Any] = {}
    for m in ("bed_rollup", "crowd_site", "queue_site"):
        q = f"SELECT * FROM {ident(m)} GROUP BY * ORDER BY time DESC LIMIT 1"  # noqa: S608
        for series in influx.query(q):
            (row,) = series.rows()
            fields = {k: v for k, v in row.items() if k != "time" and k not in series.tags}
            out[(m, tuple(sorted(series.tags.items())))] = fields
    return out


def scrape(port: int) -> dict[str, float]:
    """The ingester's /metrics over real HTTP: ``name{labels}`` -> value."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def metric(port: int, name: str) -> float:
    """One sample of the ingester's /metrics, -1 if the endpoint does not answer (yet)."""
    try:
        return scrape(port).get(name, -1.0)
    except httpx.HTTPError:
        return -1.0

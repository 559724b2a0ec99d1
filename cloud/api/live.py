"""The live hub behind ``/v1/stream``: one MQTT subscription, fanned out to every SSE client.

The hub subscribes (aiomqtt, inside the API process) to the gateways' reading topics and turns
each message into a small ``change`` event naming the site that changed, its kind, kecamatan,
the sensor kinds in the message and the newest observation time in it. It carries no counts on
purpose: the numbers a client shows must be the API's (one formula, one module), so a client
refetches the site and can tell, from ``observed_ms``, whether the API already has the reading
(the ingester writes it to InfluxDB a window after the broker delivered it).

Fan-out costs one ring buffer, not one queue per client: events get consecutive sequence
numbers and sit in a bounded deque; every client keeps a cursor and, when woken, reads what
lies past it. So a thousand clients cost a thousand cursors, a slow client never holds memory,
and resuming after a reconnect (``Last-Event-ID``) is the same read from an older cursor. A
client whose cursor fell out of the ring, or that comes from another API process (the id names
the hub's epoch), gets one ``reset`` event: refetch everything.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Container
from dataclasses import dataclass
from typing import Any

import aiomqtt
import numpy as np
import orjson

from city import Registry
from cloud.api.config import ApiSettings
from contract.backoff import backoff_delay
from contract.binary import decode_binary_batch, is_binary
from contract.errors import PayloadError, TopicError
from contract.mqtttls import MqttTlsSettings
from contract.mqtturl import BrokerUrl
from contract.topics import Channel, parse, subscription

log = logging.getLogger(__name__)

#: The channels whose messages change what the API serves.
LIVE_CHANNELS = (Channel.READINGS, Channel.READING)
_BACKOFF_BASE_S = 0.5
_BACKOFF_CAP_S = 30.0


@dataclass(frozen=True, slots=True)
class LiveEvent:
    """One event as it goes on the wire, encoded once for every client."""

    seq: int
    frame: bytes


def sse_frame(event: str, data: dict[str, Any], *, event_id: str | None = None) -> bytes:
    """One Server-Sent Events frame (``id``, ``event``, a single-line JSON ``data``)."""
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: ".encode() + orjson.dumps(data) + b"\n\n"


def _site_readings(
    channel: Channel, raw: bytes, sensors: Container[str]
) -> tuple[set[str], int | None]:
    """Which of ``sensors`` (the site's, from the registry) a reading message holds, and the
    newest observation time (ms) among their readings. Only what the event needs is read;
    validating is the ingester's job, which refuses what is malformed or foreign."""
    if channel is Channel.READINGS and is_binary(raw):
        batch = decode_binary_batch(raw)
        ours = np.fromiter((s in sensors for s in batch.sensor_ids), bool, len(batch.sensor_ids))
        mask = ours[batch.sensor] if len(batch) else np.zeros(0, bool)
        present = {s for s, mine in zip(batch.sensor_ids, ours, strict=True) if mine}
        return present, int(batch.ts[mask].max()) if mask.any() else None
    doc = orjson.loads(raw)
    readings = (
        doc.get("readings") if isinstance(doc, dict) and channel is Channel.READINGS else [doc]
    )
    if not isinstance(readings, list):
        return set(), None
    found: set[str] = set()
    stamps: list[int] = []
    for r in readings:
        if isinstance(r, dict) and isinstance(r.get("sensor"), str) and r["sensor"] in sensors:
            found.add(r["sensor"])
            if isinstance(r.get("ts"), int):
                stamps.append(r["ts"])
    return found, max(stamps) if stamps else None


class LiveHub:
    """Keeps the ring of recent change events and wakes every client on each new one.

    Build it without I/O; ``async with hub`` starts the MQTT task (connect, subscribe,
    reconnect with full-jitter backoff) and stops it on exit."""

    def __init__(
        self,
        *,
        registry: Registry,
        mqtt_url: str,
        username: str | None = None,
        password: str | None = None,
        tls: MqttTlsSettings | None = None,
        buffer_size: int = 4096,
        heartbeat_s: float = 15.0,
        flush_s: float = 0.05,
    ) -> None:
        url = BrokerUrl.parse(mqtt_url)
        self._host, self._port = url.host, url.port
        #: CA and client certificate, for an ``mqtts://`` URL only
        self._tls = (tls or MqttTlsSettings()) if url.tls else None
        self._username = username
        self._password = password
        self.use_registry(registry)
        self.heartbeat_s = heartbeat_s
        #: Clients are woken at most once per ``flush_s``, and each writes everything new in one
        #: chunk: under a burst, a client costs one wake-up and one socket write per flush, not
        #: per event (at 1 000 clients, the wake-ups are what the server spends its CPU on).
        self.flush_s = flush_s
        self._wake_due = False
        #: Names this hub in event ids, so an id from another process (or before a restart)
        #: is recognised as foreign and answered with ``reset``.
        self.epoch = time.time_ns() // 1_000_000
        self._ring: deque[LiveEvent] = deque(maxlen=buffer_size)
        self._seq = 0
        self._changed = asyncio.Event()
        #: Heartbeats so far: one timer for the hub wakes every client each ``heartbeat_s``,
        #: rather than a timeout per client per wait (a timer made and cancelled per client
        #: for every event was two thirds of the fan-out's CPU: docs/performance.md).
        self._beats = 0
        self._beat: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None
        #: Set while the MQTT subscription is granted (tests wait on it).
        self.subscribed = asyncio.Event()
        self.clients = 0
        self._closing = False
        self._loop: asyncio.AbstractEventLoop | None = None

    def use_registry(self, registry: Registry) -> None:
        """Build events from ``registry``'s sites and sensors from now on (a reload)."""
        site_sensors: dict[str, dict[str, str]] = {}
        for sensor in registry:
            site_sensors.setdefault(sensor.site, {})[sensor.id] = sensor.kind.value
        # Two assignments the event loop cannot interleave with handle(): both run on it.
        self._registry = registry
        #: site -> {sensor id: kind}: which readings belong to which site.
        self._site_sensors = site_sensors

    @classmethod
    def from_settings(cls, settings: ApiSettings, registry: Registry) -> LiveHub:
        """The hub of an API with ``settings``: the broker and account of ``PANTAU_MQTT_*``."""
        secret = settings.mqtt_password
        return cls(
            registry=registry,
            mqtt_url=settings.mqtt_url,
            username=settings.mqtt_username,
            password=None if secret is None else secret.get_secret_value(),
            tls=settings,
            buffer_size=settings.live_buffer,
        )

    async def __aenter__(self) -> LiveHub:
        self._loop = asyncio.get_running_loop()
        if not self.fed:
            self._task = asyncio.create_task(self._run(), name="live-hub")
        return self

    # --- fed by another thread's broker connection -------------------------------------------
    #: True when the API's state follower feeds this hub (one broker connection per API
    #: process: the broker binds the API's account to one client id, docs/adr/0010).
    fed = False

    def feed(self, topic: str, payload: bytes) -> None:
        """From another thread: one broker message on a reading channel."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self.handle, topic, payload)

    def feed_subscribed(self, *, again: bool) -> None:
        """From another thread: the feeding connection's subscriptions were granted;
        ``again`` after a reconnect, when what changed meanwhile never reached clients."""
        if self._loop is None:
            return

        def granted() -> None:
            if again:
                self.reset("the API's broker connection was restored")
            log.info("live stream subscribed (on the API's state connection)")
            self.subscribed.set()

        self._loop.call_soon_threadsafe(granted)

    def feed_lost(self) -> None:
        """From another thread: the feeding connection is gone."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self.subscribed.clear)

    async def __aexit__(self, *exc: object) -> None:
        if self._beat is not None:
            self._beat.cancel()
            self._beat = None
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    # --- the MQTT side ------------------------------------------------------------------------

    async def _run(self) -> None:
        attempt, was_up = 0, False
        while True:
            try:
                async with aiomqtt.Client(
                    self._host,
                    self._port,
                    username=self._username,
                    password=self._password,
                    keepalive=30,
                    tls_context=None if self._tls is None else self._tls.mqtt_tls_context(),
                ) as client:
                    for channel in LIVE_CHANNELS:
                        await client.subscribe(subscription(channel), qos=0)
                    log.info("live stream subscribed on %s:%d", self._host, self._port)
                    if was_up:
                        # What changed while we were away never reached clients: say so.
                        self.reset("the API's broker connection was restored")
                    self.subscribed.set()
                    attempt, was_up = 0, True
                    async for message in client.messages:
                        self.handle(str(message.topic), message.payload)
            except aiomqtt.MqttError as exc:
                self.subscribed.clear()
                delay = backoff_delay(attempt, base=_BACKOFF_BASE_S, cap=_BACKOFF_CAP_S)
                attempt += 1
                log.warning("live stream: MQTT %s; reconnecting in %.1f s", exc, delay)
                await asyncio.sleep(delay)

    def handle(self, topic: str, payload: Any) -> LiveEvent | None:
        """Turn one broker message into a ``change`` event (None for what no client needs:
        foreign topics, sites the registry does not list, payloads that are not readings)."""
        try:
            parsed = parse(topic)
        except TopicError:
            return None
        site = self._registry.sites.get(parsed.site)
        if parsed.channel not in LIVE_CHANNELS or site is None:
            return None
        if not isinstance(payload, bytes | bytearray):
            return None
        sensors = self._site_sensors.get(site.id, {})
        try:
            found, newest = _site_readings(parsed.channel, bytes(payload), sensors)
        except (PayloadError, orjson.JSONDecodeError) as exc:
            log.debug("live stream: skipping %s: %s", topic, exc)
            return None
        if not found:
            return None
        kel = self._registry.kecamatan_of_kelurahan.get(site.kelurahan)
        return self.publish(
            "change",
            {
                "site": site.id,
                "site_kind": site.kind.value,
                "kecamatan": None if kel is None else kel.code,
                "kinds": sorted({sensors[s] for s in found}),
                "observed_ms": newest,
            },
        )

    # --- the client side ----------------------------------------------------------------------

    def publish(self, event: str, data: dict[str, Any]) -> LiveEvent:
        """Append an event to the ring and wake every client."""
        self._seq += 1
        ev = LiveEvent(self._seq, sse_frame(event, data, event_id=f"{self.epoch}-{self._seq}"))
        self._ring.append(ev)
        if self.flush_s <= 0:
            self._wake()
        elif not self._wake_due:
            self._wake_due = True
            asyncio.get_running_loop().call_later(self.flush_s, self._wake)
        return ev

    def _heartbeat(self) -> None:
        self._beats += 1
        self._beat = None
        self._wake()
        self._keep_beating()

    def _keep_beating(self) -> None:
        """Keep the heartbeat timer running while a client is connected."""
        if self._beat is None and self.clients > 0 and not self._closing:
            loop = asyncio.get_running_loop()
            self._beat = loop.call_later(self.heartbeat_s, self._heartbeat)

    def _wake(self) -> None:
        self._wake_due = False
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def end_streams(self) -> None:
        """End every client's stream (from any thread, a signal handler included). A stream
        never ends by itself, and a server's graceful shutdown waits for open responses, so the
        server calls this when asked to stop; browsers then reconnect to another instance."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._end_streams)

    def _end_streams(self) -> None:
        self._closing = True
        self._wake()

    def reset(self, reason: str) -> LiveEvent:
        """Tell every client to refetch everything (events may have been missed)."""
        return self.publish("reset", {"reason": reason})

    def cursor(self, last_event_id: str | None) -> tuple[int, bool]:
        """Where a client starts: (sequence number it has seen, whether it must reset).

        No id: from now on. An id of this hub still in the ring: replay what followed it.
        Anything else (another epoch, a gap, garbage): reset, then from now on."""
        if last_event_id is None:
            return self._seq, False
        epoch, _, seq_text = last_event_id.strip().partition("-")
        try:
            seen = int(seq_text)
            same = int(epoch) == self.epoch
        except ValueError:
            return self._seq, True
        oldest = self._ring[0].seq if self._ring else self._seq + 1
        if not same or seen > self._seq or seen < oldest - 1:
            return self._seq, True
        return seen, False

    def _since(self, seen: int) -> list[LiveEvent] | None:
        """Events after ``seen``; None when some of them already left the ring."""
        if seen >= self._seq:
            return []
        oldest = self._ring[0].seq
        if seen < oldest - 1:
            return None
        return list(itertools.islice(self._ring, seen - oldest + 1, None))

    async def frames(self, last_event_id: str | None = None) -> AsyncIterator[bytes]:
        """The byte stream for one client: a ``retry`` hint, then events as they come, with a
        comment line every ``heartbeat_s`` so proxies keep the connection open."""
        seen, must_reset = self.cursor(last_event_id)
        self.clients += 1
        try:
            yield b"retry: 3000\n\n"
            if must_reset:
                yield sse_frame("reset", {"reason": "resume id unknown or too old"})
            while not self._closing:
                waiter = self._changed
                events = self._since(seen)
                if events is None:
                    # Too slow to keep up: skip to now and have the client refetch.
                    yield sse_frame("reset", {"reason": "client fell behind"})
                    seen = self._seq
                    continue
                if events:
                    seen = events[-1].seq
                    yield b"".join(ev.frame for ev in events)
                    continue
                beats = self._beats
                self._keep_beating()
                await waiter.wait()
                if self._beats != beats and seen >= self._seq:
                    yield b": keepalive\n\n"
        finally:
            self.clients -= 1

"""Keeping :class:`cloud.api.state.LiveState` fresh: a background thread that follows the
ingesters' state topic (and the gateways' retained status, cloud/api/state_gateways.py) over
MQTT and re-seeds from InfluxDB after every (re)subscription.

Why a thread with paho rather than aiomqtt in the event loop: merging a delta is numpy work
that should not stall request handling, and the ingester already speaks paho, so both ends of
the state topic use one MQTT client library. The thread never touches the event loop except
through ``call_soon_threadsafe`` (change events).

Why re-seed after each subscription: the API subscribes with a clean session, so deltas
published while it was disconnected are gone. The ingesters store a window before they publish
its delta, so what a missed delta held is in InfluxDB by then; merging that seed is the same
join as merging the delta (idempotent), never a double count.

Reconnects build a fresh client each attempt and wait with full jitter (STYLE.md 7).
"""

from __future__ import annotations

import logging
import queue
import ssl
import threading

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from cloud.api.config import ApiSettings
from cloud.api.live import LIVE_CHANNELS, LiveHub
from cloud.api.state import LiveState
from cloud.influx import InfluxHTTP
from contract import topics
from contract.backoff import backoff_delay
from contract.errors import StorageError
from contract.mqtttls import configure_tls, tls_failure_words
from contract.secrets import redact_url
from contract.topics import Channel

log = logging.getLogger(__name__)

_BACKOFF_BASE_S = 0.2
_BACKOFF_CAP_S = 30.0
#: Deltas merged in one go at most (a burst after an ingester's HELLO is merged in batches).
_BATCH = 256


def state_topic(settings: ApiSettings) -> str:
    """The topic the ingesters of this deployment publish state deltas on."""
    return topics.ingest_state(settings.ingest_group or topics.LONE_INGEST_GROUP)


class StateFollower:
    """Follows the ingesters' state for ``live``. Construction does no I/O; :meth:`start`
    starts the thread, :meth:`stop` ends it."""

    def __init__(
        self,
        *,
        live: LiveState,
        settings: ApiSettings,
        influx: InfluxHTTP,
        hub: LiveHub | None = None,
    ) -> None:
        self.live = live
        #: the live stream's hub, fed from this connection (its reading channels)
        self.hub = hub
        self._was_subscribed = False
        self.settings = settings
        self.influx = influx
        self.topic = state_topic(settings)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._inbox: queue.Queue[bytes | None] = queue.Queue()
        self._lost = threading.Event()
        self._seed_due = threading.Event()
        #: set while subscribed to the state topic (for health checks and tests)
        self.subscribed = threading.Event()

    def start(self) -> StateFollower:
        """Start following in a daemon thread."""
        self._thread = threading.Thread(target=self._run, name="pantau-api-state", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop following and wait for the thread."""
        self._stop.set()
        self._inbox.put(None)
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        attempt = 0
        while not self._stop.is_set():
            try:
                client = self._connect()
            except OSError as exc:  # the TLS handshake too: its failure in words
                why = tls_failure_words(exc) if isinstance(exc, ssl.SSLError) else exc
                log.warning("state topic: MQTT connect to %s failed: %s", self._url(), why)
                client = None
            if client is not None:
                attempt = 0
                try:
                    self._follow()
                finally:
                    client.disconnect()
                    client.loop_stop()
                    self.subscribed.clear()
            if self._stop.is_set():
                break
            self._stop.wait(backoff_delay(attempt, base=_BACKOFF_BASE_S, cap=_BACKOFF_CAP_S))
            attempt += 1

    def _url(self) -> str:
        return redact_url(self.settings.mqtt_url)

    def _connect(self) -> mqtt.Client:
        s = self.settings
        self._lost.clear()
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            # The id the broker binds the API's account to; a clean session each time (the
            # follower re-reads InfluxDB after every gap, so there is nothing to resume).
            client_id=s.mqtt_client_id,
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        password = s.mqtt_password.get_secret_value() if s.mqtt_password is not None else None
        client.username_pw_set(s.mqtt_username, password)
        if s.mqtt_url.tls:
            configure_tls(client, s)
        client.reconnect_delay_set(min_delay=3600, max_delay=3600)  # we reconnect ourselves
        client.on_connect = lambda c, u, f, rc, p: self._on_connect(c, rc)
        client.on_subscribe = lambda c, u, mid, rcs, p: self._on_subscribe(rcs)
        client.on_message = lambda c, u, msg: self._on_message(msg)
        client.on_disconnect = lambda c, u, f, rc, p: self._on_lost(rc)
        client.connect(s.mqtt_url.host, s.mqtt_url.port, 30)
        client.loop_start()
        return client

    def _on_connect(self, client: mqtt.Client, rc: ReasonCode) -> None:
        if rc.is_failure:
            log.error("state topic: broker refused the API's connection: %s", rc)
            self._on_lost(rc)
            return
        subs = [
            (self.topic, SubscribeOptions(qos=1)),
            (topics.subscription(Channel.STATUS), SubscribeOptions(qos=1)),
        ]
        if self.hub is not None:
            subs += [(topics.subscription(ch), SubscribeOptions(qos=0)) for ch in LIVE_CHANNELS]
        client.subscribe(subs)

    def _on_message(self, msg: mqtt.MQTTMessage) -> None:
        if topics.is_internal(msg.topic):
            self._inbox.put(bytes(msg.payload))
        elif msg.topic.endswith("/" + Channel.STATUS.value):
            # a gateway's retained status: small, validated right here
            self.live.offer_status(msg.topic, bytes(msg.payload))
        elif self.hub is not None:
            self.hub.feed(msg.topic, bytes(msg.payload))

    def _on_subscribe(self, reason_codes: list[ReasonCode]) -> None:
        if any(rc.is_failure for rc in reason_codes):
            log.error("state topic %s: subscription refused (check the ACL)", self.topic)
            self._on_lost(reason_codes[0])
            return
        log.info("following ingester state on %s", self.topic)
        if self.hub is not None:
            self.hub.feed_subscribed(again=self._was_subscribed)
        self._was_subscribed = True
        self.subscribed.set()
        self._seed_due.set()
        self._inbox.put(b"")  # wake the loop to seed now

    def _on_lost(self, rc: ReasonCode) -> None:
        if self.hub is not None:
            self.hub.feed_lost()
        if not self._stop.is_set():
            log.warning("state topic: connection lost (%s); reconnecting", rc)
        self._lost.set()
        self._inbox.put(None)

    def _follow(self) -> None:
        """Merge deltas until the connection is lost or we are stopped; seed when due."""
        while not (self._stop.is_set() or self._lost.is_set()):
            try:
                # While a seed is due (InfluxDB was down), retry it now and then.
                first = self._inbox.get(timeout=5.0 if self._seed_due.is_set() else None)
            except queue.Empty:
                first = b""
            if first is None:
                continue
            batch = [first] if first else []
            while len(batch) < _BATCH:
                try:
                    more = self._inbox.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._inbox.put(None)
                    break
                if more:
                    batch.append(more)
            if batch:
                self.live.merge_payloads(batch)
            if self._seed_due.is_set():
                self._seed()

    def _seed(self) -> None:
        try:
            changed = self.live.seed(self.influx)
        except StorageError as exc:
            # Not fatal: deltas keep the state fresh; the next subscription seeds again.
            log.warning("could not seed state from InfluxDB: %s", exc)
            return
        self._seed_due.clear()
        log.info("seeded state from InfluxDB: %d sensors changed", changed)

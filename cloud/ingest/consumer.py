"""The ingester's MQTT session: connect, subscribe, take messages into a bounded buffer, cut
them into windows, acknowledge them.

Persistent MQTT v5 session (``clean_start=False``, session expiry, manual acks), so what is not
acknowledged is redelivered after a crash or a reconnect. Each connection gets a new
*generation*: a message is acknowledged only on the connection that delivered it (its packet id
means nothing on the next one, where the broker redelivers it anyway).

Backpressure: at most ``mqtt_receive_maximum`` unacknowledged messages in flight to us (MQTT v5
Receive Maximum) and ``held_max_bytes`` of payload held (past it the network thread stops
reading the socket until a window is done): memory stays bounded, the backlog waits at the
broker. Both byte budgets count :func:`window_bytes`: JSON at half.

The per-message path: paho's network thread only appends (topic, payload, time, packet id) to
the inbox and counts; it wakes the consumer once per window (when the inbox holds a full
window), never per message, and takes a lock only when it must wait for room. Everything else
waits for the window, on the consumer thread, and the window's PUBACKs go out as one write
(``pubacks``). docs/adr/0027-per-message-path-and-changed-rollups.md.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Sequence
from functools import partial
from itertools import accumulate
from operator import itemgetter

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from cloud.ingest.acks import Ack
from cloud.ingest.decode import Message
from cloud.ingest.metrics import IngestMetrics
from cloud.ingest.pubacks import send_pubacks
from cloud.ingest.settings import IngestSettings
from contract import Channel, topics
from contract.mqtt_reason import reason_words, reasons_words
from contract.mqtttls import configure_tls, tls_failure_words

log = logging.getLogger(__name__)

SUBSCRIPTIONS = tuple(
    topics.subscription(c) for c in (Channel.READINGS, Channel.READING, Channel.STATUS)
)
_STATUS_FILTER = topics.subscription(Channel.STATUS)
#: After a stop, how long the network thread may take to see the DISCONNECT through.
DISCONNECT_WAIT_S = 1.0
#: How long the connect waits for the CONNACK.
_CONNACK_WAIT_S = 10.0
#: After a full window, with nothing else to do, a partial one is taken once the inbox has not
#: grown for this long: the rest of a backlog, which no more messages will fill (ADR 0040).
_DRY_S = 0.01

#: What the network thread keeps of a message: topic, payload, received ms, packet id, QoS,
#: connection generation (the fields of a Message, in order).
_Received = tuple[str, bytes, int, int, int, int]
_PAYLOAD = itemgetter(1)
#: a received tuple as the Message it already is, field for field (C, no Python frame)
_AS_MESSAGE: Callable[[_Received], Message] = partial(tuple.__new__, Message)


def window_bytes(payload: bytes) -> int:
    """The bytes ``payload`` counts against ``window_max_bytes`` and ``held_max_bytes``: half of
    a JSON payload's. What a window costs is its readings (their columns, their raw lines, the
    fixed cost per window spread over them), and a JSON reading is about four times a binary
    one's bytes (ADRs 0051, 0053)."""
    return len(payload) >> 1 if payload[:1] == b"{" else len(payload)


def subscribe_options(topic_filter: str) -> SubscribeOptions:
    """QoS 1; retained messages only on the status channel, where the protocol uses them. The
    broker cannot refuse a device's retain flag on its own data topics (docs/adr/0010), so a
    retained reading would otherwise be delivered again on every (re)subscription."""
    retained = 0 if topic_filter == _STATUS_FILTER else 2  # 2: never send retained messages
    return SubscribeOptions(qos=1, retainHandling=retained)


class MqttSession:
    """The connection to the broker and the messages received on it. Construction does no
    I/O; :meth:`connect` opens a fresh client each time (the caller backs off between tries)."""

    def __init__(
        self,
        *,
        settings: IngestSettings,
        metrics: IngestMetrics,
        stop: threading.Event,
        clock_ms: Callable[[], int],
        state_topic: str | None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self._stop = stop
        self._clock_ms = clock_ms
        #: where the members of a group exchange state deltas (subscribed with No Local)
        self.state_topic = state_topic
        #: set once the subscriptions are granted
        self.subscribed = threading.Event()
        #: set once subscribed with a state topic: the caller greets the group
        self.hello_due = threading.Event()
        #: the connection is gone (refused, dropped, or given up by the caller)
        self.lost = threading.Event()
        self.client: mqtt.Client | None = None
        #: which connection is current; messages of older ones are never acknowledged
        self.generation = 0
        #: monotonic time of the last message from the broker (network thread)
        self.last_heard = time.monotonic()
        #: received, not yet taken into a window (appended by the network thread only,
        #: taken by the consumer only: deque's append and popleft are thread-safe)
        self._inbox: deque[_Received] = deque()
        #: bound on the inbox (Mosquitto 2.0.11 can send a whole Receive Maximum more per
        #: PUBACK while a backlog is queued; ADR 0006): last-resort backpressure
        self._inbox_max = 2 * settings.mqtt_receive_maximum
        #: window bytes (:func:`window_bytes`) received (network thread) / taken into windows
        #: and released (consumer); each counter has one writer, so no lock is taken per message
        self._in_bytes = 0
        self._taken_bytes = 0
        self._out_bytes = 0
        #: set when the inbox holds a full window, and by :meth:`wake`
        self._window_ready = threading.Event()
        #: PUBACKs of our own publications so far (network thread; on_publish runs just
        #: before paho marks the publication published, so a reader may see it a moment late)
        self.pubacks = 0
        #: the last window taken was cut at window_max_messages / window_max_bytes (a
        #: backlog was being read), not closed by flush_interval_s (consumer only)
        self._after_full = False
        self._room = threading.Condition()
        self.metrics.held_bytes.set_function(lambda: self._in_bytes - self._out_bytes)
        self._connected = threading.Event()
        self._connack_ok = False

    @property
    def down(self) -> bool:
        """No usable connection: never opened, or lost."""
        return self.client is None or self.lost.is_set()

    def connect(self) -> bool:
        """Open a fresh client and wait for the broker's CONNACK; False if refused or failed."""
        s = self.settings
        url = s.mqtt_url
        self.generation += 1
        gen = self.generation
        self._connected.clear()
        self.lost.clear()
        self._connack_ok = False
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=s.mqtt_client_id,
            protocol=MQTTProtocolVersion.MQTTv5,
            manual_ack=True,
        )
        client.username_pw_set(s.mqtt_username, s.mqtt_password.get_secret_value())
        if url.tls:
            configure_tls(client, s)
        # We reconnect with a fresh client ourselves; paho's own retry must not race us.
        client.reconnect_delay_set(min_delay=3600, max_delay=3600)
        client.on_connect = lambda c, u, f, rc, p: self._on_connect(gen, c, rc)
        client.on_subscribe = lambda c, u, mid, rcs, p: self._on_subscribe(gen, rcs)
        client.on_message = lambda c, u, msg: self._on_message(gen, msg)
        client.on_disconnect = lambda c, u, f, rc, p: self._on_disconnect(gen, rc)
        client.on_publish = lambda c, u, mid, rc, p: self._on_publish()
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = s.mqtt_session_expiry_s
        props.ReceiveMaximum = s.mqtt_receive_maximum
        try:
            client.connect(
                url.host, url.port, s.mqtt_keepalive_s, clean_start=False, properties=props
            )
        except OSError as exc:  # the TLS handshake too: its failure in words
            why = tls_failure_words(exc) if isinstance(exc, ssl.SSLError) else exc
            log.warning("MQTT connect to %s failed: %s", s.mqtt_url, why)
            return False
        self.client = client
        client.loop_start()
        deadline = time.monotonic() + _CONNACK_WAIT_S
        while time.monotonic() < deadline and not self._stop.is_set():
            if self._connected.wait(0.1):
                break
            if self.lost.is_set():
                break
        if not self._connack_ok:
            log.warning("MQTT connection to %s refused or timed out", s.mqtt_url)
            return False
        return True

    def _on_connect(self, gen: int, client: mqtt.Client, rc: ReasonCode) -> None:
        if gen != self.generation:
            return
        if rc.is_failure:
            log.error("MQTT broker refused the connection: %s", reason_words(rc))
            self.lost.set()
            return
        self._connack_ok = True
        self._connected.set()
        log.info("connected to %s as %s", self.settings.mqtt_url, self.settings.mqtt_client_id)
        client.subscribe(self.subscriptions())

    def subscriptions(self) -> list[tuple[str, SubscribeOptions]]:
        """What this member subscribes to: the gateway channels (shared among the group's
        members when ``mqtt_shared_group`` is set) and, with a state topic, that topic,
        non-shared and without our own publications (No Local)."""
        group = self.settings.mqtt_shared_group
        subs = [
            (t if group is None else topics.shared(group, t), subscribe_options(t))
            for t in SUBSCRIPTIONS
        ]
        if self.state_topic is not None:
            subs.append((self.state_topic, SubscribeOptions(qos=1, noLocal=True)))
        return subs

    def _on_subscribe(self, gen: int, reason_codes: list[ReasonCode]) -> None:
        if gen != self.generation:
            return
        failed = [rc for rc in reason_codes if rc.is_failure]
        if failed:
            log.error(
                "subscription refused by the broker (check the ACL): %s", reasons_words(failed)
            )
            return
        self.metrics.subscribed.set(1)
        if self.state_topic is not None:
            self.hello_due.set()
        # Operators and pantau.stack wait for this line: from here on nothing is lost.
        log.info("subscribed: readings are queued for this session from now on")
        self.subscribed.set()

    def _on_message(self, gen: int, msg: mqtt.MQTTMessage) -> None:
        # The network thread's whole per-message work: anything that can wait for the window
        # waits (module docstring).
        payload = bytes(msg.payload)  # already bytes: no copy
        size = window_bytes(payload)
        held = self._in_bytes - self._out_bytes
        if (
            (held and held + size > self.settings.held_max_bytes)
            or len(self._inbox) >= self._inbox_max
            or self._abandoned(gen)
        ) and not self._wait_for_room(gen, size):
            return  # not counted as held, never acknowledged: the broker redelivers it
        self.metrics.received()
        # Read by the ack settling: a broker that still sends is alive, however late our
        # PUBACK is.
        self.last_heard = time.monotonic()
        self._inbox.append((msg.topic, payload, self._clock_ms(), msg.mid, msg.qos, gen))
        self._in_bytes += size
        if (
            len(self._inbox) >= self.settings.window_max_messages
            or self._in_bytes - self._taken_bytes >= self.settings.window_max_bytes
        ):
            self._window_ready.set()

    def _wait_for_room(self, gen: int, size: int) -> bool:
        """Past the byte budget or the inbox bound, wait for the consumer to take or finish a
        window (it always can: whatever we hold is in the inbox or being processed). Blocking
        this thread stops reads from the socket, which is the backpressure we want. False if
        the message is no longer wanted."""
        with self._room:
            while not self._abandoned(gen):
                # We are not reading, so the broker's silence says nothing: the ack watchdog
                # (acks.overdue) must not take our own backpressure for a dead link, as it
                # did while crash suspects were retried one message per window.
                self.last_heard = time.monotonic()
                held = self._in_bytes - self._out_bytes
                if not (held and held + size > self.settings.held_max_bytes) and (
                    len(self._inbox) < self._inbox_max
                ):
                    return True
                self._window_ready.set()  # the consumer need not wait for its deadline
                self._room.wait(0.5)
        return False

    def _abandoned(self, gen: int) -> bool:
        """A message of connection ``gen`` is no longer wanted: we are stopping, or that
        connection is being torn down. It stays unacknowledged, so the broker redelivers it."""
        return self._stop.is_set() or gen != self.generation

    def _on_publish(self) -> None:
        # A state delta's PUBACK may be what the acknowledgements of parked windows wait for.
        self.pubacks += 1
        self._window_ready.set()

    def wake(self) -> None:
        """End :meth:`collect`'s current wait, so it calls ``idle`` now (any thread): a
        write settled, say."""
        self._window_ready.set()

    def _on_disconnect(self, gen: int, rc: ReasonCode) -> None:
        if gen == self.generation:
            log.warning("MQTT connection lost: %s", reason_words(rc))
            self.metrics.subscribed.set(0)
            self.lost.set()

    def teardown(self, *, graceful: bool = False) -> None:
        """Close the current connection (DISCONNECT first if ``graceful`` and still up)."""
        client, self.client = self.client, None
        if client is None:
            return
        if graceful and not self.lost.is_set():
            client.disconnect()
            self.lost.wait(DISCONNECT_WAIT_S)
        # Retire the connection first: a network thread waiting in _on_message for room then
        # gives up (the message stays unacknowledged), so loop_stop's join cannot hang.
        self.generation += 1
        with self._room:
            self._room.notify_all()
        client.loop_stop()

    def release(self, size: int) -> None:
        """A window is done (acknowledged, or left for redelivery): its bytes no longer count
        against ``held_max_bytes``."""
        with self._room:  # once per window; the network thread may wait for room
            self._out_bytes += size
            self._room.notify_all()

    def collect(self, *, wait: bool = True, idle: Callable[[], float | None]) -> list[Message]:
        """The next window: up to ``window_max_messages`` / ``window_max_bytes``, waiting at
        most ``flush_interval_s`` (not at all without ``wait``) for a full one. While it waits
        it calls ``idle``, which returns how soon it wants to be called again (None: not);
        :meth:`wake` calls it sooner.

        Right after a full window, once ``idle`` has nothing left to do, the messages held are
        taken as soon as the inbox has not grown for :data:`_DRY_S`: the end of a backlog, or
        of a burst, is not held back for ``flush_interval_s`` (a quarter of a JSON drain's
        idle time, ADR 0040). A trickle's windows still close on ``flush_interval_s``."""
        s = self.settings
        start = time.monotonic()
        deadline = start + (s.flush_interval_s if wait else 0)
        grown, grown_at = self._in_bytes, start
        while not self._full():
            now = time.monotonic()
            remaining = deadline - now
            if remaining <= 0 or (self._stop.is_set() and wait):
                break
            # Cleared before idle() looks: a wake-up while it looks (a write that settled
            # just after it checked) ends the wait below at once instead of being lost.
            self._window_ready.clear()
            if self._full():  # filled up before the clear: no wake-up will come for it
                break
            again = idle()
            if again is None and self._after_full and self._inbox:
                if self._in_bytes != grown:
                    grown, grown_at = self._in_bytes, now
                elif now - grown_at >= _DRY_S:
                    break  # the rest of a backlog: nothing is coming to fill it
                again = _DRY_S
            self._window_ready.wait(remaining if again is None else min(remaining, again))
        window, size = self._take(s.window_max_messages, s.window_max_bytes)
        self._after_full = len(window) >= s.window_max_messages or size >= s.window_max_bytes
        self._taken_bytes += size
        if window:
            with self._room:  # once per window: the network thread may wait for the inbox
                self._room.notify_all()
        return window

    def _take(self, max_messages: int, max_bytes: int) -> tuple[list[Message], int]:
        """Up to ``max_messages`` from the inbox, oldest first, stopping after the message
        that brings the window bytes to ``max_bytes``; and their window bytes. The received
        tuples become Messages in C: at one reading per message a Python loop was a tenth of
        the consumer thread's CPU (docs/adr/0029)."""
        inbox = self._inbox
        popleft = inbox.popleft
        taken = [popleft() for _ in range(min(len(inbox), max_messages))]
        sizes = list(map(window_bytes, map(_PAYLOAD, taken)))
        size = sum(sizes)
        if size >= max_bytes:  # big payloads: cut where the window reaches max_bytes
            upto = list(accumulate(sizes))
            keep = bisect_left(upto, max_bytes) + 1
            inbox.extendleft(reversed(taken[keep:]))
            taken, size = taken[:keep], upto[keep - 1]
        return list(map(_AS_MESSAGE, taken)), size

    def _full(self) -> bool:
        """The inbox holds a whole window."""
        s = self.settings
        return (
            len(self._inbox) >= s.window_max_messages
            or self._in_bytes - self._taken_bytes >= s.window_max_bytes
        )

    def ack(self, window: Sequence[Message | Ack]) -> None:
        """Acknowledge messages delivered on the current connection (QoS > 0), in one write."""
        self.metrics.released(len(window))
        client = self.client
        if client is None:
            return
        # A message delivered on an earlier connection is redelivered on this one (same
        # session) and acknowledged then; its old packet id means nothing here.
        gen = self.generation
        send_pubacks(client, [(m.mid, m.qos) for m in window if m.generation == gen and m.qos])

"""The MQTT session: connect, publish spooled batches at QoS 1, account PUBACKs, reconnect.

paho's callbacks run in the network thread (``edge.netloop``) and only hand events over:
CONNACK, disconnect and commands on the queue the publisher loop sleeps on, so they wake it at
once (:meth:`Uplink.handle`); PUBACKs on a deque the loop empties on every wake-up
(:meth:`Uplink.handle_acks`), waking it only when the in-flight window is full. An accounted
PUBACK is written to the spool by :meth:`Uplink.settle`, in the same transaction as the batches
the wake-up closed (ADR 0036). The spool and the session state are touched from that one
thread. A fresh client per attempt keeps no stale in-flight state.
"""

from __future__ import annotations

import logging
import queue
import ssl
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode

from contract.backoff import backoff_delay
from contract.errors import ConfigError
from contract.mqtt_reason import reason_words
from contract.mqtttls import tls_failure_words
from contract.topics import Channel, build
from edge.config import EdgeSettings
from edge.envelope import batch_payload
from edge.mqtt import (
    SILENCE_KEEPALIVES,
    ClientFactory,
    LinkState,
    LinkWatch,
    abort_connection,
    connect_properties,
)
from edge.netloop import NetworkLoop
from edge.spool import Outbox, PendingBatch
from edge.spool.policy import Kinded

log = logging.getLogger(__name__)

#: Batches published but not yet acknowledged, at most; keeps paho's queue and memory bounded.
MAX_IN_FLIGHT = 64
#: A CONNACK later than this counts as a failed attempt.
CONNECT_TIMEOUT_S = 10.0
#: On shutdown, how long to wait for outstanding PUBACKs before leaving them in the spool.
DRAIN_TIMEOUT_S = 3.0
#: CONNACK codes that mean "wrong secret": Bad user name or password, Not authorized.
BAD_CREDENTIALS = frozenset({134, 135})


@dataclass(frozen=True, slots=True)
class UplinkEvent:
    """Something the network thread saw, handed to the publisher loop."""

    kind: str  # connect | disconnect | puback | message
    client: mqtt.Client
    rc: int = 0
    reason: str = ""  # the reason code in words, for logs and the status file
    mid: int = 0
    payload: bytes = b""


class Uplink:
    """One gateway's MQTT session, driven by the publisher loop."""

    def __init__(
        self,
        *,
        settings: EdgeSettings,
        client_factory: ClientFactory,
        clock: Callable[[], int],
        link: LinkState,
        on_change: Callable[[], None],
        on_up: Callable[[], None],
        events: queue.Queue[Any],
    ) -> None:
        self._s = settings
        self._factory = client_factory
        self._clock = clock
        self.link = link
        self._on_change = on_change
        self._on_up = on_up
        self._events = events
        self._client: mqtt.Client | None = None
        self._net: NetworkLoop | None = None
        self._watch: LinkWatch | None = None
        self.connected = False
        self._connect_started = 0.0
        self._attempt = 0
        self._next_connect_at = 0.0
        self.in_flight: dict[int, PendingBatch] = {}
        # PUBACKs from the network thread, oldest first (appends and pops are thread-safe).
        # A wake-up of the loop per PUBACK was 10 a second on both threads at 2 000
        # readings/s; the loop takes them on its tick (ADR 0036).
        self._acks: deque[UplinkEvent] = deque()
        # Seqs sent on this connection and not acked (in flight, or refused by the broker),
        # and seqs acked but not yet deleted from the spool (in _acked): take() skips them; a
        # reconnect keeps only the latter, so the rest all go again.
        self._sent: set[int] = set()
        # Acknowledged batches whose deletion waits for settle(): one spool transaction per
        # wake-up instead of one per PUBACK plus one per put.
        self._acked: list[PendingBatch] = []
        self._seen_seqs: set[int] = set()
        self.maybe_pending = True
        # A rotation (mqtt_password_next): which secret the next attempt uses, and which ones
        # the broker refused since the last successful connect.
        self.password_next = False
        self._refused: set[bool] = set()
        self.counters = {
            "batches_sent": 0,
            "batches_acked": 0,
            "readings_acked": 0,
            "resent_batches": 0,
            "publish_errors": 0,
            "connects": 0,
            "commands": 0,
        }

    def topic(self, channel: Channel) -> str:
        """This gateway's topic on ``channel``."""
        return build(self._s.site_id, self._s.gateway_id, channel)

    def seconds_to_stall(self, now: float) -> float:
        """How long until the link counts as half-open if nothing arrives (inf if not up)."""
        if not self.connected or self._watch is None:
            return float("inf")
        return SILENCE_KEEPALIVES * self._s.keepalive_s - self._watch.silent_for(now)

    def check(self, now: float, will: Callable[[], bytes]) -> None:
        """Connect when due, give up on a late CONNACK, drop a half-open link."""
        if self._client is None:
            if now >= self._next_connect_at:
                self._connect(will())
        elif not self.connected:
            if now - self._connect_started > CONNECT_TIMEOUT_S:
                log.warning("no CONNACK in %.0fs", CONNECT_TIMEOUT_S)
                self.drop("no CONNACK")
        elif self._watch is not None:
            # A fresh reading of the clock: the loop may have waited since `now`.
            silent = self._watch.silent_for(time.monotonic())
            if silent > SILENCE_KEEPALIVES * self._s.keepalive_s:
                # Half-open: TCP still looks fine, but nothing came back for 1.5x keepalive.
                self.drop(f"no packet from the broker for {silent:.2f}s", silence_s=silent)

    def _connect(self, will_payload: bytes) -> None:
        s = self._s
        if self.password_next and s.mqtt_password_next is not None:
            s = s.model_copy(update={"mqtt_password": s.mqtt_password_next})
        try:
            client = self._factory(s, will_payload)
        except ConfigError as exc:
            # A CA or client-cert file that cannot be read: say so, and try again later (the
            # file may yet be deployed) rather than stop the agent that spools the readings.
            self._attempt_failed(f"TLS: {exc}")
            return
        events = self._events
        acks, in_flight = self._acks, self.in_flight

        def on_connect(c: mqtt.Client, _u: Any, _f: Any, rc: ReasonCode, _p: Any) -> None:
            events.put(UplinkEvent("connect", c, rc=rc.value, reason=reason_words(rc)))

        def on_disconnect(c: mqtt.Client, _u: Any, _f: Any, rc: ReasonCode, _p: Any) -> None:
            events.put(UplinkEvent("disconnect", c, rc=rc.value, reason=reason_words(rc)))

        def on_publish(c: mqtt.Client, _u: Any, mid: int, rc: ReasonCode, _p: Any) -> None:
            acks.append(UplinkEvent("puback", c, rc=rc.value, reason=reason_words(rc), mid=mid))
            # A full window waits for this PUBACK to send more: wake the loop. The length is
            # read without a lock: a stale answer costs one wake-up too many, or a send one
            # loop tick (0.2 s) late, never a batch.
            if len(in_flight) >= MAX_IN_FLIGHT:
                events.put(None)

        def on_message(c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
            events.put(UplinkEvent("message", c, payload=bytes(msg.payload)))

        client.on_connect = on_connect
        client.on_disconnect = on_disconnect
        client.on_publish = on_publish
        client.on_message = on_message
        self._watch = LinkWatch()
        net = NetworkLoop(client=client, watch=self._watch, keepalive_s=s.keepalive_s)
        self.link.connecting()
        self._connect_started = time.monotonic()
        try:
            client.connect(
                s.mqtt_url.host,
                s.mqtt_url.port,
                keepalive=s.keepalive_s,
                clean_start=False,
                properties=connect_properties(s),
            )
        except OSError as exc:
            net.stop()
            # The TLS handshake runs inside connect(): a certificate problem lands here too.
            if isinstance(exc, ssl.SSLError):
                self._attempt_failed(tls_failure_words(exc))
            else:
                self._attempt_failed(f"connect to {s.mqtt_url} failed: {exc}")
            return
        net.start()
        self._client, self._net = client, net

    def _try_other_secret(self) -> None:
        """The broker refused this attempt's secret: the next attempt uses the other one, at
        once if it was not refused too (a committed rotation then costs one round trip)."""
        self._refused.add(self.password_next)
        self.password_next = not self.password_next
        if self.password_next not in self._refused:
            self._next_connect_at = time.monotonic()
            log.warning(
                "retrying at once with %s",
                "mqtt_password_next" if self.password_next else "mqtt_password",
            )

    def _attempt_failed(self, why: str) -> None:
        self.link.down(why, self._clock(), time.monotonic())
        self._schedule_reconnect(why)

    def _schedule_reconnect(self, why: str) -> None:
        s = self._s
        delay = backoff_delay(self._attempt, base=s.reconnect_base_s, cap=s.reconnect_cap_s)
        self._attempt += 1
        self._next_connect_at = time.monotonic() + delay
        log.warning("%s; reconnect in %.2fs (attempt %d)", why, delay, self._attempt)

    def drop(self, reason: str = "broker connection lost", *, silence_s: float = 0.0) -> None:
        """Forget the current client; un-acked batches will be resent by the next one.
        ``silence_s`` > 0 means the link was given up as half-open after that much silence."""
        client, self._client = self._client, None
        net, self._net = self._net, None
        self.link.down(reason, self._clock(), time.monotonic(), silence_s=silence_s)
        self.connected = False
        self.in_flight.clear()
        self._sent = {pending.seq for pending in self._acked}
        self.maybe_pending = True
        self._on_change()
        if client is not None:
            # Cut the socket first: on a half-open link the network thread could otherwise
            # sit on a socket that never answers.
            abort_connection(client)
        if net is not None:
            net.stop()
        self._schedule_reconnect(reason)

    def handle(self, ev: UplinkEvent, on_command: Callable[[bytes], None]) -> None:
        """Apply one thing the network thread saw."""
        if ev.client is not self._client:
            return  # from a client already given up on
        if ev.kind == "connect":
            self._on_connack(ev.rc, ev.reason)
        elif ev.kind == "disconnect":
            log.warning("disconnected from broker: %s", ev.reason)
            self.drop(f"disconnected: {ev.reason}")
        elif ev.kind == "puback":
            self._on_puback(ev.mid, ev.rc, ev.reason)
        elif ev.kind == "message":
            self.counters["commands"] += 1
            on_command(ev.payload)

    def handle_acks(self) -> None:
        """Account every PUBACK the network thread left since the last call, in arrival
        order (the loop calls this before each event it handles, so a PUBACK that came
        before a disconnect is counted before the disconnect drops the in-flight batches).
        The spool forgets the acknowledged batches at the next :meth:`settle`."""
        acks = self._acks
        while acks:
            ev = acks.popleft()
            if ev.client is self._client:
                self._on_puback(ev.mid, ev.rc, ev.reason)

    def settle(self, spool: Outbox, batches: Sequence[Sequence[Kinded]] = ()) -> None:
        """Delete the batches acknowledged since the last call and store ``batches`` (closed
        windows), in one spool write; the loop calls it before anything reads the spool.
        A kill before it commits leaves the acknowledged batches to be sent again (the
        ingester drops them by seq) and the closed ones unsent, as a kill before a put did."""
        if not self._acked and not batches:
            return
        acked, self._acked = self._acked, []
        spool.settle(acked=acked, batches=batches)
        for pending in acked:
            self._sent.discard(pending.seq)
        if batches:
            self.maybe_pending = True

    def _on_connack(self, rc: int, reason: str) -> None:
        if rc != 0:
            log.error("broker refused connection: %s", reason)
            self.drop(f"connection refused: {reason}")
            if rc in BAD_CREDENTIALS and self._s.mqtt_password_next is not None:
                self._try_other_secret()
            return
        if self._client is None:
            return
        if self.password_next and self._refused:
            # Promoted: from now on the next secret is the one this agent uses.
            log.warning(
                "connected with mqtt_password_next: the broker's password was rotated; "
                "make it PANTAU_MQTT_PASSWORD and remove PANTAU_MQTT_PASSWORD_NEXT"
            )
        self._refused.clear()
        self.connected = True
        self._attempt = 0
        self.counters["connects"] += 1
        self.link.up(self._clock(), time.monotonic())
        log.info("connected to %s as %s", self._s.mqtt_url, self._s.client_id)
        result, _mid = self._client.subscribe(self.topic(Channel.CMD), qos=1)
        if result != mqtt.MQTT_ERR_SUCCESS:
            log.error("subscribe to commands failed: %s", mqtt.error_string(result))
            self.drop()
            return
        self._on_up()

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> int | None:
        """Publish at QoS 1; the mid, or None (and the session is dropped) if paho refused."""
        if self._client is None or not self.connected:
            return None
        info = self._client.publish(topic, payload, qos=1, retain=retain)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            self.counters["publish_errors"] += 1
            log.warning("publish to %s refused: %s", topic, mqtt.error_string(info.rc))
            self.drop()
            return None
        return info.mid

    def send_pending(self, spool: Outbox, clock_offset_ms: int | None) -> None:
        """Publish spooled batches until the in-flight window is full or the spool is empty."""
        if not self.maybe_pending:
            return  # the loop calls this on every wake-up; most have nothing to send
        topic = self.topic(Channel.READINGS)
        gw = self._s.gateway_id
        while self.connected and self.maybe_pending and len(self.in_flight) < MAX_IN_FLIGHT:
            limit = MAX_IN_FLIGHT - len(self.in_flight)
            batches = spool.take(limit=limit, skip=self._sent)
            if len(batches) < limit:
                # Fewer than asked for: nothing else waits until the next put or reconnect
                # (saves a second take, and its expiry query, per live batch).
                self.maybe_pending = False
            for pending in batches:
                payload = batch_payload(
                    gw=gw,
                    seq=pending.seq,
                    sent=self._clock(),
                    clock_offset_ms=clock_offset_ms,
                    body=pending.body,
                )
                mid = self.publish(topic, payload)
                if mid is None:
                    return
                self.in_flight[mid] = pending
                self._sent.add(pending.seq)
                self.counters["batches_sent"] += 1
                if pending.seq in self._seen_seqs:
                    self.counters["resent_batches"] += 1
                self._seen_seqs.add(pending.seq)
        if len(self.in_flight) >= MAX_IN_FLIGHT and self._acks:
            # PUBACKs that came in while the window was still filling found it not full and
            # woke no one: wake the loop for them now, not a tick (0.2 s) later
            self._events.put(None)

    def _on_puback(self, mid: int, rc: int, reason: str) -> None:
        pending = self.in_flight.pop(mid, None)
        if pending is None:
            return  # a status or ack publish
        self._seen_seqs.discard(pending.seq)
        if rc >= 0x80:
            # The broker refused it (ACL, quota): keep the readings, they go again after the
            # next reconnect; losing them silently would be worse.
            self.counters["publish_errors"] += 1
            log.error("broker refused batch %d: %s", pending.seq, reason)
            return
        self._acked.append(pending)
        self.counters["batches_acked"] += 1
        self.counters["readings_acked"] += len(pending.ids)

    def close(self, offline_status: bytes | None) -> None:
        """Publish ``offline_status`` (retained) if connected, then a normal DISCONNECT (the
        broker discards the last-will; the retained offline status stands)."""
        client, net = self._client, self._net
        if client is None or net is None or not self.connected:
            return
        if offline_status is not None:
            info = client.publish(self.topic(Channel.STATUS), offline_status, qos=1, retain=True)
            if info.rc == mqtt.MQTT_ERR_SUCCESS:
                try:
                    info.wait_for_publish(timeout=DRAIN_TIMEOUT_S)
                except RuntimeError as exc:
                    log.warning("offline status not confirmed: %s", exc)
            else:
                log.warning("offline status refused: %s", mqtt.error_string(info.rc))
        client.disconnect()
        net.stop()
        self._client = self._net = None
        self.connected = False

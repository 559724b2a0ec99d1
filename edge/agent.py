"""The edge agent: serial readers -> batches -> outbox -> MQTT (QoS 1), plus status and commands.

Threads: one reader per serial port (``edge.serial_reader``) feeding a queue, paho's network
thread (callbacks only enqueue events), and the publisher loop in :meth:`EdgeAgent.run`, which
alone touches the outbox, the batch being filled and the MQTT session state.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIServer

import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode
from pydantic import ValidationError

from contract.backoff import backoff_delay
from contract.errors import ConfigError, ContractError, RejectReason, StorageError
from contract.mqtt_reason import reason_words
from contract.payload import (
    Batch,
    Command,
    CommandAck,
    CommandName,
    Reading,
    check_version,
    encode,
    load_json,
)
from contract.status import GatewayState, GatewayStatus
from contract.topics import Channel, build
from edge.clock import ClockProbe, ClockWatch, probe_for
from edge.config import EdgeSettings, load_settings
from edge.metrics import StatusCollector, serve_metrics
from edge.mqtt import (
    SILENCE_KEEPALIVES,
    ClientFactory,
    LinkState,
    LinkWatch,
    abort_connection,
    connect_properties,
    paho_client,
)
from edge.outbox import Outbox, PendingBatch, SqliteOutbox, split_lanes, wall_ms
from edge.serial_reader import PortReader, SensorHealth, SerialOpener, serial_opener

log = logging.getLogger(__name__)

#: Batches published but not yet acknowledged, at most; keeps paho's queue and memory bounded.
MAX_IN_FLIGHT = 64
#: A CONNACK later than this counts as a failed attempt.
CONNECT_TIMEOUT_S = 10.0
#: On shutdown, how long to wait for outstanding PUBACKs before leaving them in the spool.
DRAIN_TIMEOUT_S = 3.0
#: Status "on change" is rate-limited to this, so a flapping port cannot flood the broker.
MIN_STATUS_GAP_S = 1.0
LOOP_TICK_S = 0.05
#: The loop's tick while batches wait for their PUBACK: acks come back within a millisecond or
#: two, and a backlog drains only as fast as the loop frees in-flight slots.
ACK_TICK_S = 0.002

_RUNTIME_FIELDS = ("batch_max_readings", "batch_max_delay_s", "status_interval_s")


class CommandError(ContractError):
    """A command whose arguments cannot be applied; becomes an error ack."""

    def __init__(self, detail: str) -> None:
        super().__init__(RejectReason.SCHEMA_VIOLATION, detail)


@dataclass(frozen=True, slots=True)
class _Event:
    """Something paho's thread saw, handed to the publisher loop."""

    kind: str  # connect | disconnect | puback | message
    client: mqtt.Client
    rc: int = 0
    reason: str = ""  # the reason code in words, for logs and the status file
    mid: int = 0
    payload: bytes = b""


class EdgeAgent:
    """One gateway's agent. Build it (no I/O), then :meth:`run` until :meth:`request_stop`."""

    def __init__(
        self,
        *,
        settings: EdgeSettings,
        config_file: Path | None = None,
        outbox: Outbox | None = None,
        opener: SerialOpener | None = None,
        client_factory: ClientFactory = paho_client,
        clock: Callable[[], int] = wall_ms,
        clock_probe: ClockProbe | None = None,
    ) -> None:
        self.settings = settings
        self._config_file = config_file
        self._outbox_given = outbox
        self._outbox: Outbox | None = outbox
        self._opener = opener or serial_opener(baudrate=settings.serial_baudrate)
        self._client_factory = client_factory
        self._clock = clock
        self._stop = threading.Event()
        self._status_dirty = threading.Event()
        self._readings: queue.Queue[Reading] = queue.Queue()
        self._events: queue.Queue[_Event] = queue.Queue()
        self._readers: list[PortReader] = []
        # Publisher-loop state (touched by run() only).
        self._current: list[Reading] = []
        self._current_since = 0.0
        self._client: mqtt.Client | None = None
        self._connected = False
        self._connect_started = 0.0
        self._attempt = 0
        self._next_connect_at = 0.0
        self._in_flight: dict[int, PendingBatch] = {}
        # Seqs sent on this connection and not acked (in flight, or refused by the broker):
        # take() skips them; a reconnect clears it so they all go again.
        self._sent: set[int] = set()
        self._maybe_pending = True
        self._last_status_at = -1e9
        self._counters = {
            "batches_sent": 0,
            "batches_acked": 0,
            "readings_acked": 0,
            "resent_batches": 0,
            "publish_errors": 0,
            "connects": 0,
            "commands": 0,
        }
        self._seen_seqs: set[int] = set()
        self._metrics = StatusCollector(gateway_id=settings.gateway_id)
        self._metrics_server: WSGIServer | None = None
        self._last_snapshot_at = -1e9
        # Link and sensor health (publisher loop only).
        self.link = LinkState(since_ms=clock(), since_mono=time.monotonic())
        self._watch: LinkWatch | None = None
        self._clock_watch = ClockWatch(
            probe=clock_probe or probe_for(settings.clock_probe),
            interval_s=settings.clock_probe_interval_s,
        )
        self._started_ms = clock()
        self._silent: list[str] = []
        self._last_silent_check = -1e9

    # ------------------------------------------------------------------ lifecycle

    @property
    def _spool(self) -> Outbox:
        if self._outbox is None:
            raise StorageError("the outbox is not open: call run()", retryable=False)
        return self._outbox

    def request_stop(self) -> None:
        """Ask :meth:`run` to shut down cleanly (safe from a signal handler or any thread)."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        """True once a stop was requested."""
        return self._stop.is_set()

    def run(self) -> None:
        """Open the spool and ports, publish until stopped, then flush, say offline and close."""
        s = self.settings
        if self._outbox is None:
            self._outbox = SqliteOutbox(
                path=s.spool_path, clock=self._clock, limits=s.spool_limits
            ).open()
        self._started_ms = self._clock()
        self._clock_watch.start()
        for label, url in s.serial_ports.items():
            reader = PortReader(
                label=label,
                url=url,
                opener=self._opener,
                out=self._readings,
                clock=self._clock,
                backoff_base_s=s.reconnect_base_s,
                backoff_cap_s=min(s.reconnect_cap_s, 5.0),
                on_change=self._status_dirty.set,
                clock_jump_ms=round(s.clock_jump_s * 1000),
            )
            self._readers.append(reader)
            reader.start()
        if s.metrics_port is not None:
            self._metrics_server = serve_metrics(self._metrics, port=s.metrics_port)
        log.info(
            "edge agent %s (site %s) up: %d port(s), broker %s",
            s.gateway_id,
            s.site_id,
            len(self._readers),
            s.mqtt_url,
        )
        try:
            while not self._stop.is_set():
                self._tick()
        finally:
            self._shutdown()

    def _tick(self) -> None:
        now = time.monotonic()
        self._collect(now)
        self._handle_events()
        if self._client is None and now >= self._next_connect_at:
            self._connect()
        elif (
            self._client is not None
            and not self._connected
            and now - self._connect_started > CONNECT_TIMEOUT_S
        ):
            log.warning("no CONNACK in %.0fs", CONNECT_TIMEOUT_S)
            self._drop_client("no CONNACK")
        elif self._connected and self._watch is not None:
            # A fresh reading of the clock: _collect() may have waited a tick since `now`.
            silent = self._watch.silent_for(time.monotonic())
            if silent > SILENCE_KEEPALIVES * self.settings.keepalive_s:
                # Half-open: TCP still looks fine, but nothing came back for 1.5x keepalive.
                self._drop_client(f"no packet from the broker for {silent:.1f}s", stalled=True)
        if self._connected:
            self._send_pending()
        self._maybe_status(now)

    # ------------------------------------------------------------------ batching

    def _collect(self, now: float) -> None:
        """Move readings from the readers' queue into the current batch; close it when full or
        old enough."""
        s = self.settings
        wait = ACK_TICK_S if self._in_flight else LOOP_TICK_S
        if self._current:
            wait = max(0.0, min(wait, self._current_since + s.batch_max_delay_s - now))
        try:
            reading = self._readings.get(timeout=wait)
        except queue.Empty:
            pass
        else:
            self._add(reading)
            while True:
                try:
                    self._add(self._readings.get_nowait())
                except queue.Empty:
                    break
        if self._current and time.monotonic() - self._current_since >= s.batch_max_delay_s:
            self._close_batch()

    def _add(self, reading: Reading) -> None:
        if not self._current:
            self._current_since = time.monotonic()
        self._current.append(reading)
        if len(self._current) >= self.settings.batch_max_readings:
            self._close_batch()

    def _close_batch(self) -> int:
        """Store the current batch window in the outbox, one batch per lane (beds, queues,
        crowds); returns how many readings it held."""
        n = len(self._current)
        if n:
            for lane in split_lanes(self._current):
                self._spool.put(lane)
            self._current = []
            self._maybe_pending = True
        return n

    # ------------------------------------------------------------------ MQTT session

    def _topic(self, channel: Channel) -> str:
        return build(self.settings.site_id, self.settings.gateway_id, channel)

    def _connect(self) -> None:
        s = self.settings
        will = encode(GatewayStatus(gw=s.gateway_id, state=GatewayState.OFFLINE, ts=self._clock()))
        client = self._client_factory(s, will)
        events = self._events

        def on_connect(c: mqtt.Client, _u: Any, _f: Any, rc: ReasonCode, _p: Any) -> None:
            events.put(_Event("connect", c, rc=rc.value, reason=reason_words(rc)))

        def on_disconnect(c: mqtt.Client, _u: Any, _f: Any, rc: ReasonCode, _p: Any) -> None:
            events.put(_Event("disconnect", c, rc=rc.value, reason=reason_words(rc)))

        def on_publish(c: mqtt.Client, _u: Any, mid: int, rc: ReasonCode, _p: Any) -> None:
            events.put(_Event("puback", c, rc=rc.value, reason=reason_words(rc), mid=mid))

        def on_message(c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
            events.put(_Event("message", c, payload=bytes(msg.payload)))

        client.on_connect = on_connect
        client.on_disconnect = on_disconnect
        client.on_publish = on_publish
        client.on_message = on_message
        self._watch = LinkWatch()
        self._watch.attach(client)
        self.link.connecting()
        self._connect_started = time.monotonic()
        try:
            client.connect(
                s.mqtt_host,
                s.mqtt_port,
                keepalive=s.keepalive_s,
                clean_start=False,
                properties=connect_properties(s),
            )
        except OSError as exc:
            why = f"connect to {s.mqtt_url} failed: {exc}"
            self.link.down(why, self._clock(), time.monotonic())
            self._schedule_reconnect(why)
            return
        client.loop_start()
        self._client = client

    def _schedule_reconnect(self, why: str) -> None:
        s = self.settings
        delay = backoff_delay(self._attempt, base=s.reconnect_base_s, cap=s.reconnect_cap_s)
        self._attempt += 1
        self._next_connect_at = time.monotonic() + delay
        log.warning("%s; reconnect in %.2fs (attempt %d)", why, delay, self._attempt)

    def _drop_client(
        self, reason: str = "broker connection lost", *, stalled: bool = False
    ) -> None:
        """Forget the current client; un-acked batches will be resent by the next one."""
        client, self._client = self._client, None
        self.link.down(reason, self._clock(), time.monotonic(), stalled=stalled)
        self._connected = False
        self._in_flight.clear()
        self._sent.clear()
        self._maybe_pending = True
        self._status_dirty.set()
        if client is not None:
            # Cut the socket first: on a half-open link loop_stop() would otherwise wait for
            # PUBACKs that never come.
            abort_connection(client)
            client.loop_stop()
        self._schedule_reconnect(reason)

    def _handle_events(self) -> None:
        while True:
            try:
                ev = self._events.get_nowait()
            except queue.Empty:
                return
            if ev.client is not self._client:
                continue  # from a client already given up on
            if ev.kind == "connect":
                self._on_connack(ev.rc, ev.reason)
            elif ev.kind == "disconnect":
                log.warning("disconnected from broker: %s", ev.reason)
                self._drop_client(f"disconnected: {ev.reason}")
            elif ev.kind == "puback":
                self._on_puback(ev.mid, ev.rc, ev.reason)
            elif ev.kind == "message":
                self._on_command(ev.payload)

    def _on_connack(self, rc: int, reason: str) -> None:
        if rc != 0:
            log.error("broker refused connection: %s", reason)
            self._drop_client(f"connection refused: {reason}")
            return
        if self._client is None:
            return
        self._connected = True
        self._attempt = 0
        self._counters["connects"] += 1
        self.link.up(self._clock(), time.monotonic())
        log.info("connected to %s as %s", self.settings.mqtt_url, self.settings.client_id)
        result, _mid = self._client.subscribe(self._topic(Channel.CMD), qos=1)
        if result != mqtt.MQTT_ERR_SUCCESS:
            log.error("subscribe to commands failed: %s", mqtt.error_string(result))
            self._drop_client()
            return
        self._publish_status()

    def _publish(self, topic: str, payload: bytes, *, retain: bool = False) -> int | None:
        """Publish at QoS 1; the mid, or None (and the session is dropped) if paho refused."""
        if self._client is None:
            return None
        info = self._client.publish(topic, payload, qos=1, retain=retain)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            self._counters["publish_errors"] += 1
            log.warning("publish to %s refused: %s", topic, mqtt.error_string(info.rc))
            self._drop_client()
            return None
        return info.mid

    def _send_pending(self) -> None:
        topic = self._topic(Channel.READINGS)
        while self._connected and self._maybe_pending and len(self._in_flight) < MAX_IN_FLIGHT:
            batches = self._spool.take(limit=MAX_IN_FLIGHT - len(self._in_flight), skip=self._sent)
            if not batches:
                self._maybe_pending = False
                return
            for pending in batches:
                # The readings were validated when decoded and again when read back from
                # the spool; validating them a third time here cost a third of this loop.
                batch = Batch.model_construct(
                    v=1,
                    gw=self.settings.gateway_id,
                    seq=pending.seq,
                    sent=self._clock(),
                    clock_offset_ms=self._clock_watch.offset_ms,
                    readings=list(pending.readings),
                )
                mid = self._publish(topic, encode(batch))
                if mid is None:
                    return
                self._in_flight[mid] = pending
                self._sent.add(pending.seq)
                self._counters["batches_sent"] += 1
                if pending.seq in self._seen_seqs:
                    self._counters["resent_batches"] += 1
                self._seen_seqs.add(pending.seq)

    def _on_puback(self, mid: int, rc: int, reason: str) -> None:
        pending = self._in_flight.pop(mid, None)
        if pending is None:
            return  # a status or ack publish
        self._seen_seqs.discard(pending.seq)
        if rc >= 0x80:
            # The broker refused it (ACL, quota): keep the readings, they go again after the
            # next reconnect; losing them silently would be worse.
            self._counters["publish_errors"] += 1
            log.error("broker refused batch %d: %s", pending.seq, reason)
            return
        self._sent.discard(pending.seq)
        self._spool.mark_acked(pending)
        self._counters["batches_acked"] += 1
        self._counters["readings_acked"] += len(pending.ids)

    # ------------------------------------------------------------------ status

    def status(self, state: GatewayState = GatewayState.ONLINE) -> GatewayStatus:
        """The gateway's status now: decode stats summed over ports, spool and session
        counters, and when each sensor was last heard."""
        totals: dict[str, int | float | str] = {}
        last_seen: dict[str, int] = {}
        ports_open = 0
        for reader in self._readers:
            for key, value in reader.stats().items():
                totals[key] = int(totals.get(key, 0)) + value
            for sensor, ts in reader.sensors_last_seen().items():
                last_seen[sensor] = max(ts, last_seen.get(sensor, 0))
            ports_open += reader.is_open
        totals["ports"] = len(self._readers)
        totals["ports_open"] = ports_open
        totals.update(self._counters)
        if self._outbox is not None:
            totals["spool_depth"] = self._outbox.depth()
            age = self._outbox.oldest_age_s()
            totals["spool_oldest_age_s"] = round(age, 3) if age is not None else 0.0
            totals.update(self._outbox.stats())
        totals["in_flight"] = len(self._in_flight)
        now = self._clock()
        health = self._sensor_health()
        silent = self._silent_sensors(health, now)
        totals.update(self.link.stats(now))
        jump_ms = self.settings.clock_jump_s * 1000
        skew = {s: h.skew_ms for s, h in health.items() if h.skew_ms is not None}
        totals["sensors"] = len(health)
        totals["sensors_silent"] = len(silent)
        totals["sensors_skewed"] = sum(1 for v in skew.values() if abs(v) > jump_ms)
        totals["seq_gaps"] = sum(h.gaps for h in health.values())
        totals["sensor_resets"] = sum(h.resets for h in health.values())
        totals["duplicates"] = sum(h.duplicates for h in health.values())
        totals["clock_jumps"] = sum(h.clock_jumps for h in health.values())
        return GatewayStatus(
            gw=self.settings.gateway_id,
            state=state,
            ts=now,
            stats=totals,
            sensors_last_seen=last_seen,
            clock_offset_ms=self._clock_watch.offset_ms,
            sensor_skew_ms=skew,
            sensors_silent=silent,
            sensor_seq_gaps={s: h.gaps for s, h in health.items() if h.gaps},
            sensor_resets={s: h.resets for s, h in health.items() if h.resets},
        )

    def _sensor_health(self) -> dict[str, SensorHealth]:
        """Per-sensor stream health over all ports (a sensor moved between ports: its latest)."""
        merged: dict[str, SensorHealth] = {}
        for reader in self._readers:
            for sensor, h in reader.sensor_health().items():
                seen = merged.get(sensor)
                if seen is None or h.last_seen_ms > seen.last_seen_ms:
                    merged[sensor] = h
        return merged

    def _silent_sensors(self, health: dict[str, SensorHealth], now_ms: int) -> list[str]:
        """Sensors whose last frame is older than ``silent_after_s`` and than
        ``silent_intervals`` of their own reporting interval; configured sensors never heard
        count once the agent has run ``silent_after_s``."""
        s = self.settings
        floor_ms = s.silent_after_s * 1000
        silent = [
            sensor
            for sensor, h in health.items()
            if now_ms - h.last_seen_ms > max(floor_ms, s.silent_intervals * h.interval_ms)
        ]
        if now_ms - self._started_ms > floor_ms:
            silent += [sensor for sensor in s.sensors if sensor not in health]
        return sorted(silent)

    def _maybe_status(self, now: float) -> None:
        if now - self._last_silent_check >= 1.0:
            # A sensor falling silent (or coming back) is news: say so without waiting for
            # the next periodic status.
            self._last_silent_check = now
            silent = self._silent_sensors(self._sensor_health(), self._clock())
            if silent != self._silent:
                if silent:
                    log.warning("silent sensors: %s", ", ".join(silent))
                self._silent = silent
                self._status_dirty.set()
            if self._outbox is not None:
                # The age bound holds while nothing is put or sent too (once a second: it is
                # a query, and the bound is in seconds to days).
                self._outbox.expire()
        if self._metrics_server is not None and now - self._last_snapshot_at >= 1.0:
            self._last_snapshot_at = now
            self._metrics.update(self.status())
        since = now - self._last_status_at
        due = since >= self.settings.status_interval_s
        if due or (self._status_dirty.is_set() and since >= MIN_STATUS_GAP_S):
            self._status_dirty.clear()
            self._last_status_at = now
            self._publish_status()

    def _publish_status(self, state: GatewayState = GatewayState.ONLINE) -> int | None:
        status = self.status(state)
        payload = encode(status)
        self._write_status_file(payload)
        if not self._connected:
            return None
        return self._publish(self._topic(Channel.STATUS), payload, retain=True)

    def _write_status_file(self, payload: bytes) -> None:
        path = self.settings.status_file
        tmp = path.with_name(path.name + ".tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(payload)
            tmp.replace(path)  # atomic: `pantau edge status` never reads half a file
        except OSError as exc:
            log.warning("cannot write status file %s: %s", path, exc)

    # ------------------------------------------------------------------ commands

    def _on_command(self, payload: bytes) -> None:
        self._counters["commands"] += 1
        cmd_id = "unknown"
        try:
            doc = load_json(payload)
            if isinstance(doc, dict) and isinstance(doc.get("id"), str):
                cmd_id = doc["id"]
            check_version(doc)
            command = Command.model_validate(doc)
            result = self._execute(command)
            ack = CommandAck(id=command.id, ok=True, result=result)
        except ContractError as exc:
            ack = CommandAck(id=cmd_id, ok=False, error=str(exc))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            ack = CommandAck(id=cmd_id, ok=False, error=f"{where}: {first['msg']}")
        log.info("command %s -> ok=%s %s", ack.id, ack.ok, ack.error or "")
        if self._connected:
            self._publish(self._topic(Channel.ACK), encode(ack))

    def _execute(self, command: Command) -> dict[str, Any]:
        if command.name is CommandName.SET_INTERVAL:
            return self._cmd_set_interval(command.args)
        if command.name is CommandName.READ_NOW:
            flushed = self._close_batch()
            return {"flushed": flushed}
        if command.name is CommandName.RELOAD_CONFIG:
            return self._cmd_reload()
        # SPOOL_STATE
        age = self._spool.oldest_age_s()
        return {
            "depth": self._spool.depth(),
            "oldest_age_s": round(age, 3) if age is not None else None,
            "in_flight": len(self._in_flight),
            "current_batch": len(self._current),
            # per-lane depth, drops by lane and reason, high-water mark
            **self._spool.stats(),
        }

    def _cmd_set_interval(self, args: dict[str, Any]) -> dict[str, Any]:
        seconds = args.get("seconds")
        if isinstance(seconds, bool) or not isinstance(seconds, int | float):
            raise CommandError("set_interval needs args.seconds (a number)")
        if not 0 < seconds <= 3600:
            raise CommandError("set_interval seconds must be in (0, 3600]")
        self.settings = self.settings.model_copy(update={"batch_max_delay_s": float(seconds)})
        return {"batch_max_delay_s": float(seconds)}

    def _cmd_reload(self) -> dict[str, Any]:
        try:
            fresh = load_settings(self._config_file)
        except ConfigError as exc:
            raise CommandError(str(exc)) from None
        applied = {f: getattr(fresh, f) for f in _RUNTIME_FIELDS}
        restart = sorted(
            name
            for name in type(fresh).model_fields
            if name not in _RUNTIME_FIELDS and getattr(fresh, name) != getattr(self.settings, name)
        )
        self.settings = self.settings.model_copy(update=applied)
        return {"applied": applied, "restart_required": restart}

    # ------------------------------------------------------------------ shutdown

    def _shutdown(self) -> None:
        log.info("edge agent stopping")
        self._clock_watch.stop()
        for reader in self._readers:
            reader.stop()
        while True:
            try:
                self._current.append(self._readings.get_nowait())
            except queue.Empty:
                break
        if self._outbox is not None:
            self._close_batch()
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        while self._connected and time.monotonic() < deadline:
            self._handle_events()
            self._send_pending()
            if not self._in_flight and not self._maybe_pending:
                break
            time.sleep(0.01)
        self._say_offline()
        if self._outbox is not None:
            left = self._outbox.depth()
            if left:
                log.warning("%d reading(s) stay in the spool for the next start", left)
            if self._outbox_given is None:
                self._outbox.close()
        if self._metrics_server is not None:
            self._metrics_server.shutdown()
            self._metrics_server.server_close()
        log.info("edge agent stopped")

    def _say_offline(self) -> None:
        client = self._client
        if client is None or not self._connected:
            self._write_status_file(encode(self.status(GatewayState.OFFLINE)))
            return
        payload = encode(self.status(GatewayState.OFFLINE))
        self._write_status_file(payload)
        info = client.publish(self._topic(Channel.STATUS), payload, qos=1, retain=True)
        if info.rc == mqtt.MQTT_ERR_SUCCESS:
            try:
                info.wait_for_publish(timeout=DRAIN_TIMEOUT_S)
            except RuntimeError as exc:
                log.warning("offline status not confirmed: %s", exc)
        else:
            log.warning("offline status refused: %s", mqtt.error_string(info.rc))
        # A normal DISCONNECT: the broker discards the last-will, the retained offline status
        # we just published stands.
        client.disconnect()
        client.loop_stop()
        self._client = None
        self._connected = False

"""The ingester: MQTT in, InfluxDB out, acknowledged only once stored.

One consumer thread (the caller of :meth:`Ingester.run`) collects messages into windows of
``flush_interval_s`` or ``window_max_messages`` and processes each window: decode and validate
(``decode``), dead-letter the refused (fsync), store raw points, update state and store
aggregates (``aggregate``, ``writer``), then acknowledge every message of the window.

Delivery guarantee: at least once. A message is acknowledged (``client.ack``) only after
InfluxDB accepted all its points and its dead-letter records are on disk; until then the broker
keeps it in our persistent session (clean_start=False, session expiry), so a crash or a restart
redelivers it. Redelivered readings overwrite themselves (same series, same time).

Backpressure: while a write is being retried the consumer stops taking messages; the broker may
have at most ``mqtt_receive_maximum`` unacknowledged messages in flight to us (MQTT v5 Receive
Maximum), and we hold at most ``held_max_bytes`` of payload (past it the network thread stops
reading the socket until a window is done), so the buffer and memory stay bounded and the
backlog waits at the broker (``pantau_ingest_unacked_messages`` shows how many we hold).

Scale-out (``mqtt_shared_group``): members share the gateway topics through an MQTT v5 shared
subscription and, before acknowledging a window, publish their sensor-state changes to the
group (``cluster``); each merges the others' so every member writes the rollups one ingester
would. See docs/adr/0006-ingester-scale-out.md.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions
from prometheus_client import start_http_server

from city import Registry, load_registry
from cloud.influx import InfluxHTTP
from cloud.ingest.acks import Ack, PendingAcks
from cloud.ingest.aggregate import (
    NO_TIME,
    ReadingHistory,
    SensorState,
    bed_rollups,
    crowd_sites,
    queue_sites,
)
from cloud.ingest.boundary import decode_isolating, status_lines
from cloud.ingest.cluster import (
    apply_rows,
    changed_sensors,
    copy_state,
    deltas_of,
    fits,
    mark_shared,
    merge_rows,
)
from cloud.ingest.deadletter import DETAIL_MAX, DeadLetterStore, Problem, Refusal
from cloud.ingest.decode import BatchDedup, DecodedWindow, Message, Rejection, decode_window
from cloud.ingest.guard import GUARD_FILE, PoisonGuard, crash_marker_from_env, run_guarded
from cloud.ingest.health import IngestHealth
from cloud.ingest.metrics import IngestMetrics
from cloud.ingest.migrations import migrate_dead_letters, migrate_influx
from cloud.ingest.schema import apply_schema
from cloud.ingest.seed import bootstrap_state
from cloud.ingest.settings import IngestSettings
from cloud.ingest.topology import CityIndex
from cloud.ingest.writer import Lines, PointBuilder, PointWriter, WriteAbortedError
from contract import (
    KIND_CODES,
    Channel,
    PantauError,
    PayloadError,
    RejectReason,
    SensorKind,
    StorageError,
    TopicError,
    topics,
)
from contract.backoff import backoff_delay
from contract.cluster import StateDelta, decode_state_delta, encode_state_delta, registry_digest
from contract.mqtt_reason import reason_words, reasons_words

log = logging.getLogger(__name__)

SUBSCRIPTIONS = tuple(
    topics.subscription(c) for c in (Channel.READINGS, Channel.READING, Channel.STATUS)
)
_STATUS_FILTER = topics.subscription(Channel.STATUS)


def _subscribe_options(topic_filter: str) -> SubscribeOptions:
    """QoS 1; retained messages only on the status channel, where the protocol uses them. The
    broker cannot refuse a device's retain flag on its own data topics (docs/adr/0010), so a
    retained reading would otherwise be delivered again on every (re)subscription."""
    retained = 0 if topic_filter == _STATUS_FILTER else 2  # 2: never send retained messages
    return SubscribeOptions(qos=1, retainHandling=retained)


_BACKOFF_BASE_S = 0.2
_BACKOFF_CAP_S = 30.0


#: A state delta not acknowledged for this long, while the broker has sent nothing for as
#: long, means the connection is lost (the windows waiting for it are not acknowledged and
#: come back). A long wait alone is not: the PUBACK queues behind the backlog (acks.py).
_DELTA_PUBLISH_TIMEOUT_S = 10.0
#: How often the consumer looks for acknowledged deltas while it has nothing else to do.
_SETTLE_POLL_S = 0.01
#: After a stop, how long the network thread may take to see the DISCONNECT through.
_DISCONNECT_WAIT_S = 1.0


def now_ms() -> int:
    """Wall-clock time in ms since the epoch."""
    return time.time_ns() // 1_000_000


def _retry_delay(attempt: int) -> float:
    return backoff_delay(attempt, base=_BACKOFF_BASE_S, cap=_BACKOFF_CAP_S)


@dataclass(kw_only=True)
class MeteredInflux(InfluxHTTP):
    """:class:`InfluxHTTP` that reports how many points each successful ``/write`` stored."""

    on_points: Callable[[int], None] | None = None

    def write(self, lines: Iterable[str] | bytes, *, precision: str = "ms") -> None:
        """As :meth:`InfluxHTTP.write`; then reports the number of lines stored."""
        if not isinstance(lines, bytes):
            lines = list(lines)
        super().write(lines, precision=precision)
        if self.on_points is not None:
            n = (lines.count(b"\n") + 1 if lines else 0) if isinstance(lines, bytes) else len(lines)
            self.on_points(n)


def influx_of(
    settings: IngestSettings, *, on_points: Callable[[int], None] | None = None
) -> MeteredInflux:
    """The InfluxDB client ``settings`` describe (no I/O until used)."""
    return MeteredInflux(
        url=settings.influx_url,
        database=settings.influx_db,
        username=settings.influx_username,
        password=settings.influx_password,
        token=settings.influx_token,
        on_points=on_points,
    )


class Ingester:
    """The ``pantau ingest run`` process. Construction does no I/O; :meth:`run` blocks until
    :meth:`stop`, then flushes what it holds and returns."""

    def __init__(
        self,
        *,
        settings: IngestSettings,
        registry: Registry | None = None,
        metrics: IngestMetrics | None = None,
        clock_ms: Callable[[], int] = now_ms,
    ) -> None:
        self.settings = settings
        self._registry = registry
        self.metrics = metrics if metrics is not None else IngestMetrics()
        #: the ingest_health points Grafana reads (cloud.ingest.health)
        self.health = IngestHealth(ingester=settings.mqtt_client_id)
        self._clock_ms = clock_ms
        self._stop = threading.Event()
        #: set once InfluxDB is ready, state is bootstrapped and the subscriptions are granted
        self.ready = threading.Event()
        self._queue: queue.Queue[Message] = queue.Queue(maxsize=2 * settings.mqtt_receive_maximum)
        #: payload bytes received and not yet through a window (see held_max_bytes)
        self._held_bytes = 0
        self._held_cond = threading.Condition()
        self.metrics.held_bytes.set_function(lambda: self._held_bytes)
        self._gen = 0
        self._connected = threading.Event()
        self._lost = threading.Event()
        self._connack_ok = False
        self._client: mqtt.Client | None = None
        self.windows = 0
        self.state: SensorState | None = None
        #: batches already stored, so redeliveries are dropped (decode.BatchDedup)
        self._dedup = BatchDedup(per_gateway=settings.dedup_per_gateway)
        #: recent readings, to rewrite past rollup buckets when late data arrives
        self._history: ReadingHistory | None = None
        self._history_paused_at = NO_TIME
        group = settings.mqtt_shared_group
        #: where members exchange state deltas; a lone ingester publishes there too, so the
        #: API can follow the state (contract.topics.LONE_INGEST_GROUP)
        self._state_topic = topics.ingest_state(
            group if group is not None else topics.LONE_INGEST_GROUP
        )
        #: what the other members know of our state: our published deltas merged with theirs
        self._shared: SensorState | None = None
        self._digest = b""
        #: set once subscribed in a group: tell the group our whole state and ask for theirs
        self._hello_due = threading.Event()
        #: windows stored and waiting for the broker to take their state delta (acks.py)
        self._pending: PendingAcks[Ack] = PendingAcks(timeout_s=_DELTA_PUBLISH_TIMEOUT_S)
        #: monotonic time of the last message from the broker (network thread)
        self._last_heard = time.monotonic()
        #: monotonic time by which a stopping run() gives up what it has not finished
        self._stop_deadline = float("inf")

    def stop(self) -> None:
        """Ask :meth:`run` to return within ``shutdown_timeout_s`` (safe from signal handlers
        and other threads): it finishes the window in hand, then stores and acknowledges what
        it already received only while time is left; the rest is abandoned unacknowledged, so
        the broker redelivers it."""
        if not self._stop.is_set():
            # Keep a margin for the DISCONNECT and for closing the InfluxDB client.
            grace = max(0.0, self.settings.shutdown_timeout_s - 2 * _DISCONNECT_WAIT_S)
            self._stop_deadline = time.monotonic() + grace
        self._stop.set()

    def _require_state(self) -> SensorState:
        if self.state is None:
            raise PantauError("Ingester used before run()")
        return self.state

    # ---- run ---------------------------------------------------------------------------
    def run(self) -> None:
        """Consume until :meth:`stop`; see the module docstring for the guarantees."""
        s = self.settings
        registry = self._registry if self._registry is not None else load_registry(s.city_file)
        self.index = CityIndex.from_registry(registry)
        self.builder = PointBuilder(index=self.index)
        self.state = SensorState(n_sensors=self.index.n_sensors)
        # Versioned migrations (cloud/ingest/migrations): the store's layout before it is opened.
        log.info("%s", migrate_dead_letters(s.dead_letter_dir, s.dead_letter_max_bytes).describe())
        self.dead = DeadLetterStore(directory=s.dead_letter_dir, max_bytes=s.dead_letter_max_bytes)
        # Rotation's count survives restarts: the metric starts from it.
        self.metrics.dead_letters_rotated.inc(self.dead.open().records)
        self.metrics.dead_letter_bytes.set_function(self.dead.size_bytes)
        self.guard = PoisonGuard(
            path=s.dead_letter_dir / GUARD_FILE,
            max_attempts=s.poison_max_attempts,
            crash_marker=crash_marker_from_env(),
        )
        self.guard.open()
        server = None
        if s.metrics_port is not None:
            server, _ = start_http_server(
                s.metrics_port, addr=s.metrics_host, registry=self.metrics.registry
            )
        influx = influx_of(s, on_points=self.metrics.points_written.inc)
        try:
            with influx:
                self.writer = PointWriter(
                    influx=influx,
                    stopping=self._stop,
                    chunk_lines=s.write_chunk_lines,
                    parallelism=s.write_parallelism,
                    on_latency=self.metrics.write_latency.observe,
                    on_retrying=lambda on: self.metrics.write_retrying.set(int(on)),
                )
                with self.writer:
                    if not self._prepare_storage(influx):
                        return
                    self._start_history()
                    self._consume()
        finally:
            if server is not None:
                server.shutdown()
            self.guard.close()
            self.dead.close()

    def _prepare_storage(self, influx: InfluxHTTP) -> bool:
        attempt = 0
        while not self._stop.is_set():
            try:
                influx.ensure_database()
                for statement in apply_schema(influx, self.settings.storage_schema):
                    log.info("storage schema: %s", statement)
                log.info("%s", migrate_influx(influx).describe())
                loaded = bootstrap_state(influx, self.index, self._require_state())
            except StorageError as exc:
                if not exc.retryable:
                    raise
                log.warning("InfluxDB not ready: %s", exc)
                self._stop.wait(_retry_delay(attempt))
                attempt += 1
                continue
            log.info("bootstrapped %d readings of state from InfluxDB", loaded)
            # Bootstrapped state came from InfluxDB, which every member reads: nothing to tell.
            self._shared = copy_state(self._require_state())
            self._digest = registry_digest(self.index.sensor_ids)
            return True
        return False

    def _consume(self) -> None:
        attempt = 0
        try:
            while not self._stop.is_set():
                if self._client is None or self._lost.is_set():
                    self._teardown()
                    if not self._connect():
                        self._stop.wait(_retry_delay(attempt))
                        attempt += 1
                        continue
                    attempt = 0
                self._greet()
                self._handle(self._collect())
                self._settle()
            # Flush what was received before the stop, while the deadline allows.
            while time.monotonic() < self._stop_deadline and not self._lost.is_set():
                window = self._collect(wait=False)
                if not window:
                    break
                self._handle(window)
                self._settle()
            self._await_pending()
        except WriteAbortedError:
            log.warning(
                "stopped while InfluxDB was unavailable; unacknowledged messages stay "
                "at the broker and are redelivered on the next start"
            )
        finally:
            self._teardown(graceful=True)

    def _handle(self, window: list[Message]) -> None:
        """Process a window: gateway messages first, then the other members' state deltas."""
        if not window:
            return
        peers: list[Message] = []
        data: list[Message] = []
        for m in window:
            (peers if topics.is_internal(m.topic) else data).append(m)
        if data:
            run_guarded(self.guard, data, process=self._process, quarantine=self._quarantine)
            self.metrics.windows.inc()
        if peers:
            self._merge_peers(peers)
        self._release(sum(len(m.payload) for m in window))

    def _release(self, size: int) -> None:
        """A window is done (acknowledged, or left for redelivery): its bytes no longer count
        against ``held_max_bytes``."""
        with self._held_cond:
            self._held_bytes -= size
            self._held_cond.notify_all()

    # ---- MQTT --------------------------------------------------------------------------
    def _connect(self) -> bool:
        s = self.settings
        host, port, tls = s.mqtt_host_port_tls
        self._gen += 1
        gen = self._gen
        self._connected.clear()
        self._lost.clear()
        self._connack_ok = False
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=s.mqtt_client_id,
            protocol=MQTTProtocolVersion.MQTTv5,
            manual_ack=True,
        )
        client.username_pw_set(s.mqtt_username, s.mqtt_password.get_secret_value())
        if tls:
            client.tls_set()
        # We reconnect with a fresh client ourselves; paho's own retry must not race us.
        client.reconnect_delay_set(min_delay=3600, max_delay=3600)
        client.on_connect = lambda c, u, f, rc, p: self._on_connect(gen, c, rc)
        client.on_subscribe = lambda c, u, mid, rcs, p: self._on_subscribe(gen, rcs)
        client.on_message = lambda c, u, msg: self._on_message(gen, msg)
        client.on_disconnect = lambda c, u, f, rc, p: self._on_disconnect(gen, rc)
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = s.mqtt_session_expiry_s
        props.ReceiveMaximum = s.mqtt_receive_maximum
        try:
            client.connect(host, port, s.mqtt_keepalive_s, clean_start=False, properties=props)
        except OSError as exc:
            log.warning("MQTT connect to %s failed: %s", s.mqtt_url, exc)
            return False
        self._client = client
        client.loop_start()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not self._stop.is_set():
            if self._connected.wait(0.1):
                break
            if self._lost.is_set():
                break
        if not self._connack_ok:
            log.warning("MQTT connection to %s refused or timed out", s.mqtt_url)
            return False
        return True

    def _on_connect(self, gen: int, client: mqtt.Client, rc: ReasonCode) -> None:
        if gen != self._gen:
            return
        if rc.is_failure:
            log.error("MQTT broker refused the connection: %s", reason_words(rc))
            self._lost.set()
            return
        self._connack_ok = True
        self._connected.set()
        log.info("connected to %s as %s", self.settings.mqtt_url, self.settings.mqtt_client_id)
        client.subscribe(self.subscriptions())

    def subscriptions(self) -> list[tuple[str, SubscribeOptions]]:
        """What this member subscribes to: the gateway channels (shared among the group's
        members when ``mqtt_shared_group`` is set) and, in a group, the state-delta topic,
        non-shared and without our own publications (No Local)."""
        group = self.settings.mqtt_shared_group
        subs = [
            (t if group is None else topics.shared(group, t), _subscribe_options(t))
            for t in SUBSCRIPTIONS
        ]
        if self._state_topic is not None:
            subs.append((self._state_topic, SubscribeOptions(qos=1, noLocal=True)))
        return subs

    def _on_subscribe(self, gen: int, reason_codes: list[ReasonCode]) -> None:
        if gen != self._gen:
            return
        failed = [rc for rc in reason_codes if rc.is_failure]
        if failed:
            log.error(
                "subscription refused by the broker (check the ACL): %s", reasons_words(failed)
            )
            return
        self.metrics.subscribed.set(1)
        if self._state_topic is not None:
            self._hello_due.set()
        # Operators and pantau.stack wait for this line: from here on nothing is lost.
        log.info("subscribed: readings are queued for this session from now on")
        self.ready.set()

    def _on_message(self, gen: int, msg: mqtt.MQTTMessage) -> None:
        self.metrics.received()
        # Read by _settle: a broker that still sends is alive, however late our PUBACK is.
        self._last_heard = time.monotonic()
        size = len(msg.payload)
        with self._held_cond:
            # Past the byte budget, wait for the consumer to finish a window (it always
            # can: whatever we hold is queued or being processed). Blocking this thread
            # stops reads from the socket, which is the backpressure we want.
            while (
                self._held_bytes
                and self._held_bytes + size > self.settings.held_max_bytes
                and not self._abandoned(gen)
            ):
                self._held_cond.wait(0.5)
            if self._abandoned(gen):
                self.metrics.released(1)
                return
            self._held_bytes += size
        message = Message(
            topic=msg.topic,
            payload=bytes(msg.payload),
            received_ms=self._clock_ms(),
            mid=msg.mid,
            qos=msg.qos,
            generation=gen,
        )
        # Blocks when the broker sends more than our Receive Maximum (Mosquitto 2.0.11 sends a
        # whole Receive Maximum more per PUBACK while a backlog is queued; ADR 0006):
        # last-resort backpressure, which the consumer always relieves, never waiting for us.
        while True:
            try:
                self._queue.put(message, timeout=0.5)
            except queue.Full:
                if self._abandoned(gen):
                    self._release(size)
                    self.metrics.released(1)
                    return
                continue
            return

    def _abandoned(self, gen: int) -> bool:
        """A message of connection ``gen`` is no longer wanted: we are stopping, or that
        connection is being torn down. It stays unacknowledged, so the broker redelivers it."""
        return self._stop.is_set() or gen != self._gen

    def _on_disconnect(self, gen: int, rc: ReasonCode) -> None:
        if gen == self._gen:
            log.warning("MQTT connection lost: %s", reason_words(rc))
            self.metrics.subscribed.set(0)
            self._lost.set()

    def _teardown(self, *, graceful: bool = False) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        if graceful and not self._lost.is_set():
            client.disconnect()
            self._lost.wait(_DISCONNECT_WAIT_S)
        # Retire the connection first: a network thread waiting in _on_message for room then
        # gives up (the message stays unacknowledged), so loop_stop's join cannot hang.
        self._gen += 1
        with self._held_cond:
            self._held_cond.notify_all()
        client.loop_stop()
        self.metrics.released(self._pending.drop())

    # ---- windows -----------------------------------------------------------------------
    def _collect(self, *, wait: bool = True) -> list[Message]:
        limit = self.settings.window_max_messages
        max_bytes = self.settings.window_max_bytes
        window: list[Message] = []
        size = 0
        deadline = time.monotonic() + (self.settings.flush_interval_s if wait else 0)
        while len(window) < limit and size < max_bytes:
            try:
                msg = self._queue.get_nowait()
            except queue.Empty:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (self._stop.is_set() and wait):
                    break
                if self._pending:
                    # Acks that wait for a delta's PUBACK free Receive Maximum slots: send
                    # them as soon as the PUBACK is in, not when this window closes.
                    self._settle()
                    remaining = min(remaining, _SETTLE_POLL_S)
                try:
                    msg = self._queue.get(timeout=remaining)
                except queue.Empty:
                    continue
            window.append(msg)
            size += len(msg.payload)
        return window

    def _dead_letter(
        self,
        msg: Message,
        rej: Rejection,
        *,
        reason: RejectReason | None = None,
        detail: str | None = None,
    ) -> Refusal:
        try:
            gateway: str | None = topics.parse(msg.topic).gateway
        except TopicError:
            gateway = None
        return Refusal(
            topic=msg.topic,
            payload=msg.payload,
            received_at=msg.received_ms,
            gateway=gateway,
            problems=(Problem(reason or rej.reason, detail or rej.detail, rej.index),),
        )

    def _record_dead(self, records: list[Refusal], now: int) -> None:
        """Durably store dead letters (each payload once, nothing already stored), then
        write their points (one per message and reason) and count them."""
        if not records:
            return
        done = self.dead.append(records)
        self.health.refused(sum(len(r.problems) for r in records))
        m = self.metrics
        m.dead_letters_duplicate.inc(done.duplicates)
        m.dead_letters_rotated.inc(done.rotated)
        points: list[str] = []
        for ref in done.written:
            by_reason: dict[RejectReason, list[Problem]] = {}
            for p in ref.problems:
                by_reason.setdefault(p.reason, []).append(p)
            for reason, problems in by_reason.items():
                points.append(
                    self.builder.dead_letter(
                        reason=reason.value,
                        gateway=ref.gateway or "unknown",
                        topic=ref.topic,
                        detail=problems[0].detail[:DETAIL_MAX],
                        ts_ms=ref.received_at,
                        count=len(problems),
                    )
                )
                m.dead_letters.labels(reason=reason.value).inc(len(problems))
        for refused in self.writer.write(points):
            log.error("dead_letter point refused by InfluxDB: %s", refused.detail)

    def _quarantine(self, poison: list[tuple[Message, int]]) -> None:
        """The crash-loop guard's verdict (cloud/ingest/guard.py): dead-letter these messages
        as poison without processing them, then acknowledge them."""
        for msg, attempts in poison:
            log.error(
                "quarantined a message on %s: the ingester died on it %d times", msg.topic, attempts
            )
        now = self._clock_ms()
        self._record_dead(
            [
                self._dead_letter(
                    msg,
                    Rejection(0, RejectReason.POISON, f"the ingester died processing it {n} times"),
                )
                for msg, n in poison
            ],
            now,
        )
        self._ack([msg for msg, _ in poison])

    def _start_history(self) -> None:
        """Late-data memory, starting from the bootstrapped state (nothing before it can be
        recomputed: its predecessors are not in memory)."""
        s, state = self.settings, self._require_state()
        if s.late_history_readings > 0:
            self._history = ReadingHistory(
                n_sensors=self.index.n_sensors,
                capacity=s.late_history_readings,
                horizon_ms=s.late_horizon_s * 1000,
                min_span_ms=s.rollup_bucket_s * 1000,
            )
            for ts, values in ((state.prev_ts, state.prev_values), (state.ts, state.values)):
                rows = np.flatnonzero(ts != NO_TIME).astype(np.int32)
                self._history.seed(rows, ts[rows], state.seq[rows], values[rows])

    def _process(self, window: list[Message]) -> None:
        state = self._require_state()
        now = self._clock_ms()
        m = self.metrics
        m.messages_in.inc(len(window))
        m.window_messages.observe(len(window))
        # Nothing one message contains may fail the window (cloud.ingest.boundary).
        decoded: DecodedWindow = decode_isolating(
            window, lambda part: decode_window(part, self.index, now, dedup=self._dedup)
        )
        m.duplicates.inc(len(decoded.duplicates))
        m.status_stats_dropped.inc(sum(st.dropped_stats for st in decoded.statuses))
        readings = decoded.readings
        n_bad_readings = sum(1 for r in decoded.rejections if r.index is not None)
        m.readings_in.inc(len(readings) + n_bad_readings)
        st_lines, st_refused = status_lines(
            decoded.statuses,
            lambda st: self.builder.gateway_status(st, window[st.message].received_ms),
        )
        self._record_dead(
            [self._dead_letter(window[r.message], r) for r in [*decoded.rejections, *st_refused]],
            now,
        )

        # Aggregates-only mode: validated, dead-lettered, folded into state, not stored raw.
        lines: Lines = self.builder.raw(readings) if self.settings.store_raw else Lines()
        for msg_i, line in st_lines:
            lines.add([line], [msg_i], [-1])
        refused = self.writer.write(lines.lines)
        stored = np.ones(len(readings), dtype=bool)
        if refused:
            late: list[Refusal] = []
            n_raw = len(readings)
            for r in refused:
                msg_i, at = lines.message[r.line], lines.reading[r.line]
                rej = Rejection(
                    msg_i, RejectReason.STORAGE_REJECTED, r.detail, None if at < 0 else at
                )
                late.append(self._dead_letter(window[msg_i], rej))
                if r.line < n_raw and self.settings.store_raw:
                    stored[r.line] = False
            self._record_dead(late, now)
        # raw() emits rows grouped by kind: map stored flags back through the same order.
        order = (
            np.concatenate([np.flatnonzero(readings.kind == KIND_CODES[k]) for k in SensorKind])
            if len(readings)
            else np.zeros(0, np.intp)
        )
        ok_rows = np.zeros(len(readings), dtype=bool)
        ok_rows[order] = stored
        kept = readings.take(ok_rows)
        if self.settings.store_raw:
            m.readings_stored.inc(len(kept))
        if state.update(kept.sensor, kept.ts, kept.seq, kept.values):
            self._write_rollups(now)
        self._correct_past(kept.sensor, kept.ts, kept.seq, kept.values, now)
        # Lag is observation -> stored: read the clock now that the window is written, not
        # at its start (a slow write would otherwise hide from the histogram).
        lags_s = (self._clock_ms() - kept.ts) / 1000.0
        m.observe_lag(lags_s)
        self.health.observe(messages=len(window), lags_s=lags_s)
        self._ack(window)
        if not self._lost.is_set():  # acknowledged: from now on a redelivery is a duplicate
            self._dedup.remember(decoded.batch_keys)
        self.windows += 1
        # After the ack: self-monitoring must not delay acknowledgements.
        if (health := self.health.due_line(self._clock_ms(), unacked=m.held)) is not None:
            self._write_aggregates([health])

    def _correct_past(
        self,
        sensor: npt.NDArray[np.int32],
        ts: npt.NDArray[np.int64],
        seq: npt.NDArray[np.int64],
        values: npt.NDArray[np.int64],
        now: int,
    ) -> None:
        """Remember the window's readings; rewrite the rollups of the past buckets that its
        late readings (observed before the current bucket) change. docs/schema.md, Late data."""
        history = self._history
        if history is None:
            return
        bucket = self.settings.rollup_bucket_s * 1000
        current = now - now % bucket
        if not history.active and current != self._history_paused_at:
            # Paused by a rate its memory could not span: try again once per bucket.
            history.resume(self._require_state())
            log.info("late-data correction resumed")
        was_active = history.active
        history.add(sensor, ts, seq, values, now_ms=now)
        if was_active and not history.active:
            self._history_paused_at = current
            log.warning(
                "late-data correction paused: %d readings span less than one %d s bucket "
                "(raise PANTAU_LATE_HISTORY_READINGS to keep it at this rate)",
                self.settings.late_history_readings,
                self.settings.rollup_bucket_s,
            )
        late = ts < current
        if not late.any():
            return
        starts = history.affected_buckets(sensor[late], ts[late], bucket_ms=bucket, before=current)
        agg: list[str] = []
        for start, past in history.states_at(starts, bucket_ms=bucket):
            agg += self._rollup_lines(past, start)
            if len(agg) >= self.settings.write_chunk_lines:
                self._write_aggregates(agg)
                agg = []
        self._write_aggregates(agg)
        self.metrics.late_buckets.inc(len(starts))

    def _ack(self, window: list[Message]) -> None:
        """Acknowledge a stored window; in a group, only once the broker has taken the delta
        that hands our state changes to the other members, so a crash after the ack cannot
        leave them without those readings. That wait is not done here (acks.py says why)."""
        if self._state_topic is None:
            self._ack_messages(window)
            return
        self._park(self._publish_state(), window)

    def _ack_messages(self, window: Sequence[Message | Ack]) -> None:
        self.metrics.released(len(window))
        client = self._client
        for msg in window:
            # A message delivered on an earlier connection is redelivered on this one (same
            # session) and acknowledged then; its old packet id means nothing here.
            if client is not None and msg.generation == self._gen and msg.qos > 0:
                client.ack(msg.mid, msg.qos)

    def _park(self, infos: list[mqtt.MQTTMessageInfo] | None, msgs: list[Message]) -> None:
        """Acknowledge ``msgs`` once the broker has ``infos`` (None: they could not be
        published, the connection is lost and ``msgs`` come back)."""
        if infos is None:
            self.metrics.released(len(msgs))
            return
        self._pending.park(infos, [Ack(m.mid, m.qos, m.generation) for m in msgs])
        self._settle()

    def _settle(self) -> None:
        """Acknowledge the parked windows whose deltas the broker took; a delta it has not
        taken in time (or a failed publication) is a lost connection: say so and reconnect."""
        if not self._pending:
            return
        try:
            done = self._pending.settle()
        except (RuntimeError, ValueError) as exc:
            log.warning("state delta not published (%s); reconnecting", exc)
            self._lost.set()
            return
        if done:
            self._ack_messages(done)
        if self._pending.overdue(last_heard=self._last_heard):
            log.error(
                "state delta not acknowledged, and nothing received from the broker, for "
                "%.0f s; reconnecting (%d unacknowledged windows will be redelivered)",
                _DELTA_PUBLISH_TIMEOUT_S,
                len(self._pending),
            )
            self._lost.set()

    def _await_pending(self) -> None:
        """Stopping: give the broker until the stop deadline to take our last deltas, so the
        windows they carry are acknowledged; what is left is redelivered later."""
        while self._pending and not self._lost.is_set():
            if time.monotonic() >= self._stop_deadline:
                log.warning(
                    "stopping before the broker took our last state delta: %d windows stay "
                    "unacknowledged and will be redelivered",
                    len(self._pending),
                )
                return
            self._settle()
            time.sleep(_SETTLE_POLL_S)

    # ---- scale-out: state deltas between members (docs/adr/0006-ingester-scale-out.md) ----
    def _publish_state(self) -> list[mqtt.MQTTMessageInfo] | None:
        """Publish the sensors whose state the other members do not know yet; the
        publications to wait for before acknowledging (None: not connected)."""
        if self._shared is None:
            return []
        changed = changed_sensors(self._require_state(), self._shared)
        return self._send(changed) if len(changed) else []

    def _greet(self) -> None:
        """After (re)subscribing: send our whole state with HELLO, so every member answers
        with its whole state. A member that joins or returns then misses nothing the group
        learned before its subscription existed."""
        if self._shared is None or not self._hello_due.is_set():
            return
        self._hello_due.clear()
        # Nothing waits for the HELLO to be acknowledged, but a broker that never takes it
        # is a lost connection like any other (PendingAcks.overdue).
        self._park(self._send(np.flatnonzero(self._require_state().known), hello=True), [])

    def _send(
        self, sensors: npt.NDArray[np.intp], *, hello: bool = False
    ) -> list[mqtt.MQTTMessageInfo] | None:
        """Publish the state of ``sensors`` (QoS 1) without waiting for the broker; None if
        there is no connection. The peers are taken to know it from now on: if the connection
        is lost before the PUBACK, the HELLO after the reconnect resends our whole state."""
        state, shared, client = self._require_state(), self._shared, self._client
        if client is None or shared is None or self._state_topic is None or self._lost.is_set():
            return None
        infos = [
            client.publish(self._state_topic, encode_state_delta(delta), qos=1)
            for delta in deltas_of(state, sensors, self._digest, hello=hello)
        ]
        mark_shared(shared, state, sensors)
        self.metrics.deltas_published.inc(len(infos))
        self.metrics.delta_sensors_published.inc(len(sensors))
        if self.settings.mqtt_shared_group is None:
            # A lone ingester publishes for the read API only, which re-reads InfluxDB after
            # any gap: no member's state depends on it, so its windows wait for nothing.
            return []
        return infos

    def _merge_peers(self, msgs: list[Message]) -> None:
        """Merge the other members' state deltas (last writer wins), rewrite the rollups if
        that changed our state, then acknowledge the deltas."""
        state, shared = self._require_state(), self._shared
        deltas: list[StateDelta] = []
        for msg in msgs:
            try:
                delta = decode_state_delta(msg.payload)
            except PayloadError as exc:
                log.warning("refused a state delta on %s: %s", msg.topic, exc)
                self.metrics.deltas_refused.inc()
                continue
            fields = state.values.shape[1]
            if not fits(delta, digest=self._digest, n_sensors=self.index.n_sensors, fields=fields):
                log.error(
                    "refused a state delta from a member with another registry (digest %s, "
                    "ours %s): every member must load the same city file",
                    delta.digest.hex(),
                    self._digest.hex(),
                )
                self.metrics.deltas_refused.inc()
                continue
            deltas.append(delta)
        if deltas:
            rows = merge_rows(deltas, state)
            # Merged into `shared` too, so _publish_state sends only our own changes.
            changed = apply_rows(state, shared, rows)
            if self._history is not None:  # so rewritten past buckets include peers' sensors
                self._history.add(*rows, now_ms=self._clock_ms())
            self.metrics.deltas_merged.inc(len(deltas))
            self.metrics.delta_sensors_changed.inc(changed)
            if changed:
                self._write_rollups(self._clock_ms())
            # A member (re)joined: answer with everything we know before acking its HELLO,
            # so a crash here makes the broker deliver the HELLO again.
            if any(d.hello for d in deltas):
                self._park(self._send(np.flatnonzero(state.known)), msgs)
                return
        self._park([], msgs)

    def _write_rollups(self, now: int) -> None:
        """Write every aggregate of the current state, stamped at the start of ``now``'s
        rollup bucket (rewritten in place until the bucket ends; docs/schema.md)."""
        bucket = self.settings.rollup_bucket_s * 1000
        self._write_aggregates(self._rollup_lines(self._require_state(), now - now % bucket))

    def _rollup_lines(self, state: SensorState, stamp_ms: int) -> list[str]:
        agg = self.builder.bed_rollups(bed_rollups(state, self.index), stamp_ms)
        agg += self.builder.crowd_sites(crowd_sites(state, self.index), stamp_ms)
        agg += self.builder.queue_sites(queue_sites(state, self.index), stamp_ms)
        return agg

    def _write_aggregates(self, agg: list[str]) -> None:
        for r in self.writer.write(agg):
            log.error("aggregate point refused by InfluxDB: %s", r.detail)

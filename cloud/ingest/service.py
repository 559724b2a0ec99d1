"""The ingester: MQTT in, InfluxDB out, acknowledged only once stored.

One consumer thread (the caller of :meth:`Ingester.run`) takes windows of ``flush_interval_s``
or ``window_max_messages`` from the MQTT session (``consumer``) and processes each
(``pipeline``): decode and validate, dead-letter the refused (fsync), store raw points, update
state and store aggregates, then acknowledge every message of the window. While window k is
written, window k+1 is decoded if it is already there (``overlap``, ADR 0032). This module
wires those parts together and owns the loop, the stop and the acknowledgements.

Delivery guarantee: at least once. A message is acknowledged (``client.ack``) only after
InfluxDB accepted all its points and its dead-letter records are on disk; until then the broker
keeps it in our persistent session (clean_start=False, session expiry), so a crash or a restart
redelivers it. Redelivered readings overwrite themselves (same series, same time).

Backpressure: while a write is being retried the consumer stops taking messages; the session
bounds what is held (``consumer``), so the backlog waits at the broker
(``pantau_ingest_unacked_messages`` shows how many we hold).

Scale-out (``mqtt_shared_group``): members share the gateway topics through an MQTT v5 shared
subscription and, before acknowledging a window, publish their sensor-state changes to the
group (``peers``); each merges the others' so every member writes the rollups one ingester
would. See docs/adr/0006-ingester-scale-out.md.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Callable

import paho.mqtt.client as mqtt
from paho.mqtt.subscribeoptions import SubscribeOptions

from city import Registry, load_registry
from cloud.ingest.acks import Ack, PendingAcks, acks_of
from cloud.ingest.aggregate import SensorState
from cloud.ingest.bootstrap import influx_of, prepare_storage, retry_delay, start_history
from cloud.ingest.consumer import DISCONNECT_WAIT_S, MqttSession, window_bytes
from cloud.ingest.deadletter import DeadLetterStore
from cloud.ingest.decode import Message
from cloud.ingest.dedup import BatchDedup
from cloud.ingest.guard import GUARD_FILE, PoisonGuard, crash_marker_from_env, run_guarded
from cloud.ingest.health import IngestHealth
from cloud.ingest.metrics import IngestMetrics
from cloud.ingest.metrics_server import start_metrics_server
from cloud.ingest.migrations import migrate_dead_letters
from cloud.ingest.overlap import WindowsInFlight
from cloud.ingest.peer_sync import greet, merge_peers, publish_state
from cloud.ingest.peers import StatePeers
from cloud.ingest.pipeline import WindowPipeline
from cloud.ingest.reload import follow_registry
from cloud.ingest.settings import IngestSettings
from cloud.ingest.topology import CityIndex
from cloud.ingest.writer import PointWriter, WriteAbortedError
from cloud.registry_watch import RegistryWatch
from contract import PantauError, topics
from contract.clock import now_ms

log = logging.getLogger(__name__)

#: A state delta not acknowledged for this long, while the broker has sent nothing for as
#: long, means the connection is lost (the windows waiting for it are not acknowledged and
#: come back). A long wait alone is not: the PUBACK queues behind the backlog (acks.py).
_DELTA_PUBLISH_TIMEOUT_S = 10.0
#: While writes or deltas are in flight, how often the consumer looks at them anyway. Their
#: completion wakes it (a writer's chunk settling, the broker's PUBACK: ADR 0041); this poll
#: only bounds the delay of a wake-up that was missed, so a missed one is slow, not a hang.
_SETTLE_POLL_S = 0.1
#: A PUBACK came in but did not show yet (paho marks it just after on_publish): look again.
_PUBACK_RECHECK_S = 0.001
#: Stopping: how often the last deltas' PUBACKs are looked for.
_STOP_POLL_S = 0.01


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
        #: the city file, swapped in between windows when it changes (cloud/ingest/reload.py)
        self.registry_watch = RegistryWatch(
            path=settings.city_file,
            interval_s=settings.registry_poll_s,
            metrics=self.metrics.registry,
        )
        self._stop = threading.Event()
        group = settings.mqtt_shared_group
        #: where members exchange state deltas; a lone ingester publishes there too, so the
        #: API can follow the state (contract.topics.LONE_INGEST_GROUP)
        state_topic = topics.ingest_state(group if group is not None else topics.LONE_INGEST_GROUP)
        self._session = MqttSession(
            settings=settings,
            metrics=self.metrics,
            stop=self._stop,
            clock_ms=clock_ms,
            state_topic=state_topic,
        )
        #: set once InfluxDB is ready, state is bootstrapped and the subscriptions are granted
        self.ready = self._session.subscribed
        self._peers = StatePeers(
            topic=state_topic, in_group=group is not None, metrics=self.metrics
        )
        self.windows = 0
        self.state: SensorState | None = None
        #: batches already stored, so redeliveries are dropped (cloud.ingest.dedup)
        self._dedup = BatchDedup(per_gateway=settings.dedup_per_gateway)
        self._pipeline: WindowPipeline | None = None
        #: windows stored and waiting for the broker to take their state delta (acks.py)
        self._pending: PendingAcks[Ack] = PendingAcks(timeout_s=_DELTA_PUBLISH_TIMEOUT_S)
        #: monotonic time by which a stopping run() gives up what it has not finished
        self._stop_deadline = float("inf")
        #: the window being written while the next is decoded (cloud/ingest/overlap.py)
        self._inflight = WindowsInFlight(
            acknowledge=self._acknowledge, release=self._session.release
        )
        #: payload bytes of the windows _handle left to _inflight to release
        self._adopted = 0
        #: the session's PUBACK count at the last _idle (a newer one may not show yet)
        self._pubacks_seen = 0

    def stop(self) -> None:
        """Ask :meth:`run` to return within ``shutdown_timeout_s`` (safe from signal handlers
        and other threads): it finishes the window in hand, then stores and acknowledges what
        it already received only while time is left; the rest is abandoned unacknowledged, so
        the broker redelivers it."""
        if not self._stop.is_set():
            # Keep a margin for the DISCONNECT and for closing the InfluxDB client.
            grace = max(0.0, self.settings.shutdown_timeout_s - 2 * DISCONNECT_WAIT_S)
            self._stop_deadline = time.monotonic() + grace
        self._stop.set()

    def subscriptions(self) -> list[tuple[str, SubscribeOptions]]:
        """What this member subscribes to (see :meth:`MqttSession.subscriptions`)."""
        return self._session.subscriptions()

    def _require(self) -> tuple[SensorState, WindowPipeline]:
        if self.state is None or self._pipeline is None:
            raise PantauError("Ingester used before run()")
        return self.state, self._pipeline

    # ---- run ---------------------------------------------------------------------------
    def run(self) -> None:
        """Consume until :meth:`stop`; see the module docstring for the guarantees."""
        s = self.settings
        self.registry_watch.start(background=self._stop)
        registry = self._registry if self._registry is not None else load_registry(s.city_file)
        self.index = CityIndex.from_registry(registry)
        self.state = SensorState(n_sensors=self.index.n_sensors)
        # Versioned migrations (cloud/ingest/migrations): the store's layout before it is opened.
        log.info("%s", migrate_dead_letters(s.dead_letter_dir, s.dead_letter_max_bytes).describe())
        self.dead = dead = DeadLetterStore(
            directory=s.dead_letter_dir, max_bytes=s.dead_letter_max_bytes
        )
        # Rotation's count survives restarts: the metric starts from it.
        self.metrics.dead_letters_rotated.inc(dead.open().records)
        self.metrics.dead_letter_bytes.set_function(dead.size_bytes)
        self.guard = PoisonGuard(
            path=s.dead_letter_dir / GUARD_FILE,
            max_attempts=s.poison_max_attempts,
            crash_marker=crash_marker_from_env(),
        )
        self.guard.open()
        server = None
        if s.metrics_port is not None:
            server, _ = start_metrics_server(
                port=s.metrics_port, host=s.metrics_host, registry=self.metrics.registry
            )
        influx = influx_of(s)
        try:
            with influx:
                writer = PointWriter(
                    influx=influx,
                    stopping=self._stop,
                    chunk_lines=s.write_chunk_lines,
                    parallelism=s.write_parallelism,
                    on_latency=self.metrics.write_latency.observe,
                    on_stored=self.metrics.points_written.inc,
                    on_retrying=lambda on: self.metrics.write_retrying.set(int(on)),
                    on_settled=self._session.wake,  # collect's wait ends when a write settles
                )
                with writer:
                    ready = prepare_storage(
                        influx, settings=s, index=self.index, state=self.state, stop=self._stop
                    )
                    if not ready:
                        return
                    self._peers.start(self.state, self.index.sensor_ids)
                    self._pipeline = WindowPipeline(
                        settings=s,
                        index=self.index,
                        state=self.state,
                        writer=writer,
                        dead=dead,
                        metrics=self.metrics,
                        health=self.health,
                        dedup=self._dedup,
                        history=start_history(s, self.index, self.state),
                        clock_ms=self._clock_ms,
                    )
                    gc.freeze()  # start-up's objects outlive the run: not walked (ADR 0029)
                    try:
                        self._consume()
                    finally:
                        gc.unfreeze()
        finally:
            if server is not None:
                server.shutdown()
                server.server_close()
            self.guard.close()
            dead.close()

    def _consume(self) -> None:
        session = self._session
        attempt = 0
        try:
            while not self._stop.is_set():
                if session.down:
                    self._inflight.drain()
                    self._teardown()
                    if not session.connect():
                        self._stop.wait(retry_delay(attempt))
                        attempt += 1
                        continue
                    attempt = 0
                follow_registry(self)
                greet(self)
                self._handle(session.collect(idle=self._idle))
                self._settle()
                self._require()[1].tick()
            # Flush what was received before the stop, while the deadline allows.
            while time.monotonic() < self._stop_deadline and not session.lost.is_set():
                window = session.collect(wait=False, idle=self._idle)
                if not window:
                    break
                self._handle(window)
                self._settle()
            self._inflight.drain()
            self._await_pending()
        except WriteAbortedError:
            log.warning(
                "stopped while InfluxDB was unavailable; unacknowledged messages stay "
                "at the broker and are redelivered on the next start"
            )
        finally:
            self._inflight.abandon()
            self._teardown(graceful=True)

    def _teardown(self, *, graceful: bool = False) -> None:
        if self._session.client is None:
            return
        self._session.teardown(graceful=graceful)
        self.metrics.released(self._pending.drop())

    def _idle(self) -> float | None:
        """While waiting for messages: acks that wait for a delta's PUBACK free Receive
        Maximum slots, so send them as soon as the PUBACK is in, not when the window closes."""
        # Nothing to decode meanwhile: finish and acknowledge the windows in flight now, not
        # when the next one comes (their acknowledgements and lag would wait for the traffic),
        # but without waiting for their writes: a window that fills meanwhile is decoded at
        # once, and the acknowledged windows' bytes let the network thread fill it (ADR 0038).
        # Each write's and delta's completion wakes the consumer (ADR 0041): the poll
        # returned here is only the fallback.
        busy = self._inflight.progress()
        if not self._pending:
            return _SETTLE_POLL_S if busy else None
        pubacks = self._session.pubacks  # before settling: a later one wakes us again
        self._settle()
        if self._pending and pubacks != self._pubacks_seen:
            self._pubacks_seen = pubacks
            return _PUBACK_RECHECK_S
        self._pubacks_seen = pubacks
        return _SETTLE_POLL_S

    def _handle(self, window: list[Message]) -> None:
        """Process a window: gateway messages first, then the other members' state deltas."""
        if not window:
            return
        _, pipeline = self._require()
        peers: list[Message] = []
        data: list[Message] = []
        for m in window:
            (peers if topics.is_internal(m.topic) else data).append(m)
        inflight = self._inflight
        self._adopted = 0
        if data:
            run_guarded(
                self.guard,
                data,
                process=self._start,
                quarantine=self._quarantine,
                settle=inflight.drain,
            )
            self.metrics.windows.inc()
        if peers:
            inflight.drain()  # their state merges into one that has every window of ours
            merge_peers(self, peers, pipeline)
        self._session.release(self._window_bytes(window) - self._adopted)  # the rest: overlap.py

    def _start(self, window: list[Message]) -> None:
        """Decode ``window`` while the one in flight is written (it holds its bytes until done)."""
        size = self._window_bytes(window)
        self._inflight.start(self._require()[1], window, size=size)
        self._adopted += size

    def _window_bytes(self, window: list[Message]) -> int:  # of the session's byte budgets
        return sum(window_bytes(m.payload) for m in window)

    def _process(self, window: list[Message]) -> None:
        """Store and acknowledge ``window`` (and the one in flight) now; its bytes are not the
        session's (the registry's replay, reload.py)."""
        self._inflight.start(self._require()[1], window, size=0)
        self._inflight.drain()

    def _acknowledge(self, window: list[Message]) -> bool:
        """Acknowledge a finished window; True if on a live connection (from now on a
        redelivery of its batches is a duplicate)."""
        _, pipeline = self._require()
        self._ack(window)
        stored = not self._session.lost.is_set()
        self.windows += 1
        # After the ack: self-monitoring must not delay acknowledgements.
        if (
            health := self.health.due_line(self._clock_ms(), unacked=self.metrics.held)
        ) is not None:
            pipeline.write_aggregates([health])
        return stored

    def _quarantine(self, poison: list[tuple[Message, int]]) -> None:
        """The crash-loop guard's verdict (cloud/ingest/guard.py): dead-letter these messages
        as poison without processing them, then acknowledge them."""
        self._inflight.drain()  # acknowledged in window order
        self._require()[1].quarantine(poison)
        self._ack([msg for msg, _ in poison])

    # ---- acknowledgements --------------------------------------------------------------
    def _ack(self, window: list[Message]) -> None:
        """Acknowledge a stored window, once the broker has taken the delta that hands our
        state changes to the other members, so a crash after the ack cannot leave them
        without those readings. That wait is not done here (acks.py says why)."""
        self._park(publish_state(self), window)

    def _park(self, infos: list[mqtt.MQTTMessageInfo] | None, msgs: list[Message]) -> None:
        """Acknowledge ``msgs`` once the broker has ``infos`` (None: they could not be
        published, the connection is lost and ``msgs`` come back)."""
        if infos is None:
            self.metrics.released(len(msgs))
            return
        self._pending.park(infos, acks_of(msgs))
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
            self._session.lost.set()
            return
        if done:
            self._session.ack(done)
        if self._pending.overdue(last_heard=self._session.last_heard):
            log.error(
                "state delta not acknowledged, and nothing received from the broker, for "
                "%.0f s; reconnecting (%d unacknowledged windows will be redelivered)",
                _DELTA_PUBLISH_TIMEOUT_S,
                len(self._pending),
            )
            self._session.lost.set()

    def _await_pending(self) -> None:
        """Stopping: give the broker until the stop deadline to take our last deltas, so the
        windows they carry are acknowledged; what is left is redelivered later."""
        while self._pending and not self._session.lost.is_set():
            if time.monotonic() >= self._stop_deadline:
                log.warning(
                    "stopping before the broker took our last state delta: %d windows stay "
                    "unacknowledged and will be redelivered",
                    len(self._pending),
                )
                return
            self._settle()
            time.sleep(_STOP_POLL_S)

"""The edge agent: serial ports -> batch window -> spool -> MQTT (QoS 1), plus status and
commands.

Threads: one serial hub reading every port (``edge.serial_hub``) and leaving each wake-up's
readings as one list on a deque the publisher loop empties on its ticks, the MQTT network
thread (``edge.netloop``; paho's callbacks only enqueue events, on the queue the loop sleeps
on), and the publisher loop in :meth:`EdgeAgent.run`, which alone touches the spool, the
batch window and the MQTT session state. The parts:
``edge.batcher`` (the window), ``edge.spool`` (the durable outbox), ``edge.uplink`` (the
session), ``edge.status`` and ``edge.commands``.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIServer

from contract.clock import now_ms
from contract.errors import StorageError
from contract.payload import encode
from contract.status import GatewayState, GatewayStatus
from contract.topics import Channel
from edge.batcher import Batcher
from edge.clock import ClockProbe, ClockWatch, probe_for
from edge.commands import CommandError, Commands
from edge.config import EdgeSettings
from edge.metrics import StatusCollector, serve_metrics
from edge.mqtt import ClientFactory, LinkState, paho_client
from edge.reading import EdgeReading
from edge.serial_hub import SerialHub
from edge.serial_reader import PortReader, SerialOpener, serial_opener
from edge.spool import Outbox, SqliteOutbox
from edge.status import (
    StatusInputs,
    gateway_status,
    sensor_health,
    silent_sensors,
    write_status_file,
)
from edge.uplink import DRAIN_TIMEOUT_S, MAX_IN_FLIGHT, Uplink, UplinkEvent

__all__ = ["MAX_IN_FLIGHT", "CommandError", "EdgeAgent"]

log = logging.getLogger(__name__)

#: Status "on change" is rate-limited to this, so a flapping port cannot flood the broker.
MIN_STATUS_GAP_S = 1.0
#: The longest the loop sleeps with nothing to wake it: reconnect attempts, the status and
#: silent-sensor checks and a stop request are seen within this. Each tick costs the loop
#: CPU even when idle (at 2 000 readings/s: 0.05 s ticks 1.9-2.4 % of a core for the loop,
#: 0.2 s ticks 1.2-1.4 %, bench.edge_gateway; ADR 0033).
LOOP_TICK_S = 0.2


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
        clock: Callable[[], int] = now_ms,
        clock_probe: ClockProbe | None = None,
    ) -> None:
        self.settings = settings
        self._outbox_given = outbox
        self._outbox: Outbox | None = outbox
        self._opener = opener or serial_opener(baudrate=settings.serial_baudrate)
        self._clock = clock
        self._stop = threading.Event()
        self._status_dirty = threading.Event()
        # CONNACKs, disconnects and commands wake the loop; PUBACKs wait on the uplink's
        # deque for its next wake-up (edge.uplink).
        # Readings from the hub wait on a deque (appends are thread-safe) for the loop's
        # next wake-up, which comes by the time the window is due (_hand_over, ADR 0036).
        self._inbox: queue.Queue[UplinkEvent | None] = queue.Queue()
        self._bursts: deque[tuple[float, list[EdgeReading]]] = deque()
        # Windows closed during this wake-up: stored with its PUBACKs by one spool write.
        self._closed: list[Sequence[EdgeReading]] = []
        self._readers: list[PortReader] = []
        self._hub: SerialHub | None = None
        self._batcher = Batcher(
            max_readings=settings.batch_max_readings,
            max_delay_s=settings.batch_max_delay_s,
            store=self._store,
        )
        self.link = LinkState(since_ms=clock(), since_mono=time.monotonic())
        self._uplink = Uplink(
            settings=settings,
            client_factory=client_factory,
            clock=clock,
            link=self.link,
            on_change=self._status_dirty.set,
            on_up=self._publish_status,
            events=self._inbox,
        )
        self._commands = Commands(
            config_file=config_file,
            settings=lambda: self.settings,
            apply=self._apply_settings,
            flush=self._close_window,
            spool_state=self._spool_state,
        )
        self._last_status_at = -1e9
        self._metrics = StatusCollector(gateway_id=settings.gateway_id)
        self._metrics_server: WSGIServer | None = None
        self._last_snapshot_at = -1e9
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
        self._readers = [
            PortReader(
                label=label,
                url=url,
                opener=self._opener,
                clock=self._clock,
                backoff_base_s=s.reconnect_base_s,
                backoff_cap_s=min(s.reconnect_cap_s, 5.0),
                on_change=self._status_dirty.set,
                clock_jump_ms=round(s.clock_jump_s * 1000),
            )
            for label, url in s.serial_ports.items()
        ]
        self._hub = SerialHub(readers=self._readers, deliver=self._hand_over)
        self._hub.start()
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
        up = self._uplink
        # Wake when the link would count as half-open, not up to a tick later.
        wait = min(LOOP_TICK_S, up.seconds_to_stall(time.monotonic()))
        self._collect(max(0.0, wait))
        up.check(time.monotonic(), self._will)
        if up.connected:
            up.send_pending(self._spool, self._clock_watch.offset_ms)
        self._maybe_status(time.monotonic())

    def _will(self) -> bytes:
        gw = self.settings.gateway_id
        return encode(GatewayStatus(gw=gw, state=GatewayState.OFFLINE, ts=self._clock()))

    # ------------------------------------------------------------------ batching

    def _collect(self, wait: float) -> None:
        """Take what the network thread handed over (waiting up to ``wait``, or until the
        batch window is due), then the hub's readings; close the window when full or old;
        then write the PUBACKs and the closed windows to the spool in one transaction."""
        try:
            event = self._inbox.get(timeout=self._batcher.wait_s(wait))
        except queue.Empty:
            pass
        else:
            self._take(event)
            while True:
                try:
                    self._take(self._inbox.get_nowait())
                except queue.Empty:
                    break
        self._uplink.handle_acks()
        bursts = self._bursts
        while bursts:
            arrived, readings = bursts.popleft()
            self._batcher.add(readings, at=arrived)
        self._batcher.close_if_due()
        self._settle()

    def _take(self, event: UplinkEvent | None) -> None:
        # PUBACKs first: any of them arrived before this event was queued.
        self._uplink.handle_acks()
        if event is not None:  # None: a wake-up; readings and PUBACKs are on their deques
            self._uplink.handle(event, self._on_command)

    def _hand_over(self, readings: list[EdgeReading]) -> None:
        """The hub's delivery (in the hub thread): leave ``readings`` on the deque with the
        time they arrived (a window they start is as old as they are). The loop takes them
        on its next wake-up, at the latest its tick: full windows then go to the spool
        together, one transaction (ADR 0036). Only a burst that starts a window which must
        close before that tick (``batch_max_delay_s`` under ``LOOP_TICK_S``) wakes the loop:
        each wake-up is a spool transaction and a publish round of its own, and costs the
        loop and the network thread CPU. ``len(self._batcher)`` is read without a lock: a
        stale answer costs one wake-up too many or a pickup one tick late, never a reading."""
        self._bursts.append((time.monotonic(), readings))
        batcher = self._batcher
        if batcher.max_delay_s < LOOP_TICK_S and not len(batcher):
            self._inbox.put(None)

    def _store(self, readings: Sequence[EdgeReading]) -> None:
        # The Batcher's store: the window waits for this wake-up's one spool write (_settle).
        self._closed.append(readings)

    def _settle(self) -> None:
        """Write the accounted PUBACKs and the closed windows to the spool, one transaction.
        Runs before anything reads the spool (take, a command, the status, shutdown)."""
        closed, self._closed = self._closed, []
        self._uplink.settle(self._spool, closed)

    def _close_window(self) -> int:
        """Close the window now and store it (``read_now``, shutdown); readings it held."""
        n = self._batcher.close()
        self._settle()
        return n

    def _apply_settings(self, update: dict[str, Any]) -> None:
        self.settings = self.settings.model_copy(update=update)
        self._batcher.max_readings = self.settings.batch_max_readings
        self._batcher.max_delay_s = self.settings.batch_max_delay_s

    # ------------------------------------------------------------------ status and commands

    def status(self, state: GatewayState = GatewayState.ONLINE) -> GatewayStatus:
        """The gateway's status now: decode stats summed over ports, spool and session
        counters, the uplink, and when each sensor was last heard."""
        inputs = StatusInputs(
            settings=self.settings,
            readers=self._readers,
            spool=self._outbox,
            counters=self._uplink.counters,
            in_flight=len(self._uplink.in_flight),
            link=self.link,
            clock_offset_ms=self._clock_watch.offset_ms,
            started_ms=self._started_ms,
        )
        return gateway_status(inputs, state, self._clock())

    def _maybe_status(self, now: float) -> None:
        if now - self._last_silent_check >= 1.0:
            # A sensor falling silent (or coming back) is news: say so without waiting for
            # the next periodic status.
            self._last_silent_check = now
            health = sensor_health(self._readers)
            silent = silent_sensors(self.settings, health, self._clock(), self._started_ms)
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

    def _publish_status(self) -> None:
        payload = encode(self.status())
        write_status_file(self.settings.status_file, payload)
        self._uplink.publish(self._uplink.topic(Channel.STATUS), payload, retain=True)

    def _on_command(self, payload: bytes) -> None:
        self._settle()  # a command may report the spool: show it as the PUBACKs left it
        ack = self._commands.handle(payload)
        self._uplink.publish(self._uplink.topic(Channel.ACK), encode(ack))

    def _spool_state(self) -> dict[str, Any]:
        age = self._spool.oldest_age_s()
        return {
            "depth": self._spool.depth(),
            "oldest_age_s": round(age, 3) if age is not None else None,
            "in_flight": len(self._uplink.in_flight),
            "current_batch": len(self._batcher),
            # per-lane depth, drops by lane and reason, high-water mark
            **self._spool.stats(),
        }

    # ------------------------------------------------------------------ shutdown

    def _shutdown(self) -> None:
        log.info("edge agent stopping")
        self._clock_watch.stop()
        if self._hub is not None:
            self._hub.stop()
        up = self._uplink
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        if self._outbox is not None:
            self._collect(0.0)
            self._close_window()
            while up.connected and time.monotonic() < deadline:
                up.send_pending(self._spool, self._clock_watch.offset_ms)
                if not up.in_flight and not up.maybe_pending:
                    break
                self._collect(0.01)  # PUBACKs, as they come
                self._close_window()
        offline = encode(self.status(GatewayState.OFFLINE))
        write_status_file(self.settings.status_file, offline)
        up.close(offline)
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

"""One serial port's decoding: bytes -> frames -> readings, with per-sensor stream health.

:class:`PortReader` holds a port's frame decoder, counters and sensor health; the reading of
bytes off the port happens in :class:`edge.serial_hub.SerialHub`, one thread for all ports.

Each reader also keeps per-sensor stream health (:class:`SensorHealth`): sequence gaps,
sequence restarts, duplicates, the sensor's clock skew against the gateway's and clock jumps,
so a technician sees *which* sensor misbehaves, not only that frames went missing.
"""

from __future__ import annotations

import logging
import operator
import queue
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from typing import Protocol

import serial

from contract.clock import now_ms as wall_clock_ms
from contract.errors import RejectReason
from contract.payload import KIND_FIELDS, ClockSource, SensorKind, check_rows
from contract.serial_frame import FrameColumns, FrameDecoder
from edge.reading import EdgeReading
from edge.serial_hub import SerialHub

log = logging.getLogger(__name__)

#: A sensor clock that moves by more than this against the gateway's between two frames jumped.
DEFAULT_CLOCK_JUMP_MS = 60_000
#: Weight of the newest gap in the smoothed reporting interval.
_INTERVAL_WEIGHT = 0.2


@dataclass(slots=True)
class SensorHealth:
    """What one port's reader knows about one sensor's stream of frames."""

    last_seen_ms: int
    last_seq: int
    frames: int = 1
    #: readings missing from the sequence (``seq`` jumped forward, or restarted above 0)
    gaps: int = 0
    #: times the sequence went backwards: the sensor restarted (power cut, watchdog)
    resets: int = 0
    #: frames repeating the previous ``seq`` (a firmware resend)
    duplicates: int = 0
    #: sensor clock minus gateway clock at receipt (ms), from the last frame with a time
    skew_ms: int | None = None
    #: times the skew changed by more than the jump threshold between two frames
    clock_jumps: int = 0
    #: smoothed time between two frames (ms); 0 until two frames were seen
    interval_ms: float = 0.0

    def copy(self) -> SensorHealth:
        """An independent copy (for status, outside the reader's lock)."""
        return SensorHealth(*_HEALTH_FIELDS(self))

    def observe(self, seq: int, ts_ms: int | None, now_ms: int, jump_ms: int) -> bool:
        """Account for the next frame; True if the sensor's clock jumped."""
        expected = self.last_seq + 1
        if seq > expected:
            self.gaps += seq - expected
        elif seq == self.last_seq:
            self.duplicates += 1
        elif seq < self.last_seq:
            # Restarted: readings 0..seq-1 of the new run never arrived.
            self.resets += 1
            self.gaps += seq
        gap = now_ms - self.last_seen_ms
        if gap > 0:
            self.interval_ms = (
                float(gap)
                if self.interval_ms == 0.0
                else self.interval_ms + _INTERVAL_WEIGHT * (gap - self.interval_ms)
            )
        self.last_seq = seq
        self.last_seen_ms = now_ms
        self.frames += 1
        jumped = False
        if ts_ms is not None:
            skew = ts_ms - now_ms
            if self.skew_ms is not None and abs(skew - self.skew_ms) > jump_ms:
                self.clock_jumps += 1
                jumped = True
            self.skew_ms = skew
        return jumped


#: Every field of SensorHealth in order, read at once (SensorHealth.copy).
_HEALTH_FIELDS = operator.attrgetter(*(f.name for f in fields(SensorHealth)))


class SerialPort(Protocol):
    """The part of ``serial.Serial`` the hub uses."""

    def read(self, size: int = 1) -> bytes:
        """Up to ``size`` bytes; with the hub's zero timeout, what is there now."""
        ...

    def fileno(self) -> int:
        """The descriptor a selector waits on."""
        ...

    def close(self) -> None:
        """Release the port."""
        ...


SerialOpener = Callable[[str], SerialPort]


def serial_opener(*, baudrate: int, timeout: float = 0.0) -> SerialOpener:
    """An opener for device paths, PTY paths and ``socket://host:port`` (pyserial URLs).

    Ports are opened non-blocking (``timeout`` 0): the hub reads a port only when its selector
    says bytes are there. They are opened exclusively where the platform supports it, so two
    agents cannot share a port and split its frames between them."""

    def open_port(url: str) -> SerialPort:
        try:
            port: SerialPort = serial.serial_for_url(
                url, baudrate=baudrate, timeout=timeout, exclusive=True
            )
        except ValueError:  # a URL handler without exclusive-open support
            port = serial.serial_for_url(url, baudrate=baudrate, timeout=timeout)
        return port

    return open_port


class PortReader:
    """One port: its URL and opener, its frame decoder, counters and per-sensor health.

    The agent's :class:`edge.serial_hub.SerialHub` reads all ports in one thread and calls
    :meth:`feed`; :meth:`start` runs a hub for this port alone and puts each reading on
    ``out`` (tools and tests)."""

    def __init__(
        self,
        *,
        label: str,
        url: str,
        opener: SerialOpener,
        out: queue.Queue[EdgeReading] | None = None,
        clock: Callable[[], int] = wall_clock_ms,
        backoff_base_s: float = 0.2,
        backoff_cap_s: float = 5.0,
        on_change: Callable[[], None] | None = None,
        clock_jump_ms: int = DEFAULT_CLOCK_JUMP_MS,
    ) -> None:
        self.label = label
        self.url = url
        self.opener = opener
        self.backoff_base_s = backoff_base_s
        self.backoff_cap_s = backoff_cap_s
        self._out = out
        self._clock = clock
        self._on_change = on_change
        self._jump_ms = clock_jump_ms
        self._lock = threading.Lock()
        self._hub: SerialHub | None = None
        self.decoder = FrameDecoder()
        self.is_open = False
        self.opens = 0
        self.open_failures = 0
        self.rejected = 0
        self.health: dict[str, SensorHealth] = {}

    def start(self) -> None:
        """Read this port alone in a thread of its own, putting readings on ``out``."""
        out = self._out
        if out is None:
            raise ValueError("a reader started on its own needs out=")

        def deliver(readings: list[EdgeReading]) -> None:
            for reading in readings:
                out.put(reading)

        self._hub = SerialHub(readers=[self], deliver=deliver)
        self._hub.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Stop the thread :meth:`start` began, closing the port."""
        if self._hub is not None:
            self._hub.stop(timeout)

    def stats(self) -> dict[str, int]:
        """Decoder counters plus reopen and rejected-reading counts (a consistent copy)."""
        with self._lock:
            out = asdict(self.decoder.stats)
            out["rejected"] = self.rejected
            out["opens"] = self.opens
            out["open_failures"] = self.open_failures
            return out

    def sensors_last_seen(self) -> dict[str, int]:
        """Sensor id -> ms of the last frame decoded from it on this port."""
        with self._lock:
            return {sensor: h.last_seen_ms for sensor, h in self.health.items()}

    def sensor_health(self) -> dict[str, SensorHealth]:
        """Sensor id -> a copy of its stream health as seen on this port."""
        with self._lock:
            # Once a second for the silent-sensor check: a copy per sensor, so it is cheap
            # (dataclasses.replace was 4x dearer).
            return {sensor: h.copy() for sensor, h in self.health.items()}

    def changed(self) -> None:
        """Tell the agent something a status should show changed (port state, a new sensor)."""
        if self._on_change is not None:
            self._on_change()

    def set_open(self, is_open: bool) -> None:
        """Record that the hub opened (counted) or closed the port."""
        with self._lock:
            self.is_open = is_open
            self.opens += is_open
        self.changed()

    def open_failed(self) -> None:
        """Count an attempt to open the port that failed."""
        with self._lock:
            self.open_failures += 1

    def feed(self, data: bytes) -> list[EdgeReading]:
        """Decode ``data`` (bytes as they came off the port); the readings it completed."""
        with self._lock:
            frames = self.decoder.feed_columns(data)
            if not frames:
                return []
            now = self._clock()
            changed = self._observe(frames, now)
            readings = self._to_readings(frames, now)
        if changed:
            self.changed()
        return readings

    def _observe(self, frames: FrameColumns, now: int) -> bool:
        """Account each frame to its sensor's health; True if a status should say so (a new
        sensor, a clock jump). A frame whose values break a rule still proves the sensor is
        alive and advances its sequence: it counts here before its reading is decided on."""
        changed = False
        health = self.health
        for sensor, seq, ts_ms in zip(frames.sensors, frames.seqs, frames.ts_ms, strict=True):
            known = health.get(sensor)
            if known is None:
                skew = None if ts_ms is None else ts_ms - now
                health[sensor] = SensorHealth(now, seq, skew_ms=skew)
                changed = True
            elif known.observe(seq, ts_ms, now, self._jump_ms):
                log.warning(
                    "port %s: sensor %s clock jumped; now %+d ms from the gateway's",
                    self.label,
                    sensor,
                    known.skew_ms or 0,
                )
                changed = True
        return changed

    def _to_readings(self, frames: FrameColumns, now_ms: int) -> list[EdgeReading]:
        """The readings of ``frames`` whose values keep the contract's value rules (checked
        over the burst at once, per kind); the others are counted and logged."""
        kinds = frames.kinds
        first = kinds[0]
        if kinds.count(first) == len(kinds):
            refused = check_rows(first, frames.values)
        else:
            refused = sorted(
                (i, broken)
                for kind in set(kinds)
                for i, broken in _check_kind(kind, kinds, frames.values)
            )
        clocks = [_SENSOR if ts is not None else _GATEWAY for ts in frames.ts_ms]
        stamps = [now_ms if ts is None else ts for ts in frames.ts_ms]
        values = list(map(dict, map(zip, map(KIND_FIELDS.__getitem__, kinds), frames.values)))
        readings = list(
            map(EdgeReading, frames.sensors, kinds, stamps, frames.seqs, values, clocks)
        )
        if refused:
            for i, (reason, detail) in refused:
                # A well-framed reading that breaks a value rule (occupied > capacity...): the
                # ingester would refuse the whole reading anyway; count it here where it is seen.
                self.rejected += 1
                log.warning(
                    "port %s: sensor %s seq %d refused: %s: %s",
                    self.label,
                    frames.sensors[i],
                    frames.seqs[i],
                    reason.value,
                    detail,
                )
            gone = {i for i, _broken in refused}
            readings = [r for i, r in enumerate(readings) if i not in gone]
        # parse_frame (or its burst form) checked the id, kind, integer types and seq sign,
        # check_rows the value rules: this is the reading's one validation (edge.reading).
        return readings


def _check_kind(
    kind: SensorKind, kinds: list[SensorKind], rows: list[tuple[int, ...]]
) -> list[tuple[int, tuple[RejectReason, str]]]:
    """check_rows over the rows of ``kind`` in a burst of mixed kinds, by burst index."""
    at = [i for i, k in enumerate(kinds) if k is kind]
    return [(at[j], broken) for j, broken in check_rows(kind, [rows[i] for i in at])]


_SENSOR = ClockSource.SENSOR
_GATEWAY = ClockSource.GATEWAY

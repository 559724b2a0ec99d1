"""One thread per serial port: read bytes, decode frames, hand readings to the publisher.

A port that disappears (USB unplugged, PTY closed, TCP serial server gone) is closed and
reopened with full-jitter backoff; the thread never exits until the agent stops. Configure a
stable path (``/dev/serial/by-id/...``, or the symlink ``pantau fwsim run --link`` keeps) so
the device that comes back is found under the same name.

Each reader also keeps per-sensor stream health (:class:`SensorHealth`): sequence gaps,
sequence restarts, duplicates, the sensor's clock skew against the gateway's and clock jumps,
so a technician sees *which* sensor misbehaves, not only that frames went missing.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Protocol

import serial

from contract.backoff import backoff_delay
from contract.payload import ClockSource, Reading, check_values
from contract.serial_frame import FrameDecoder, SerialFrame
from edge.outbox import wall_ms

log = logging.getLogger(__name__)

#: How long one read() may block; bounds how fast a reader notices the agent stopping.
READ_TIMEOUT_S = 0.1
READ_CHUNK = 4096
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


class SerialPort(Protocol):
    """The part of ``serial.Serial`` the reader uses."""

    def read(self, size: int = 1) -> bytes:
        """Up to ``size`` bytes; fewer (or none) after the timeout."""
        ...

    def close(self) -> None:
        """Release the port."""
        ...


SerialOpener = Callable[[str], SerialPort]


def serial_opener(*, baudrate: int, timeout: float = READ_TIMEOUT_S) -> SerialOpener:
    """An opener for device paths, PTY paths and ``socket://host:port`` (pyserial URLs).

    Ports are opened exclusively where the platform supports it, so two agents cannot share a
    port and split its frames between them."""

    def open_port(url: str) -> SerialPort:
        try:
            port: SerialPort = serial.serial_for_url(
                url, baudrate=baudrate, timeout=timeout, exclusive=True
            )
        except ValueError:  # a URL handler without exclusive-open support
            port = serial.serial_for_url(url, baudrate=baudrate, timeout=timeout)
        return port

    return open_port


def _read_some(port: SerialPort) -> bytes:
    """What the port has now (waiting up to its timeout for the first byte).

    pyserial's ``read(n)`` keeps collecting until it has ``n`` bytes or the timeout passes, and
    throws away what it collected if the device vanishes meanwhile: asking a device port for
    only what its driver already holds means an unplug loses no frame the gateway had received
    (and frames are handed on as they arrive, not up to a timeout later). A ``socket://`` port
    cannot say how much is waiting, so it reads in chunks."""
    if isinstance(port, serial.Serial):
        data = port.read(max(1, min(port.in_waiting, READ_CHUNK)))
        if len(data) == 1 and port.in_waiting:
            # We waited for the first byte of a burst; take the rest of it in the same wakeup
            # (one decoder pass per frame instead of two).
            data += port.read(min(port.in_waiting, READ_CHUNK))
        return data
    return port.read(READ_CHUNK)


class PortReader:
    """Reads one port in its own thread and puts :class:`Reading` objects on ``out``."""

    def __init__(
        self,
        *,
        label: str,
        url: str,
        opener: SerialOpener,
        out: queue.Queue[Reading],
        clock: Callable[[], int] = wall_ms,
        backoff_base_s: float = 0.2,
        backoff_cap_s: float = 5.0,
        on_change: Callable[[], None] | None = None,
        clock_jump_ms: int = DEFAULT_CLOCK_JUMP_MS,
    ) -> None:
        self.label = label
        self.url = url
        self._opener = opener
        self._out = out
        self._clock = clock
        self._base = backoff_base_s
        self._cap = backoff_cap_s
        self._on_change = on_change
        self._jump_ms = clock_jump_ms
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.decoder = FrameDecoder()
        self.is_open = False
        self.opens = 0
        self.rejected = 0
        self.health: dict[str, SensorHealth] = {}

    def start(self) -> None:
        """Start the reader thread."""
        self._thread = threading.Thread(target=self._run, name=f"serial-{self.label}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Ask the thread to stop and wait for it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def stats(self) -> dict[str, int]:
        """Decoder counters plus reopen and rejected-reading counts (a consistent copy)."""
        with self._lock:
            out = asdict(self.decoder.stats)
            out["rejected"] = self.rejected
            out["opens"] = self.opens
            return out

    def sensors_last_seen(self) -> dict[str, int]:
        """Sensor id -> ms of the last frame decoded from it on this port."""
        with self._lock:
            return {sensor: h.last_seen_ms for sensor, h in self.health.items()}

    def sensor_health(self) -> dict[str, SensorHealth]:
        """Sensor id -> a copy of its stream health as seen on this port."""
        with self._lock:
            return {sensor: replace(h) for sensor, h in self.health.items()}

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change()

    def _run(self) -> None:
        attempt = 0
        while not self._stop.is_set():
            try:
                port = self._opener(self.url)
            except (serial.SerialException, OSError) as exc:
                delay = backoff_delay(attempt, base=self._base, cap=self._cap)
                attempt += 1
                log.warning(
                    "port %s (%s) cannot open: %s; retry in %.2fs", self.label, self.url, exc, delay
                )
                self._stop.wait(delay)
                continue
            attempt = 0
            with self._lock:
                self.opens += 1
                self.is_open = True
            log.info("port %s (%s) open", self.label, self.url)
            self._changed()
            try:
                self._read_until_failure(port)
            except (serial.SerialException, OSError) as exc:
                log.warning("port %s (%s) lost: %s", self.label, self.url, exc)
            finally:
                with self._lock:
                    self.is_open = False
                try:
                    port.close()
                except (serial.SerialException, OSError):
                    log.debug("closing %s failed", self.label, exc_info=True)
                self._changed()
            if not self._stop.is_set():
                self._stop.wait(backoff_delay(0, base=self._base, cap=self._cap))

    def _read_until_failure(self, port: SerialPort) -> None:
        while not self._stop.is_set():
            data = _read_some(port)
            if not data:
                continue
            changed = False
            with self._lock:
                frames = self.decoder.feed(data)
                now = self._clock()
                readings = []
                health = self.health
                for frame in frames:
                    # A frame whose values break a rule still proves the sensor is alive and
                    # advances its sequence: account for it before deciding on the reading.
                    known = health.get(frame.sensor)
                    if known is None:
                        skew = None if frame.ts_ms is None else frame.ts_ms - now
                        health[frame.sensor] = SensorHealth(now, frame.seq, skew_ms=skew)
                        changed = True
                    elif known.observe(frame.seq, frame.ts_ms, now, self._jump_ms):
                        log.warning(
                            "port %s: sensor %s clock jumped; now %+d ms from the gateway's",
                            self.label,
                            frame.sensor,
                            known.skew_ms or 0,
                        )
                        changed = True
                    reading = self._to_reading(frame, now)
                    if reading is not None:
                        readings.append(reading)
            for reading in readings:
                self._out.put(reading)
            if changed:
                self._changed()

    def _to_reading(self, frame: SerialFrame, now_ms: int) -> Reading | None:
        clock = ClockSource.SENSOR if frame.ts_ms is not None else ClockSource.GATEWAY
        values = frame.values_dict()
        broken = check_values(frame.kind, values)
        if broken is not None:
            # A well-framed reading that breaks a value rule (occupied > capacity...): the
            # ingester would refuse the whole reading anyway; count it here where it is seen.
            self.rejected += 1
            log.warning(
                "port %s: sensor %s seq %d refused: %s: %s",
                self.label,
                frame.sensor,
                frame.seq,
                broken[0].value,
                broken[1],
            )
            return None
        # parse_frame already checked the id, kind, integer types and seq sign, and
        # check_values the value rules: constructing without re-validating halves the
        # reader's cost per frame on a 2000 readings/s gateway.
        return Reading.model_construct(
            sensor=frame.sensor,
            kind=frame.kind,
            ts=frame.ts_ms if frame.ts_ms is not None else now_ms,
            seq=frame.seq,
            values=values,
            clock=clock,
        )

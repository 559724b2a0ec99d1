"""One thread per serial port: read bytes, decode frames, hand readings to the publisher.

A port that disappears (USB unplugged, PTY closed, TCP serial server gone) is closed and
reopened with full-jitter backoff; the thread never exits until the agent stops.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import asdict
from typing import Protocol

import serial
from pydantic import ValidationError

from contract.backoff import backoff_delay
from contract.payload import ClockSource, Reading
from contract.serial_frame import FrameDecoder, SerialFrame
from edge.outbox import wall_ms

log = logging.getLogger(__name__)

#: How long one read() may block; bounds how fast a reader notices the agent stopping.
READ_TIMEOUT_S = 0.1
READ_CHUNK = 4096


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
    ) -> None:
        self.label = label
        self.url = url
        self._opener = opener
        self._out = out
        self._clock = clock
        self._base = backoff_base_s
        self._cap = backoff_cap_s
        self._on_change = on_change
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.decoder = FrameDecoder()
        self.is_open = False
        self.opens = 0
        self.rejected = 0
        self.last_seen: dict[str, int] = {}

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
            return dict(self.last_seen)

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
            data = port.read(READ_CHUNK)
            if not data:
                continue
            new_sensor = False
            with self._lock:
                frames = self.decoder.feed(data)
                now = self._clock()
                readings = []
                for frame in frames:
                    reading = self._to_reading(frame, now)
                    if reading is None:
                        continue
                    new_sensor |= frame.sensor not in self.last_seen
                    self.last_seen[frame.sensor] = now
                    readings.append(reading)
            for reading in readings:
                self._out.put(reading)
            if new_sensor:
                self._changed()

    def _to_reading(self, frame: SerialFrame, now_ms: int) -> Reading | None:
        clock = ClockSource.SENSOR if frame.ts_ms is not None else ClockSource.GATEWAY
        try:
            return Reading(
                sensor=frame.sensor,
                kind=frame.kind,
                ts=frame.ts_ms if frame.ts_ms is not None else now_ms,
                seq=frame.seq,
                values=frame.values_dict(),
                clock=clock,
            )
        except ValidationError as exc:
            # A well-framed reading that breaks a value rule (occupied > capacity...): the
            # ingester would refuse the whole reading anyway; count it here where it is seen.
            self.rejected += 1
            log.warning(
                "port %s: sensor %s seq %d refused: %s",
                self.label,
                frame.sensor,
                frame.seq,
                exc.errors()[0]["msg"],
            )
            return None

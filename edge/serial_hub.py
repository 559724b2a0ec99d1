"""One thread reads every serial port: a selector waits on all of them at once.

A thread per port cost about 0.55 % of a core each at 250 frames/s (8 ports: 4.4 %), most of
it waking, taking the GIL and handing single readings over a queue. Here one thread sleeps in
``select`` (epoll) on every open port's descriptor and a wake-up pipe, reads a port only when
it is readable, decodes the burst and hands its readings on as one list.

Ports are still opened through ``serial.serial_for_url`` (``edge.serial_reader.serial_opener``)
so ``/dev/ttyUSB0``, PTYs and ``socket://host:port`` work unchanged; pyserial gives each a
``fileno()``. A port that disappears (USB unplugged, PTY closed, TCP serial server gone) turns
readable and fails its read: it is closed and reopened with full-jitter backoff while the
others keep being read. Configure a stable path (``/dev/serial/by-id/...``, or the symlink
``pantau fwsim run --link`` keeps) so the device that comes back is found under the same name.
Opening a port happens in this thread: a ``socket://`` server that does not answer holds the
other ports for up to pyserial's connect timeout (their bytes wait in the kernel meanwhile).

After a wake-up that read bytes the thread naps (:data:`NAP_S`) before it waits again, unless
a read came back full (:data:`FULL_READ`: more is waiting). Sensors are not in step: 200 of them at
10 Hz on 8 ports, each at its own moment, woke the thread at nearly every frame and cost
10.4 % of a core, against 2.4 % when they all reported in one burst per port (``bench.
edge_gateway --phases 25`` and ``--phases 1``). With the nap the frames of 100 ms come in one
read per port, whatever their phases; they wait in the kernel meanwhile (a tty holds 4 KB, a
third of a second at 115 200 baud), and the publisher loop takes readings on its own 0.2 s
tick anyway.
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import serial

from contract.backoff import backoff_delay
from edge.reading import EdgeReading

if TYPE_CHECKING:  # the reader module builds a hub for a port read on its own
    from edge.serial_reader import PortReader, SerialPort

log = logging.getLogger(__name__)

READ_CHUNK = 4096

#: The longest the thread sleeps with nothing to read and no reopen due.
IDLE_WAIT_S = 1.0

#: A read of this many bytes or more found more waiting: a tty returns at most 4 095 bytes a
#: read (its line discipline's buffer less one), a socket up to READ_CHUNK.
FULL_READ = READ_CHUNK - 1

#: After a wake-up that read bytes, the time from that wake-up to the next wait: at most about
#: 1 / NAP_S wake-ups a second however the sensors' frames are spread (module docstring).
NAP_S = 0.1


def read_some(port: SerialPort) -> bytes:
    """What the port holds now, at most :data:`READ_CHUNK` bytes (called when readable).

    With a zero timeout pyserial returns after one ``os.read``/``recv``: it never sits
    collecting toward a size, so a device that vanishes loses no bytes the driver already
    held (pyserial throws away what a blocking ``read(n)`` had collected when the device
    fails), and frames are handed on as they arrive. A port that is readable but yields
    nothing is gone (pyserial raises ``SerialException``).

    A device or PTY (pyserial's POSIX ``Serial``) is read with one ``os.read`` on its
    descriptor, which is what pyserial's ``read`` ends in after its own ``select`` and
    bookkeeping: 29 us less per read, at about 80 reads a second on a busy gateway. Other
    ports (``socket://``, ``rfc2217://``, whose bytes need their handler) use ``read``."""
    if type(port) is not serial.Serial:
        return port.read(READ_CHUNK)
    try:
        data = os.read(port.fileno(), READ_CHUNK)
    except BlockingIOError:
        return b""  # readiness that went away: nothing to read, the port is fine
    if not data:
        raise serial.SerialException("device reports readiness to read but returned no data")
    return data


@dataclass(slots=True)
class _Slot:
    """A port as the hub sees it: open (``port``) or waiting to reopen (``due``)."""

    reader: PortReader
    port: SerialPort | None = None
    fd: int = -1
    attempt: int = 0
    due: float = 0.0


class SerialHub:
    """Reads ``readers``' ports in one thread and passes the readings of each wake-up (every
    port that was readable) to ``deliver`` as one list (called in that thread; it must not
    block)."""

    def __init__(
        self,
        *,
        readers: Sequence[PortReader],
        deliver: Callable[[list[EdgeReading]], None],
        clock: Callable[[], float] = time.monotonic,
        nap_s: float = NAP_S,
        nap: Callable[[float], object] | None = None,
    ) -> None:
        self._slots = [_Slot(reader) for reader in readers]
        self._deliver = deliver
        self._clock = clock
        self._nap_s = nap_s
        #: sleeps that long, or less if the hub is stopped (tests record it)
        self._nap = nap
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._wake_r = -1
        self._wake_w = -1

    def start(self) -> None:
        """Start the reading thread (ports open from there)."""
        self._stop.clear()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        self._thread = threading.Thread(target=self._run, name="serial-hub", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Stop the thread and wait for it; every port is closed."""
        self._stop.set()
        if self._thread is None:
            return
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")
        self._thread.join(timeout)
        self._thread = None
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)

    def _run(self) -> None:
        with selectors.DefaultSelector() as sel:
            sel.register(self._wake_r, selectors.EVENT_READ, None)
            try:
                nap = self._nap or self._stop.wait
                while not self._stop.is_set():
                    wait = self._open_due(sel)
                    # One hand-over per wake-up, for every port that had bytes: one deque
                    # append that the publisher loop takes on its next wake-up.
                    readings: list[EdgeReading] = []
                    got, full = False, False
                    events = sel.select(wait)
                    woke = time.monotonic()
                    for key, _events in events:
                        slot: _Slot | None = key.data
                        if slot is None:
                            with contextlib.suppress(BlockingIOError):
                                os.read(self._wake_r, 64)
                        else:
                            n = self._read(sel, slot, readings)
                            got, full = got or n > 0, full or n >= FULL_READ
                    if readings:
                        self._deliver(readings)
                    if got and not full and self._nap_s > 0:
                        rest = self._nap_s - (time.monotonic() - woke)
                        if rest > 0:
                            nap(rest)
            finally:
                for slot in self._slots:
                    if slot.port is not None:
                        self._close(sel, slot)

    def _open_due(self, sel: selectors.BaseSelector) -> float:
        """Open the closed ports whose backoff is over; how long the selector may sleep."""
        now = self._clock()
        wait = IDLE_WAIT_S
        for slot in self._slots:
            if slot.port is not None:
                continue
            if now >= slot.due:
                self._open(sel, slot)
            if slot.port is None:
                wait = min(wait, max(0.0, slot.due - now))
        return wait

    def _open(self, sel: selectors.BaseSelector, slot: _Slot) -> None:
        r = slot.reader
        try:
            port = r.opener(r.url)
        except (serial.SerialException, OSError) as exc:
            delay = backoff_delay(slot.attempt, base=r.backoff_base_s, cap=r.backoff_cap_s)
            slot.attempt += 1
            slot.due = self._clock() + delay
            r.open_failed()
            log.warning("port %s (%s) cannot open: %s; retry in %.2fs", r.label, r.url, exc, delay)
            return
        unwatchable = ""
        try:
            fd = port.fileno()
            sel.register(fd, selectors.EVENT_READ, slot)
        except (serial.SerialException, OSError, ValueError) as exc:
            unwatchable = str(exc)
        if unwatchable:
            # A port the selector cannot wait on is useless to this hub: say so and retry.
            with contextlib.suppress(serial.SerialException, OSError):
                port.close()
            slot.due = self._clock() + r.backoff_cap_s
            log.error("port %s (%s) cannot be watched: %s", r.label, r.url, unwatchable)
            return
        slot.port, slot.fd, slot.attempt = port, fd, 0
        log.info("port %s (%s) open", r.label, r.url)
        r.set_open(True)

    def _read(self, sel: selectors.BaseSelector, slot: _Slot, out: list[EdgeReading]) -> int:
        """Add the readings the port's bytes completed to ``out``; return how many bytes it
        read (0 if it failed: closed, reopen due)."""
        if slot.port is None:
            return 0
        try:
            data = read_some(slot.port)
        except (serial.SerialException, OSError) as exc:
            log.warning("port %s (%s) lost: %s", slot.reader.label, slot.reader.url, exc)
            self._close(sel, slot)
            r = slot.reader
            slot.due = self._clock() + backoff_delay(0, base=r.backoff_base_s, cap=r.backoff_cap_s)
            return 0
        if data:
            out += slot.reader.feed(data)
        return len(data)

    def _close(self, sel: selectors.BaseSelector, slot: _Slot) -> None:
        port, slot.port = slot.port, None
        if port is None:
            return
        with contextlib.suppress(KeyError, ValueError):
            sel.unregister(slot.fd)
        try:
            port.close()
        except (serial.SerialException, OSError):
            log.debug("closing %s failed", slot.reader.label, exc_info=True)
        slot.reader.set_open(False)

"""Serial lines the simulated sensors write to: what every bus does; the two kinds are
``firmware_sim.pty_bus.PtyBus`` (a pseudo-terminal) and ``firmware_sim.socket_bus.SocketBus``
(a TCP server).

Each bus owns a writer thread and a queue, so the simulation never blocks on a slow or absent
reader. A bus writes only while a reader is attached (a PTY whose slave side is open, or a
connected TCP client) and has been for :data:`SETTLE_S`: pyserial flushes its input when it
opens a port, so bytes written earlier would be lost. Until then frames wait in the queue;
a reader that attaches late still gets every frame.

A bus can be *unplugged* (:meth:`Bus.unplug`): the line vanishes (the PTY is closed and its
/dev/pts node disappears; the TCP server and its clients are closed), frames queued or sent
meanwhile are lost, and after the given time a new line appears. A PTY bus given a ``link``
path keeps a symlink there that always points at its current PTY, so a gateway configured
with the link finds the replugged line like a udev ``/dev/serial/by-id`` name.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable

from firmware_sim.faults import Emission

log = logging.getLogger(__name__)

#: How long a reader must have been attached before we write (pyserial's open-time flush).
SETTLE_S = 0.25
#: How often a waiting writer thread looks again (unplugged, no reader, settling).
TICK_S = 0.05

#: Called by the writer thread once an emission's bytes are all handed to the kernel.
OnWritten = Callable[[Emission], None]


class Bus(ABC):
    """One serial line shared by the sensors on one gateway port."""

    def __init__(self, *, gateway: str, port: str, on_written: OnWritten) -> None:
        self.gateway = gateway
        self.port = port
        self._on_written = on_written
        self._queue: collections.deque[Emission] = collections.deque()
        self._cond = threading.Condition()
        self._closing = False
        self._thread: threading.Thread | None = None
        #: bytes of the emission at the head of the queue already written
        self._offset = 0
        self.url = ""
        self.last_write = 0.0
        self._unplug_request: float | None = None
        self._unplugged_until: float | None = None
        #: valid frames lost because the line was unplugged when they were due
        self.dropped_frames = 0
        self.unplugs = 0

    @abstractmethod
    def _open(self) -> str:
        """Open the line and return the URL a gateway opens with serial_for_url."""

    @abstractmethod
    def _pump(self) -> None:
        """One round of the writer thread: accept/detect readers, write what fits."""

    @abstractmethod
    def _close(self) -> None:
        """Release the line."""

    @abstractmethod
    def reader_caught_up(self) -> bool:
        """True if nothing is queued and the reader has taken every byte written."""

    def _disconnect(self) -> None:
        """Make the line vanish (unplug)."""
        self._close()

    def _reconnect(self) -> None:
        """Make the line appear again (replug)."""
        self.url = self._open()

    @property
    def unplugged(self) -> bool:
        """True from :meth:`unplug` until the line is back."""
        with self._cond:
            return self._unplug_request is not None or self._unplugged_until is not None

    def unplug(self, duration_s: float) -> None:
        """Pull the cable: the line vanishes for ``duration_s`` wall seconds, frames queued or
        sent meanwhile are lost, then the line comes back. Ignored while already unplugged."""
        with self._cond:
            if self._unplug_request is not None or self._unplugged_until is not None:
                return
            self._unplug_request = duration_s
            self._cond.notify()

    def start(self) -> str:
        """Open the line and start the writer thread; returns the URL."""
        self.url = self._open()
        self._thread = threading.Thread(
            target=self._run, name=f"bus-{self.gateway}-{self.port}", daemon=True
        )
        self._thread.start()
        return self.url

    def send(self, emission: Emission) -> None:
        """Queue ``emission``; never blocks."""
        if not emission.data:
            return
        with self._cond:
            if self._unplug_request is not None or self._unplugged_until is not None:
                self.dropped_frames += len(emission.frames)
                return
            self._queue.append(emission)
            self._cond.notify()

    def pending(self) -> int:
        """Emissions not yet completely written."""
        with self._cond:
            return len(self._queue)

    def pending_frames(self) -> int:
        """Valid frames inside the emissions not yet completely written."""
        with self._cond:
            return sum(len(e.frames) for e in self._queue)

    def close(self) -> None:
        """Stop the writer and release the line; unwritten emissions are dropped."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(5)
        self._close()

    def _run(self) -> None:
        while True:
            with self._cond:
                if self._closing:
                    return
            try:
                if not self._unplug_step():
                    self._pump()
            except Exception:  # the writer thread's outermost loop: log and keep the line up
                log.exception("bus %s/%s writer failed; retrying", self.gateway, self.port)
                time.sleep(TICK_S)

    def _unplug_step(self) -> bool:
        """Carry out a pending unplug or replug; True while the line is away."""
        with self._cond:
            request = self._unplug_request
            until = self._unplugged_until
            if request is not None:
                self._unplug_request = None
                self.dropped_frames += sum(len(e.frames) for e in self._queue)
                self._queue.clear()
                self._offset = 0
                self._unplugged_until = until = time.monotonic() + request
        if request is not None:
            self._disconnect()
            self.unplugs += 1
            log.warning("%s/%s: unplugged for %.1f s", self.gateway, self.port, request)
            return True
        if until is None:
            return False
        left = until - time.monotonic()
        if left > 0:
            with self._cond:
                self._cond.wait(min(TICK_S, left))
            return True
        self._reconnect()
        with self._cond:
            self._unplugged_until = None
        log.warning("%s/%s: plugged back in on %s", self.gateway, self.port, self.url)
        return False

    def _head(self, timeout: float) -> tuple[Emission, bytes] | None:
        """The emission to write next and its unwritten bytes; waits up to ``timeout``."""
        with self._cond:
            if not self._queue and not self._closing:
                self._cond.wait(timeout)
            if not self._queue:
                return None
            head = self._queue[0]
            return head, head.data[self._offset :]

    def _advance(self, written: int) -> None:
        """Record that ``written`` bytes of the head emission went out."""
        done: Emission | None = None
        with self._cond:
            self.last_write = time.monotonic()
            self._offset += written
            head = self._queue[0]
            if self._offset >= len(head.data):
                self._queue.popleft()
                self._offset = 0
                done = head
        if done is not None:
            self._on_written(done)

    def _drop_partial(self) -> None:
        """The reader went away mid-frame: the rest of that frame is useless to the next."""
        with self._cond:
            if self._offset and self._queue:
                dropped = self._queue.popleft()
                self._offset = 0
                log.warning(
                    "%s/%s: reader left mid-frame of %s", self.gateway, self.port, dropped.sensor
                )

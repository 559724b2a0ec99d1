"""A serial line as a pseudo-terminal: the gateway opens the slave path like a USB serial
adapter (see ``firmware_sim.transport`` for what every bus does)."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import select
import struct
import termios
import time
import tty
from pathlib import Path

from firmware_sim.transport import SETTLE_S, TICK_S, Bus, OnWritten

log = logging.getLogger(__name__)


class PtyBus(Bus):
    """A pseudo-terminal: the gateway opens the slave path like a USB serial adapter. With
    ``link``, a symlink there always points at the current PTY and is the bus's URL."""

    def __init__(
        self, *, gateway: str, port: str, on_written: OnWritten, link: Path | None = None
    ) -> None:
        super().__init__(gateway=gateway, port=port, on_written=on_written)
        self._master = -1
        self.path = ""
        self.link = link
        self._attached_at: float | None = None

    def _open(self) -> str:
        master, slave = os.openpty()
        # Raw mode: no echo back to us, no CR/LF translation of the frames.
        tty.setraw(slave)
        self.path = os.ttyname(slave)
        # Not keeping the slave open lets poll() on the master report POLLHUP while no
        # reader has the port open: that is how we know when to write.
        os.close(slave)
        os.set_blocking(master, False)
        self._master = master
        if self.link is None:
            return self.path
        tmp = self.link.with_name(f".{self.link.name}.{os.getpid()}.tmp")
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(self.path)
        tmp.replace(self.link)  # atomic: a gateway never finds the name missing mid-swap
        return str(self.link)

    def _disconnect(self) -> None:
        # Closing the master makes the slave node vanish and the reader's read() fail (EIO),
        # as when a USB adapter is pulled; the stable name goes too, as udev's would.
        self._close()
        self._attached_at = None

    def _poll(self, timeout_s: float, want_write: bool) -> int:
        poller = select.poll()
        poller.register(self._master, select.POLLIN | (select.POLLOUT if want_write else 0))
        events = poller.poll(int(timeout_s * 1000))
        return events[0][1] if events else 0

    def _pump(self) -> None:
        flags = self._poll(0, want_write=False)
        if flags & select.POLLHUP:
            if self._attached_at is not None:
                log.info("%s/%s: reader detached", self.gateway, self.port)
                self._drop_partial()
            self._attached_at = None
            with self._cond:
                self._cond.wait(TICK_S)
            return
        if flags & select.POLLIN:
            # Whatever the gateway writes to the sensor is ignored, but must be drained.
            with contextlib.suppress(BlockingIOError, OSError):
                os.read(self._master, 4096)
        now = time.monotonic()
        if self._attached_at is None:
            log.info("%s/%s: reader attached on %s", self.gateway, self.port, self.path)
            self._attached_at = now
        if now - self._attached_at < SETTLE_S:
            time.sleep(TICK_S)
            return
        head = self._head(TICK_S)
        if head is None:
            return
        try:
            written = os.write(self._master, head[1])
        except BlockingIOError:
            self._poll(TICK_S, want_write=True)  # the reader is slow: wait for room
            return
        except OSError as exc:  # EIO: the slave closed between poll and write
            log.debug("%s/%s write failed: %s", self.gateway, self.port, exc)
            time.sleep(TICK_S)
            return
        self._advance(written)

    def reader_caught_up(self) -> bool:
        if self.unplugged:
            return True  # nothing left to take: unplugging dropped it
        # The kernel moves written bytes to the slave's read queue asynchronously, so an
        # empty read queue right after a write proves nothing: wait for it to settle first.
        if self.pending() or time.monotonic() - self.last_write < SETTLE_S:
            return False
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        except OSError:
            return False
        try:
            raw = fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0")
            unread: int = struct.unpack("i", raw)[0]
        finally:
            os.close(fd)
        return unread == 0

    def _close(self) -> None:
        if self._master >= 0:
            with contextlib.suppress(OSError):
                os.close(self._master)
            self._master = -1
        if self.link is not None:
            self.link.unlink(missing_ok=True)

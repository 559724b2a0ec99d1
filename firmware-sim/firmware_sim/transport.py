"""Serial lines the simulated sensors write to: a pseudo-terminal or a TCP server per bus.

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
import contextlib
import fcntl
import ipaddress
import logging
import os
import select
import socket
import struct
import termios
import threading
import time
import tty
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path

from firmware_sim.faults import Emission

log = logging.getLogger(__name__)

#: How long a reader must have been attached before we write (pyserial's open-time flush).
SETTLE_S = 0.25
_TICK_S = 0.05

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
                time.sleep(_TICK_S)

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
                self._cond.wait(min(_TICK_S, left))
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
                self._cond.wait(_TICK_S)
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
            time.sleep(_TICK_S)
            return
        head = self._head(_TICK_S)
        if head is None:
            return
        try:
            written = os.write(self._master, head[1])
        except BlockingIOError:
            self._poll(_TICK_S, want_write=True)  # the reader is slow: wait for room
            return
        except OSError as exc:  # EIO: the slave closed between poll and write
            log.debug("%s/%s write failed: %s", self.gateway, self.port, exc)
            time.sleep(_TICK_S)
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


def _url_host(host: str) -> str:
    """The host part of a URL that reaches a server bound to ``host`` from this machine."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host or "127.0.0.1"  # a name ("localhost", "fwsim"); "" binds every address
    if ip.is_unspecified:  # bound to every address: loopback is one of them
        ip = ipaddress.ip_address("::1" if ip.version == 6 else "127.0.0.1")
    return f"[{ip}]" if ip.version == 6 else str(ip)


class SocketBus(Bus):
    """A TCP server: the gateway opens ``socket://HOST:PORT``. Every connected client gets the
    frames written while it is connected, like a tap on a line.

    ``host`` is the address to listen on (``0.0.0.0`` to serve other containers); ``bind_port``
    0 picks a free port. The URL names a wildcard bind as loopback, which is where a reader on
    the same host reaches it."""

    def __init__(
        self,
        *,
        gateway: str,
        port: str,
        on_written: OnWritten,
        host: str = "127.0.0.1",
        bind_port: int = 0,
    ) -> None:
        super().__init__(gateway=gateway, port=port, on_written=on_written)
        if not 0 <= bind_port <= 65535:
            raise ValueError(f"bind_port must be 0..65535, not {bind_port}")
        self.host = host
        self.bind_port = bind_port
        self._server: socket.socket | None = None
        self._clients: dict[socket.socket, float] = {}

    def _open(self) -> str:
        # create_server sets SO_REUSEADDR: a restarted simulator gets its fixed port back
        # even while the previous run's connections sit in TIME_WAIT.
        server = socket.create_server((self.host, self.bind_port))
        server.setblocking(False)
        self._server = server
        # A replugged line comes back on the port it had.
        self.bind_port = server.getsockname()[1]
        advertised = _url_host(self.host)
        return f"socket://{advertised}:{server.getsockname()[1]}"

    def _pump(self) -> None:
        server = self._server
        if server is None:
            return
        readable, _, _ = select.select([server, *self._clients], [], [], 0)
        for sock in readable:
            if sock is server:
                with contextlib.suppress(BlockingIOError):
                    client, addr = server.accept()
                    client.setblocking(True)
                    client.settimeout(5.0)
                    self._clients[client] = time.monotonic()
                    log.info("%s/%s: client %s connected", self.gateway, self.port, addr)
                continue
            try:
                data = sock.recv(4096, socket.MSG_DONTWAIT)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:
                self._drop(sock)
        now = time.monotonic()
        ready = [c for c, since in self._clients.items() if now - since >= SETTLE_S]
        if not ready:
            with self._cond:
                self._cond.wait(_TICK_S)
            return
        head = self._head(_TICK_S)
        if head is None:
            return
        sent = False
        for client in ready:
            try:
                client.sendall(head[1])
                sent = True
            except OSError:
                self._drop(client)
        if sent:
            self._advance(len(head[1]))

    def _drop(self, client: socket.socket) -> None:
        self._clients.pop(client, None)
        with contextlib.suppress(OSError):
            client.close()
        log.info("%s/%s: client disconnected", self.gateway, self.port)

    def reader_caught_up(self) -> bool:
        # Closing delivers sent bytes in order, but pyserial's socket read() drops what it
        # has read so far when it meets the end of the stream in the same call: give the
        # reader time to take the last frames before the connection ends.
        return self.pending() == 0 and time.monotonic() - self.last_write >= SETTLE_S

    def _disconnect(self) -> None:
        # Clients see the connection end and new ones are refused, like a ser2net box
        # losing its serial device.
        for client in list(self._clients):
            self._drop(client)
        if self._server is not None:
            self._server.close()
            self._server = None

    def _close(self) -> None:
        for client in list(self._clients):
            with contextlib.suppress(OSError):
                client.shutdown(socket.SHUT_WR)
            self._drop(client)
        if self._server is not None:
            self._server.close()
            self._server = None

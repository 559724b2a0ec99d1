"""A loopback TCP proxy between a device and the broker that the test controls: it can freeze
every open connection like a NAT box that lost its state, or pass only a budget of the broker's
bytes to the device so that acknowledgements stop at a known point."""

from __future__ import annotations

import contextlib
import select
import socket
import threading


class FreezingProxy:
    """A loopback TCP proxy to the broker that can "freeze": every connection open at that
    moment stops passing bytes in both directions while its sockets stay open (no FIN, no RST),
    exactly like a NAT box that lost its state. While frozen, new connections are cut at once;
    after :meth:`heal` new connections pass again (the frozen ones never do).

    With ``answer_budget`` the proxy passes at most that many bytes from the broker to the
    device in all, then holds the rest unread: the device keeps publishing but hears no more
    acknowledgements, so a test can stop a drain part-way without racing it."""

    def __init__(self, *, target: tuple[str, int], answer_budget: int | None = None) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.frozen_pairs: list[tuple[socket.socket, socket.socket]] = []
        self._pairs: list[tuple[socket.socket, socket.socket, threading.Event]] = []
        self._frozen = threading.Event()
        self._closing = threading.Event()
        self._lock = threading.Lock()
        self._answer_left = answer_budget
        self.accepted = 0

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        threading.Thread(target=self._accept, name="proxy-accept", daemon=True).start()

    def _accept(self) -> None:
        self.listener.settimeout(0.1)
        while not self._closing.is_set():
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted += 1
            if self._frozen.is_set():
                client.close()  # the link is down: nothing gets through
                continue
            upstream = socket.create_connection(self.target)
            stop = threading.Event()
            with self._lock:
                self._pairs.append((client, upstream, stop))
            for src, dst, budgeted in ((client, upstream, False), (upstream, client, True)):
                threading.Thread(
                    target=self._pump,
                    args=(src, dst, stop, budgeted),
                    name="proxy-pump",
                    daemon=True,
                ).start()

    def _allowance(self, budgeted: bool) -> int:
        """How many bytes this direction may pass now (65 536 when unlimited)."""
        if not budgeted or self._answer_left is None:
            return 65536
        with self._lock:
            return min(65536, self._answer_left)

    def _spend(self, budgeted: bool, n: int) -> None:
        if budgeted and self._answer_left is not None:
            with self._lock:
                self._answer_left -= n

    def _pump(
        self, src: socket.socket, dst: socket.socket, stop: threading.Event, budgeted: bool
    ) -> None:
        while not stop.is_set() and not self._closing.is_set():
            allowance = self._allowance(budgeted)
            if allowance == 0:
                stop.wait(0.05)  # out of budget: leave the bytes unread; the sockets stay open
                continue
            ready, _, _ = select.select([src], [], [], 0.05)
            if not ready or stop.is_set():
                continue  # frozen: leave the bytes unread; the sockets stay open
            try:
                data = src.recv(allowance)
                if not data:
                    break
                self._spend(budgeted, len(data))
                dst.sendall(data)
            except OSError:
                break
        if not stop.is_set():  # a real close on one side: pass it on
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def freeze(self) -> None:
        """Stop every open connection passing bytes, and refuse new ones until :meth:`heal`."""
        self._frozen.set()
        with self._lock:
            for client, upstream, stop in self._pairs:
                stop.set()
                self.frozen_pairs.append((client, upstream))
            self._pairs.clear()

    def heal(self) -> None:
        """Let new connections through again."""
        self._frozen.clear()

    def close(self) -> None:
        self._closing.set()
        self.listener.close()
        with self._lock:
            socks = [s for c, u, _ in self._pairs for s in (c, u)]
        for sock in socks + [s for pair in self.frozen_pairs for s in pair]:
            with contextlib.suppress(OSError):
                sock.close()

"""A loopback TCP proxy between a client and a server (a device and the broker, an ingester and
InfluxDB) that the test controls: it can freeze every open connection like a NAT box that lost
its state, or pass only a budget of bytes in one direction so that a drain stops at a known
point whatever the machine's speed, and go on when the test lifts the budget."""

from __future__ import annotations

import contextlib
import select
import socket
import threading

#: Bytes one pump moves per read when nothing limits it.
_CHUNK = 65536


class FreezingProxy:
    """A loopback TCP proxy to ``target`` that can "freeze": every connection open at that
    moment stops passing bytes in both directions while its sockets stay open (no FIN, no RST),
    exactly like a NAT box that lost its state. While frozen, new connections are cut at once;
    after :meth:`heal` new connections pass again (the frozen ones never do).

    Budgets stop a drain part-way without racing it. With ``answer_budget`` the proxy passes
    at most that many bytes from the server to the client in all (over every connection), then
    holds the rest unread: a device keeps publishing but hears no more acknowledgements. With
    ``request_budget`` it passes at most that many bytes from the client to the server: an
    ingester's writes to InfluxDB stall after a known amount of line protocol (the request
    waits, its connection stays open). :attr:`holding` is set once a client has bytes the
    request budget keeps back; :meth:`lift` removes both budgets and the held bytes flow."""

    def __init__(
        self,
        *,
        target: tuple[str, int],
        answer_budget: int | None = None,
        request_budget: int | None = None,
    ) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.frozen_pairs: list[tuple[socket.socket, socket.socket]] = []
        self._pairs: list[tuple[socket.socket, socket.socket, threading.Event]] = []
        self._frozen = threading.Event()
        self._closing = threading.Event()
        self._lock = threading.Lock()
        #: bytes each direction may still pass (None: unlimited); False: requests, True: answers
        self._left: dict[bool, int | None] = {False: request_budget, True: answer_budget}
        #: set once a client has bytes waiting that the request budget keeps back
        self.holding = threading.Event()
        #: bytes passed so far, requests then answers (for failure messages)
        self.passed = [0, 0]
        self.accepted = 0

    @property
    def url(self) -> str:
        """The proxy as an MQTT broker URL."""
        return f"mqtt://127.0.0.1:{self.port}"

    @property
    def http_url(self) -> str:
        """The proxy as an HTTP base URL (in front of InfluxDB)."""
        return f"http://127.0.0.1:{self.port}"

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
            for src, dst, answers in ((client, upstream, False), (upstream, client, True)):
                threading.Thread(
                    target=self._pump,
                    args=(src, dst, stop, answers),
                    name="proxy-pump",
                    daemon=True,
                ).start()

    def _allowance(self, answers: bool) -> int:
        """How many bytes this direction may pass now (:data:`_CHUNK` when unlimited)."""
        with self._lock:
            left = self._left[answers]
        return _CHUNK if left is None else max(0, min(_CHUNK, left))

    def _spend(self, answers: bool, n: int) -> None:
        with self._lock:
            left = self._left[answers]
            if left is not None:
                self._left[answers] = left - n
            self.passed[answers] += n

    def _pump(
        self, src: socket.socket, dst: socket.socket, stop: threading.Event, answers: bool
    ) -> None:
        while not stop.is_set() and not self._closing.is_set():
            allowance = self._allowance(answers)
            try:
                if allowance == 0:
                    # Out of budget: leave the bytes unread (the sockets stay open) until lift().
                    if not answers and select.select([src], [], [], 0)[0]:
                        self.holding.set()
                    stop.wait(0.05)
                    continue
                ready, _, _ = select.select([src], [], [], 0.05)
                if not ready or stop.is_set():
                    continue  # frozen: leave the bytes unread; the sockets stay open
                # hold() may have come while select waited: the budget read before is stale.
                allowance = self._allowance(answers)
                if allowance == 0:
                    continue
                data = src.recv(allowance)
                if not data:
                    break
                self._spend(answers, len(data))
                dst.sendall(data)
            except (OSError, ValueError):  # ValueError: select() on a socket cut() closed
                break
        if not stop.is_set():  # a real close on one side: pass it on
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def hold(self) -> None:
        """From now on pass no request bytes until :meth:`lift` (a write in progress stalls
        where it is; :attr:`holding` is set again once a client has bytes waiting)."""
        with self._lock:
            self._left[False] = 0
        self.holding.clear()

    def hold_answers(self) -> None:
        """From now on pass no answer bytes (server to client) until :meth:`lift`."""
        with self._lock:
            self._left[True] = 0

    def answers_waiting(self) -> int:
        """Bytes the servers sent that are not passed on yet (read without taking them)."""
        with self._lock:
            upstreams = [u for _, u, _ in self._pairs]
        n = 0
        for sock in upstreams:
            with contextlib.suppress(OSError):  # BlockingIOError: nothing waiting
                n += len(sock.recv(1 << 20, socket.MSG_PEEK | socket.MSG_DONTWAIT))
        return n

    def lift(self) -> None:
        """Remove both budgets: what they held back flows, and everything after it."""
        with self._lock:
            self._left = {False: None, True: None}

    def freeze(self) -> None:
        """Stop every open connection passing bytes, and refuse new ones until :meth:`heal`."""
        self._frozen.set()
        with self._lock:
            for client, upstream, stop in self._pairs:
                stop.set()
                self.frozen_pairs.append((client, upstream))
            self._pairs.clear()

    def cut(self) -> None:
        """Close every open connection at once (the client sees the server go away, in the
        middle of a request if one is held) and refuse new ones until :meth:`heal`."""
        self._frozen.set()
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for client, upstream, stop in pairs:
            stop.set()
            for sock in (client, upstream):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()

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

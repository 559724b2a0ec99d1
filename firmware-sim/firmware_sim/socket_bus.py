"""A serial line as a TCP server: the gateway opens ``socket://HOST:PORT`` (see
``firmware_sim.transport`` for what every bus does)."""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import select
import socket
import time

from firmware_sim.transport import SETTLE_S, TICK_S, Bus, OnWritten

log = logging.getLogger(__name__)


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
                self._cond.wait(TICK_S)
            return
        head = self._head(TICK_S)
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

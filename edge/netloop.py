"""The MQTT client's network thread, driven through paho's public external-loop API.

paho's ``loop_start()`` thread waits up to 1 s in ``select``; keepalive pings go out only when
it wakes, so a ping could leave late enough to eat most of the agent's 1.5x keepalive silence
window. This thread waits at most a tenth of the keepalive (:data:`NETWORK_TICK_KEEPALIVES`)
and runs the same steps paho's loop
does, through the calls paho documents for running a client in your own loop:
``socket()``, ``want_write()``, ``loop_read()``, ``loop_write()`` and ``loop_misc()`` (pings
and keepalive), with ``on_socket_register_write`` waking it when another thread queues a
packet. Because it reads the socket itself it also knows, with no hook into paho's internals,
when the broker last sent anything: that is the :class:`edge.mqtt.LinkWatch` record the
half-open-link watchdog reads (docs/adr/0007-edge-half-open-link.md).
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import threading
from typing import Any

import paho.mqtt.client as mqtt

from edge.mqtt import LinkWatch

log = logging.getLogger(__name__)

#: The longest the thread sleeps, in keepalives: a ping leaves at most this late (0.1 x
#: keepalive, against the half-open watchdog's 0.5 x keepalive of slack). Everything else
#: wakes it at once: bytes from the broker, a queued packet, :meth:`NetworkLoop.stop`. A fixed
#: 0.1 s tick was 10 wake-ups a second on a link that publishes anyway (ADR 0033).
NETWORK_TICK_KEEPALIVES = 0.1


class NetworkLoop:
    """Runs one client's socket I/O in a thread of its own until the connection ends or
    :meth:`stop` is called. Build it (no I/O), ``client.connect(...)``, then :meth:`start`."""

    def __init__(self, *, client: mqtt.Client, watch: LinkWatch, keepalive_s: float) -> None:
        self._client = client
        self._tick_s = NETWORK_TICK_KEEPALIVES * keepalive_s
        self._watch = watch
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        # Set before connect(): paho then queues CONNECT instead of writing it from the
        # caller's thread, and every later publish() wakes this thread to write it.
        client.on_socket_register_write = self._wake

    def _wake(self, _client: mqtt.Client, _userdata: Any, _sock: Any) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            self._wake_w.send(b"x")

    def start(self) -> None:
        """Start the network thread."""
        self._thread = threading.Thread(target=self._run, name="mqtt-network", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread and wait for it (the caller disconnects or aborts the client)."""
        self._stop.set()
        self._wake(self._client, None, None)
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        for sock in (self._wake_r, self._wake_w):
            sock.close()

    def _run(self) -> None:
        client = self._client
        ok = mqtt.MQTT_ERR_SUCCESS
        while not self._stop.is_set():
            sock = client.socket()
            if sock is None:
                return  # disconnected: paho closed the socket and called on_disconnect
            writers = [sock] if client.want_write() else []
            # Bytes already decrypted inside an SSL object do not make the socket readable.
            pending = getattr(sock, "pending", None)
            if pending is not None and pending():
                readable = [sock]
            else:
                try:
                    readable, writable, _ = select.select(
                        [sock, self._wake_r], writers, [], self._tick_s
                    )
                except (OSError, ValueError):
                    return  # the socket was closed under us (abort_connection)
                writers = writable
                if self._wake_r in readable:
                    with contextlib.suppress(BlockingIOError, OSError):
                        self._wake_r.recv(4096)
            if sock in readable:
                self._watch.heard()
                if client.loop_read() != ok:
                    return
            if (writers or client.want_write()) and client.loop_write() != ok:
                return
            if client.loop_misc() != ok:
                return

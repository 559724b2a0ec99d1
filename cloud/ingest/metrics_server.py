"""The ingester's ``/metrics`` endpoint: served on one thread, uncompressed.

``prometheus_client.start_http_server`` starts a thread for every request and gzips the text
for a client that accepts gzip. Per scrape that cost the ingester about 1.1 ms of CPU, of
which about 0.35 ms was the new thread and 0.15 ms gzip, for some 10 KB of text. A drain
bench polls every 50 ms, so it was charged 2-3 % of the ingester's CPU
(docs/adr/0035-drain-path-outside-the-decoder.md). This server is the same WSGI app,
``prometheus_client.make_wsgi_app``, with compression off, and it answers requests one after
another on a single thread: about 0.6 ms per scrape. Prometheus scrapes a target one request
at a time, and a few KB need no compression on the networks a scrape crosses. A client
that connects and then sends nothing holds the thread for at most ``REQUEST_TIMEOUT_S``.
"""

from __future__ import annotations

import socket
import threading
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app

#: How long a connected client may take to send its request before it is dropped: one
#: stalled client must not stop the scrapes after it for longer than that.
REQUEST_TIMEOUT_S = 5.0
#: The serving thread's name (it shows in py-spy dumps and profiles).
THREAD_NAME = "metrics-http"


class _QuietHandler(WSGIRequestHandler):
    """wsgiref's handler without a stderr line per request, with a read timeout."""

    timeout = REQUEST_TIMEOUT_S

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (wsgiref's name)
        """Log nothing: a scrape every few seconds is not news."""


def start_metrics_server(
    *, port: int, host: str, registry: CollectorRegistry
) -> tuple[WSGIServer, threading.Thread]:
    """Serve ``registry`` at ``http://host:port/metrics`` from a daemon thread, uncompressed;
    the server (``shutdown()`` stops it) and its thread. ``host`` may be IPv4 or IPv6."""
    # As start_http_server does: the address family the host name resolves to first.
    family, _, _, _, sockaddr = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    server_class: type[WSGIServer] = type(
        "MetricsServer", (WSGIServer,), {"address_family": family}
    )
    server: WSGIServer = make_server(
        str(sockaddr[0]),
        port,
        make_wsgi_app(registry, disable_compression=True),
        server_class,
        handler_class=_QuietHandler,
    )
    thread = threading.Thread(target=server.serve_forever, name=THREAD_NAME, daemon=True)
    thread.start()
    return server, thread

"""The API served by a real uvicorn on a free loopback port (in a thread), and a Server-Sent
Events reader that hands parsed events to the test as they arrive. Shared by the live-stream
and board tests."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import uvicorn
from fastapi import FastAPI
from pydantic import SecretStr

from cloud.api import ApiSettings
from cloud.api.live import LiveHub
from pantau.services import InfluxDB, Mosquitto, free_port
from tests.ingest_support import wait_for


@contextmanager
def serving(app: FastAPI) -> Iterator[str]:
    """``app`` on uvicorn at a free port until the block ends; yields its base URL once the
    app's live hub holds its MQTT subscription."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="api", daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started, "uvicorn started", timeout=20)
        hub: LiveHub = app.state.hub
        wait_for(hub.subscribed.is_set, "the live hub subscribed", timeout=20)
        yield f"http://127.0.0.1:{port}"
    finally:
        # What `pantau api run` does on SIGTERM: end the streams, then stop.
        app.state.hub.end_streams()
        server.should_exit = True
        thread.join(20)
        assert not thread.is_alive()


@dataclass(frozen=True, slots=True)
class Event:
    """One parsed SSE event."""

    id: str | None
    event: str
    data: dict[str, Any]


class SseReader(threading.Thread):
    """Reads ``url`` as ``text/event-stream`` in a daemon thread; ``next`` waits for the
    following event. ``opened`` is set once the server has placed the client (its first line)."""

    def __init__(self, url: str, *, last_event_id: str | None = None) -> None:
        super().__init__(name="sse-reader", daemon=True)
        self.url = url
        self.headers = {"Accept": "text/event-stream"}
        if last_event_id is not None:
            self.headers["Last-Event-ID"] = last_event_id
        self.events: queue.Queue[Event] = queue.Queue()
        self.opened = threading.Event()
        self.retry: int | None = None
        self.content_type = ""
        self._stopping = threading.Event()

    def run(self) -> None:
        with (
            httpx.Client(timeout=httpx.Timeout(10, read=None)) as client,
            client.stream("GET", self.url, headers=self.headers) as response,
        ):
            self.content_type = response.headers.get("content-type", "")
            fields: dict[str, str] = {}
            for line in response.iter_lines():
                if self._stopping.is_set():
                    return
                if line == "":
                    if "data" in fields:
                        self.events.put(
                            Event(
                                fields.get("id"),
                                fields.get("event", "message"),
                                orjson.loads(fields["data"]),
                            )
                        )
                    fields = {}
                elif line.startswith("retry: "):
                    # The server sends it after placing this client's cursor: from here on,
                    # no event can pass the client by.
                    self.retry = int(line.removeprefix("retry: "))
                    self.opened.set()
                elif not line.startswith(":"):
                    name, _, value = line.partition(": ")
                    fields[name] = value

    def next(self, timeout: float = 20.0) -> Event:
        """The next event; fails the test if none arrives within ``timeout`` seconds."""
        try:
            return self.events.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no event from {self.url} within {timeout}s") from None

    def stop(self) -> None:
        """Stop after the next line (the server's next event or keep-alive)."""
        self._stopping.set()


@contextmanager
def reading_events(url: str, *, last_event_id: str | None = None) -> Iterator[SseReader]:
    """An :class:`SseReader` on ``url``, connected before the block runs."""
    reader = SseReader(url, last_event_id=last_event_id)
    reader.start()
    assert reader.opened.wait(20), f"{url} did not answer"
    try:
        yield reader
    finally:
        reader.stop()


def api_settings(mosquitto: Mosquitto, influxdb: InfluxDB) -> ApiSettings:
    """API settings for the real broker (the ``pantau-api`` account) and InfluxDB."""
    return ApiSettings(
        influx_url=influxdb.url,
        mqtt_url=mosquitto.url,
        mqtt_username="pantau-api",
        mqtt_password=SecretStr(mosquitto.users["pantau-api"]),
    )

"""A pre-filled backlog and ingester members as real processes: shared by the drain bench
(``bench.ingest_drain``) and the scale-out tests (tests/integration/test_ingest_drain.py).

A backlog is what an outage leaves: every member's persistent session exists (the members
subscribed once, then stopped), and the gateways published while no member was running, so
the broker holds the messages queued in those sessions. :func:`fill_backlog` publishes
pre-encoded payloads (``bench.ingest_load`` templates) at QoS 1 and returns once the broker
acknowledged every one, so the backlog is complete before a member starts.
"""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from bench.exposition import parse_exposition
from bench.ingest_load import GatewayLoad, templates_for, topic_for
from bench.load_publisher import Publisher
from cloud.ingest.settings import IngestSettings
from contract import topics
from contract.topics import Channel
from pantau.services import Mosquitto

#: Members' MQTT client ids are this plus their index.
MEMBER_PREFIX = "drain-member-"
#: The trivial consumer gets as many unacknowledged messages as an ingester.
RECEIVE_MAXIMUM = IngestSettings.model_fields["mqtt_receive_maximum"].default


def fill_backlog(
    host: str, port: int, loads: list[GatewayLoad], *, channel: str, messages: int, batch: int
) -> int:
    """Publish ``messages`` messages (``channel``: ``reading``, ``json`` or ``binary``; batches
    of ``batch`` readings) round-robin over ``loads``; return the readings sent once the broker
    acknowledged every message. Observation times are the send time, seqs grow per gateway."""
    pubs = [Publisher(host=host, port=port, load=ld, window=1000) for ld in loads]
    tmpls = [templates_for(channel, ld, batch) for ld in loads]
    topics_b = [topic_for(channel, ld).encode() for ld in loads]
    for p in pubs:
        p.connect()
    readings = 0
    try:
        for n in range(messages):
            i = n % len(pubs)
            p = pubs[i]
            while p.sent - p.acked >= p.window:
                p.drain_acks(0.05)
            k = n // len(pubs)
            t = tmpls[i][k % len(tmpls[i])]
            p.send(p.packet(topics_b[i], t.fill(time.time_ns() // 1_000_000, k)))
            readings += t.readings
        deadline = time.monotonic() + 60
        while any(p.acked < p.sent for p in pubs):
            if time.monotonic() > deadline:
                raise TimeoutError("the broker did not acknowledge the whole backlog in 60 s")
            for p in pubs:
                p.drain_acks(0.01)
    finally:
        for p in pubs:
            p.close()
    return readings


@functools.cache
def _http() -> httpx.Client:
    """One client for every scrape: ``httpx.get`` builds a client, and its TLS context, per
    call, about 30 ms of CPU; polled every 50 ms during a drain that was a third of a core
    taken from the processes measured (docs/performance.md). Reused, a scrape costs ~1.6 ms."""
    return httpx.Client(timeout=2)


def scrape(port: int, names: Sequence[str] = ()) -> dict[str, float]:
    """A member's /metrics (``name{labels}`` -> value), only the samples ``names`` when given;
    empty while it does not answer.

    A whole scrape formats every metric of the ingester, 1-4 ms of its CPU in a raw drain
    (0.36 us per reading at 50 ms polls, measured with ``bench.thread_cpu``); ``name[]``, which
    prometheus_client's exposition honours, formats only the counter a drain watches."""
    params = {"name[]": list(names)}
    try:
        text = _http().get(f"http://127.0.0.1:{port}/metrics", params=params).text
    except httpx.HTTPError:
        return {}
    return parse_exposition(text)


@dataclass(kw_only=True)
class Member:
    """One ``python -m cloud.ingest run`` process of a shared group, with its own client id,
    metrics port and log file; ``env`` holds its ``PANTAU_*`` settings."""

    index: int
    env: dict[str, str]
    metrics_port: int
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def client_id(self) -> str:
        return self.env["PANTAU_MQTT_CLIENT_ID"]

    def start(self) -> None:
        """Start the process (its log is appended to, so restarts keep one history)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PANTAU_")} | self.env
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "cloud.ingest", "run"],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )

    def metrics(self, *names: str) -> dict[str, float]:
        """Its /metrics now, only ``names`` if given (empty if it does not answer)."""
        return scrape(self.metrics_port, names)

    def subscribed(self) -> bool:
        """It answers /metrics and its subscriptions are granted."""
        return self.metrics().get("pantau_ingest_subscribed") == 1.0

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, signum: int) -> None:
        """Send ``signum`` to the process."""
        if self.proc is not None:
            self.proc.send_signal(signum)

    def wait(self, timeout: float) -> int | None:
        """Its exit code, or None if it is still running after ``timeout`` s."""
        if self.proc is None:
            return 0
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> None:
        """SIGKILL and reap (a no-op once it has exited)."""
        if self.alive():
            self.signal(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")


def member(
    index: int,
    *,
    mqtt_url: str,
    password: str,
    influx_url: str,
    db: str,
    city_file: Path,
    workdir: Path,
    metrics_port: int,
    group: str | None = "pantau-ingest",
    **settings: str,
) -> Member:
    """A member of ``group`` (None: a lone ingester) writing to ``db``; ``settings`` are more
    ``PANTAU_*`` variables, by field name (``store_raw="false"``)."""
    env = {
        "PANTAU_MODE": "development",
        "PANTAU_MQTT_URL": mqtt_url,
        # The broker binds every account to one client id: each member logs in as its own
        # account (see open_accounts).
        "PANTAU_MQTT_USERNAME": f"{MEMBER_PREFIX}{index}",
        "PANTAU_MQTT_PASSWORD": password,
        "PANTAU_MQTT_CLIENT_ID": f"{MEMBER_PREFIX}{index}",
        "PANTAU_INFLUX_URL": influx_url,
        "PANTAU_INFLUX_DB": db,
        "PANTAU_CITY_FILE": str(city_file),
        "PANTAU_DEAD_LETTER_DIR": str(workdir / f"dead-{index}"),
        "PANTAU_METRICS_PORT": str(metrics_port),
    }
    if group is not None:
        env["PANTAU_MQTT_SHARED_GROUP"] = group
    env |= {f"PANTAU_{k.upper()}": v for k, v in settings.items()}
    return Member(
        index=index, env=env, metrics_port=metrics_port, log_path=workdir / f"member-{index}.log"
    )


def stop_members(members: Iterable[Member], timeout: float = 30.0) -> None:
    """SIGTERM every member at once (they stop in parallel), then wait for each; one still
    running after ``timeout`` s is killed."""
    members = list(members)
    for m in members:
        m.signal(signal.SIGTERM)
    for m in members:
        if m.wait(timeout) is None:
            m.kill()


def stored(members: list[Member], *, raw: bool = True) -> int:
    """Readings the members stored (raw) or folded into acknowledged state (aggregates-only),
    from their counters; a member that does not answer counts 0."""
    name = "pantau_ingest_readings_stored_total" if raw else "pantau_ingest_lag_seconds_count"
    return int(sum(m.metrics(name).get(name, 0.0) for m in members))


def open_accounts(
    broker: Mosquitto, doc: dict[str, Any], password: dict[str, str], consumers: Iterable[str]
) -> None:
    """Broker accounts for a drain: every synthetic gateway publishes with the replay role
    (any device's data topics: the backlog's channel varies by case, while a device account
    holds only its own kind's channels), and every consumer client id gets an ingester account
    of its own with the ``pantau-ingest`` password."""
    for gw in doc["gateways"]:
        broker.add_user(gw["id"], password[gw["id"]], role="pantau-replay")
    for consumer in consumers:
        broker.add_user(consumer, password["pantau-ingest"], role="pantau-ingest")


def _client(client_id: str, password: str) -> mqtt.Client:
    c = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=MQTTProtocolVersion.MQTTv5,
        manual_ack=True,
    )
    c.username_pw_set(client_id, password)  # each consumer has its own account (bound id)
    return c


def forget(host: str, port: int, client_id: str, password: str) -> None:
    """End a consumer's persistent session, so later backlogs are not queued for it too."""
    c = _client(client_id, password)
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = 0
    c.connect(host, port, clean_start=True, properties=props)
    c.loop_start()
    c.disconnect()
    c.loop_stop()


class CountingConsumer:
    """The trivial consumer: one paho client (MQTT v5, persistent session, QoS 1, manual acks,
    the ingester's Receive Maximum) whose callback counts and acknowledges each message and does
    nothing else, the ceiling that the broker and paho's per-message cost put on any Python
    consumer here. Use :meth:`subscribe` once (the session exists), then the backlog is
    published, then :meth:`start` drains it."""

    def __init__(
        self, *, host: str, port: int, client_id: str, password: str, channel: Channel
    ) -> None:
        self.host, self.port = host, port
        self.client_id, self.password, self.channel = client_id, password, channel
        self.count = 0
        #: monotonic time the broker accepted the reconnect (the backlog flows from then)
        self.connected_at: float | None = None
        self._client: mqtt.Client | None = None

    def _on_connect(self, c: mqtt.Client, u: Any, f: Any, rc: Any, p: Any) -> None:
        self.connected_at = time.monotonic()

    def _on_message(self, c: mqtt.Client, u: Any, msg: mqtt.MQTTMessage) -> None:
        self.count += 1
        c.ack(msg.mid, msg.qos)

    def _connect(self) -> mqtt.Client:
        c = _client(self.client_id, self.password)
        c.on_message = self._on_message
        c.on_connect = self._on_connect
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = 3600
        props.ReceiveMaximum = RECEIVE_MAXIMUM
        c.connect(self.host, self.port, clean_start=False, properties=props)
        c.loop_start()
        return c

    def subscribe(self) -> None:
        """Create the persistent session with the subscription, then disconnect."""
        c = self._connect()
        subscribed = threading.Event()
        c.on_subscribe = lambda *_: subscribed.set()
        c.subscribe(topics.subscription(self.channel), qos=1)
        try:
            if not subscribed.wait(10):
                raise TimeoutError("counting consumer not subscribed in 10 s")
        finally:
            c.disconnect()
            c.loop_stop()

    def start(self) -> None:
        """Reconnect to the session: the broker delivers the backlog."""
        self._client = self._connect()

    def stop(self) -> None:
        """Disconnect and end the session."""
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()
            self._client = None
        forget(self.host, self.port, self.client_id, self.password)


def until(cond: Callable[[], bool], timeout: float, what: str) -> None:
    """Wait for ``cond()`` (polled every 0.1 s); TimeoutError naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {what} in {timeout:.0f} s")
        time.sleep(0.1)


#: s between two polls of ``watch`` near the start and the end of a drain, and in between
FINE_POLL_S, COARSE_POLL_S = 0.05, 0.25


def watch(
    count: Callable[[], int], target: int, stall_s: float
) -> tuple[int, float | None, float | None]:
    """Poll ``count()`` until it reaches ``target`` or stops moving for ``stall_s``; returns
    (last count, time of the first and of the last change), each to within 50 ms while the
    rate holds (250 ms at worst).

    Every 50 ms until the count first moves and once the rate so far says the end is less than
    a second away, every 250 ms in between: a member's count is a /metrics scrape, about 1 ms
    of the member's CPU, and 20 a second were 2 % of a core charged to the ingester (0.2-0.5 us
    per raw reading in mode (d); docs/adr/0037-influxdb-inside-the-drain.md)."""
    got, first, last = 0, None, None
    moved = time.monotonic()
    while got < target:
        now = time.monotonic()
        c = count()
        if c != got:
            got, moved, last = c, now, now
            first = first or now
        elif now - moved > stall_s:
            break
        time.sleep(_next_poll(got, target, first, now))
    return got, first, last


def _next_poll(got: int, target: int, first: float | None, now: float) -> float:
    if first is None or got <= 0 or now <= first:
        return FINE_POLL_S
    left_s = (target - got) * (now - first) / got
    return FINE_POLL_S if left_s < 4 * COARSE_POLL_S else COARSE_POLL_S

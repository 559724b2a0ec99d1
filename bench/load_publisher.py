"""Load generator for the ingester benchmarks: a minimal MQTT 3.1.1 QoS 1 publisher and the
process that publishes ``bench.ingest_load`` payloads through it under a coordinator's budget.

MQTT 3.1.1 CONNECT / PUBLISH QoS 1 / PUBACK spoken directly on a socket, with a bounded window
of unacknowledged packets per connection: paho's per-message bookkeeping would cost the shared
2 cores more than the ingester's own per-message work. It is a load generator only; every
Pantau component uses paho.
"""

from __future__ import annotations

import contextlib
import itertools
import select
import socket
import time
from dataclasses import dataclass, field
from multiprocessing.sharedctypes import Synchronized
from typing import Any

from bench.ingest_load import GatewayLoad, templates_for, topic_for


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _mqtt_str(s: bytes) -> bytes:
    return len(s).to_bytes(2, "big") + s


class MqttError(Exception):
    """The broker refused or dropped the load generator."""


@dataclass(kw_only=True)
class Publisher:
    """One QoS 1 connection as one gateway; counts PUBACKs (each is exactly 4 bytes in 3.1.1,
    and nothing else arrives on a connection without subscriptions)."""

    host: str
    port: int
    load: GatewayLoad
    window: int = 2000
    sock: socket.socket | None = None
    sent: int = 0
    ack_bytes: int = 0
    _prefix: dict[int, bytes] = field(default_factory=dict)

    def connect(self) -> None:
        """CONNECT with the gateway's credentials; raise unless CONNACK accepts."""
        user, pw = self.load.gateway.encode(), self.load.password.encode()
        var = _mqtt_str(b"MQTT") + bytes([4, 0xC2]) + (600).to_bytes(2, "big")
        body = var + _mqtt_str(self.load.gateway.encode()) + _mqtt_str(user)
        body += _mqtt_str(pw)
        sock = socket.create_connection((self.host, self.port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(b"\x10" + _varint(len(body)) + body)
        ack = b""
        while len(ack) < 4:
            chunk = sock.recv(4 - len(ack))
            if not chunk:
                raise MqttError(f"{self.load.gateway}: broker closed the connection at CONNECT")
            ack += chunk
        if ack[0] != 0x20 or ack[3] != 0:
            raise MqttError(f"{self.load.gateway}: CONNACK refused (code {ack[3]})")
        sock.setblocking(False)
        self.sock = sock

    @property
    def acked(self) -> int:
        return self.ack_bytes // 4

    def packet(self, topic: bytes, payload: bytes) -> bytes:
        """A PUBLISH QoS 1 packet with the next packet id."""
        self.sent += 1
        size = len(payload)
        prefix = self._prefix.get(size)
        if prefix is None:
            rest = 2 + len(topic) + 2 + size
            prefix = self._prefix[size] = b"\x32" + _varint(rest) + _mqtt_str(topic)
        return prefix + (self.sent % 65535 + 1).to_bytes(2, "big") + payload

    def drain_acks(self, timeout: float = 0.0) -> None:
        """Read whatever PUBACKs have arrived (waiting up to ``timeout`` for the first)."""
        sock = self._sock()
        if timeout > 0:
            select.select([sock], [], [], timeout)
        while True:
            try:
                data = sock.recv(1 << 16)
            except BlockingIOError:
                return
            if not data:
                raise MqttError(f"{self.load.gateway}: broker closed the connection")
            self.ack_bytes += len(data)

    def send(self, data: bytes) -> None:
        """Send packets, reading acks whenever the socket would block."""
        sock = self._sock()
        view = memoryview(data)
        while view:
            try:
                n = sock.send(view)
            except BlockingIOError:
                select.select([sock], [sock], [], 0.05)
                self.drain_acks()
                continue
            view = view[n:]

    def close(self) -> None:
        """DISCONNECT and close."""
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.setblocking(True)
                self.sock.sendall(b"\xe0\x00")
            self.sock.close()
            self.sock = None

    def _sock(self) -> socket.socket:
        if self.sock is None:
            raise MqttError("publisher used before connect()")
        return self.sock


@dataclass(frozen=True, kw_only=True)
class LoadJob:
    """Arguments of :func:`run_load` (picklable, for a spawned process)."""

    host: str
    port: int
    channel: str
    batch: int
    loads: tuple[GatewayLoad, ...]
    #: a send round stops at this many messages or readings (so ts stays close to send time)
    round_messages: int = 512
    round_readings: int = 20_000


def run_load(
    job: LoadJob,
    allowed: Synchronized[int],
    published: Synchronized[int],
    acked: Synchronized[int],
    stop: Any,
) -> None:
    """Publish until ``stop`` is set, keeping this process's published readings at or below
    ``allowed`` (set by the coordinator). ``published``/``acked`` count readings."""
    pubs = [Publisher(host=job.host, port=job.port, load=ld) for ld in job.loads]
    tmpls = [templates_for(job.channel, ld, job.batch) for ld in job.loads]
    topics_b = [topic_for(job.channel, ld).encode() for ld in job.loads]
    per_msg = [t[0].readings for t in tmpls]
    counters = [0] * len(pubs)
    for p in pubs:
        p.connect()
    order = itertools.cycle(range(len(pubs)))
    sent_readings = 0
    try:
        while not stop.is_set():
            budget = allowed.value - sent_readings
            if budget <= 0:
                for p in pubs:
                    p.drain_acks()
                acked.value = sum(p.acked * per_msg[i] for i, p in enumerate(pubs))
                time.sleep(0.001)
                continue
            out: dict[int, list[bytes]] = {}
            now = time.time_ns() // 1_000_000
            messages = readings = 0
            while budget > 0 and messages < job.round_messages and readings < job.round_readings:
                i = next(order)
                p = pubs[i]
                if p.sent - p.acked >= p.window:
                    p.drain_acks(0.01)
                    if p.sent - p.acked >= p.window:
                        break
                t = tmpls[i][counters[i] % len(tmpls[i])]
                out.setdefault(i, []).append(p.packet(topics_b[i], t.fill(now, counters[i])))
                counters[i] += 1
                budget -= t.readings
                sent_readings += t.readings
                messages += 1
                readings += t.readings
            for i, packets in out.items():
                pubs[i].send(b"".join(packets))
            published.value = sent_readings
            for p in pubs:
                p.drain_acks()
            acked.value = sum(p.acked * per_msg[i] for i, p in enumerate(pubs))
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(p.acked < p.sent for p in pubs):
            for p in pubs:
                p.drain_acks(0.01)
        acked.value = sum(p.acked * per_msg[i] for i, p in enumerate(pubs))
    finally:
        for p in pubs:
            p.close()

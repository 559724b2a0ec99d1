"""The seam to the broker: a factory that builds a configured paho client per connection attempt,
and the agent's own view of the link (:class:`LinkState`, :class:`LinkWatch`).

The agent never reuses a client after a disconnect (a fresh one per attempt keeps no stale
in-flight state), so paho's own reconnect is switched off.

Half-open links: a TCP connection whose peer vanished without FIN/RST (a NAT box rebooted, a
3G modem lost its bearer) accepts writes for minutes. paho notices only when a PINGREQ goes
unanswered for a further keepalive, up to 2x keepalive after the last byte. The agent instead
watches for anything from the broker (:class:`LinkWatch`, fed by the agent's own network
thread, ``edge.netloop``) and drops the link after 1.5x keepalive of silence; that thread wakes
at least every 0.1x keepalive so pings go out on time and a healthy idle link always answers
inside that window.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from contract.mqtttls import configure_tls
from contract.topics import Channel, build
from edge.config import EdgeSettings

#: Builds an unconnected client with credentials, TLS and the last-will already set.
ClientFactory = Callable[[EdgeSettings, bytes], mqtt.Client]

#: No packet from the broker for this many keepalives: the link is dead, even if TCP says not.
SILENCE_KEEPALIVES = 1.5


def paho_client(settings: EdgeSettings, will_payload: bytes) -> mqtt.Client:
    """A paho 2.x MQTT v5 client for this gateway, with ``will_payload`` as the retained
    last-will on the status topic, and TLS for ``mqtts://``. No network I/O happens here (the
    TLS files are read)."""
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=settings.client_id,
        protocol=MQTTProtocolVersion.MQTTv5,
        reconnect_on_failure=False,
    )
    password = settings.mqtt_password.get_secret_value() if settings.mqtt_password else None
    client.username_pw_set(settings.username, password)
    if settings.mqtt_url.tls:
        # Read on every attempt: a renewed CA file is picked up without a restart. A file that
        # cannot be read raises ConfigError, which the uplink reports as a failed attempt.
        configure_tls(client, settings)
    client.will_set(
        build(settings.site_id, settings.gateway_id, Channel.STATUS),
        will_payload,
        qos=1,
        retain=True,
    )
    return client


def connect_properties(settings: EdgeSettings) -> Properties:
    """CONNECT properties: a session expiry so the broker keeps this gateway's session (its
    command subscription and commands queued for it) while the link is down."""
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = settings.session_expiry_s
    return props


def abort_connection(client: mqtt.Client) -> None:
    """Cut ``client``'s TCP connection at once, without a DISCONNECT handshake.

    On a half-open link a graceful disconnect (or paho's ``loop_stop``, which waits for unacked
    QoS 1 messages) could block until TCP gives up; shutting the socket makes paho's network
    thread see end-of-stream immediately and exit. The broker then publishes the last-will."""
    sock = client.socket()
    if isinstance(sock, socket.socket):  # ssl.SSLSocket is one too
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


class LinkWatch:
    """Remembers when bytes last arrived from the broker on one connection.

    The silence clock starts when the watch is built (before the connection attempt). The
    network thread (``edge.netloop``) calls :meth:`heard` whenever the socket turns readable
    with bytes from the broker; paho has no public "packet received" hook, and the agent needs
    none: any byte from the broker proves the link is alive."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.last_inbound = clock()
        self.inbound_reads = 0

    def heard(self) -> None:
        """The broker just sent something."""
        self.last_inbound = self._clock()
        self.inbound_reads += 1

    def silent_for(self, now: float) -> float:
        """Seconds since the broker last sent anything."""
        return now - self.last_inbound


class Link(StrEnum):
    """The uplink as the agent sees it."""

    CONNECTED = "connected"  # CONNACK received, packets flowing
    CONNECTING = "connecting"  # TCP/TLS/CONNECT in progress
    DOWN = "down"  # lost or refused; waiting out the reconnect backoff


@dataclass(slots=True)
class LinkState:
    """The uplink's state, since when, and how often it was lost (for status and metrics).

    ``since_ms`` is when the link last came up or went down (wall clock, ms): connecting and
    down are both "not up", so a gateway retrying for an hour shows when it lost the broker,
    not when its latest attempt began."""

    state: Link = Link.CONNECTING
    since_ms: int = 0
    #: monotonic time of the last up/down change (for tests and durations)
    since_mono: float = 0.0
    #: successful connects after the first
    reconnects: int = 0
    #: times a connected link was lost, and how many of those were half-open (silent) links
    losses: int = 0
    stalls: int = 0
    #: the silence (s) the agent had seen when it last gave a link up as half-open
    stall_silence_s: float = 0.0
    #: why the link is not up: the latest failure, the loss or a later failed attempt ("" when
    #: connected)
    reason: str = ""
    #: why the last connected link was lost; kept through the failed attempts that follow
    #: (each would overwrite ``reason``) and after the link is back, until the next loss
    loss_reason: str = ""
    _ever_up: bool = False

    def connecting(self) -> None:
        """A connection attempt begins."""
        self.state = Link.CONNECTING

    def up(self, now_ms: int, now_mono: float) -> None:
        """CONNACK accepted."""
        if self._ever_up:
            self.reconnects += 1
        self._ever_up = True
        self.state = Link.CONNECTED
        self.since_ms, self.since_mono = now_ms, now_mono
        self.reason = ""

    def down(self, reason: str, now_ms: int, now_mono: float, *, silence_s: float = 0.0) -> None:
        """The link was lost or an attempt failed; ``silence_s`` > 0: a connected link was
        given up as half-open after that many seconds without a byte from the broker."""
        if self.state is Link.CONNECTED:
            self.losses += 1
            if silence_s > 0:
                self.stalls += 1
                self.stall_silence_s = silence_s
            self.since_ms, self.since_mono = now_ms, now_mono
            self.loss_reason = reason
        self.state = Link.DOWN
        self.reason = reason

    def stats(self, now_ms: int) -> dict[str, int | float | str]:
        """The ``link*`` entries of the status stats."""
        return {
            "link": self.state.value,
            "link_since": self.since_ms,
            "link_for_s": round(max(0, now_ms - self.since_ms) / 1000, 3),
            "link_reconnects": self.reconnects,
            "link_losses": self.losses,
            "link_stalls": self.stalls,
            "link_stall_silence_s": round(self.stall_silence_s, 3),
            "link_reason": self.reason,
            "link_loss_reason": self.loss_reason,
        }

"""The seam to the broker: a factory that builds a configured paho client per connection attempt.

The agent never reuses a client after a disconnect (a fresh one per attempt keeps no stale
in-flight state), so paho's own reconnect is switched off.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from contract.topics import Channel, build
from edge.config import EdgeSettings

#: Builds an unconnected client with credentials, TLS and the last-will already set.
ClientFactory = Callable[[EdgeSettings, bytes], mqtt.Client]


def paho_client(settings: EdgeSettings, will_payload: bytes) -> mqtt.Client:
    """A paho 2.x MQTT v5 client for this gateway, with ``will_payload`` as the retained
    last-will on the status topic. No I/O happens here."""
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=settings.client_id,
        protocol=MQTTProtocolVersion.MQTTv5,
        reconnect_on_failure=False,
    )
    password = settings.mqtt_password.get_secret_value() if settings.mqtt_password else None
    client.username_pw_set(settings.username, password)
    if settings.mqtt_tls:
        client.tls_set_context(ssl.create_default_context())
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

"""``pantau ingest replay``: send dead-lettered messages through the normal path again.

After the cause of a refusal is fixed (a sensor added to the registry, a clock corrected), the
operator selects dead letters by reason, gateway and time and re-publishes each selected
*message* once (not once per refused reading), byte for byte, to its original topic at QoS 1,
as the ``pantau-replay`` broker account. The ingester handles it like any other message:
stored if it is good now, refused again otherwise, and a refusal already in the store for the
same payload and reason is not stored twice (cloud/ingest/deadletter.py).
"""

from __future__ import annotations

import logging
import ssl
import threading
from dataclasses import dataclass, field

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.reasoncodes import ReasonCode
from pydantic import SecretStr

from cloud.ingest.deadletter import DeadLetter, DeadLetterStore
from contract import PantauError
from contract.mqtt_reason import reason_words
from contract.mqtttls import MqttTlsSettings, configure_tls, tls_failure_words

log = logging.getLogger(__name__)

_PUBACK_TIMEOUT_S = 30.0


class ReplayError(PantauError):
    """The broker refused the connection or a publication."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Selection:
    """Which dead letters to replay; None matches everything. ``until_ms`` is exclusive."""

    reason: str | None = None
    gateway: str | None = None
    since_ms: int | None = None
    until_ms: int | None = None


def select(store: DeadLetterStore, selection: Selection) -> list[tuple[str, bytes]]:
    """(topic, payload) of every message with at least one matching record, each once,
    oldest first; messages whose payload has been rotated away meanwhile are left out."""
    records: list[DeadLetter] = store.read(
        reason=selection.reason,
        gateway=selection.gateway,
        since_ms=selection.since_ms,
        until_ms=selection.until_ms,
    )
    order = list(dict.fromkeys(r.fingerprint for r in records))
    found = store.payloads(set(order))
    return [found[fp] for fp in order if fp in found]


@dataclass(frozen=True, slots=True, kw_only=True)
class Broker:
    """Where and as whom to publish."""

    host: str
    port: int
    tls: bool
    username: str
    password: SecretStr
    #: CA and client certificate for ``tls`` (the ingester's PANTAU_MQTT_CA_FILE, ...)
    tls_files: MqttTlsSettings = field(default_factory=MqttTlsSettings)


def publish_all(broker: Broker, messages: list[tuple[str, bytes]]) -> int:
    """Publish each (topic, payload) at QoS 1 and wait for every PUBACK; returns how many
    the broker accepted. Raises :class:`ReplayError` if it refuses any."""
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=broker.username,  # the broker binds each account to one client id
        protocol=MQTTProtocolVersion.MQTTv5,
    )
    client.username_pw_set(broker.username, broker.password.get_secret_value())
    refused: dict[int, str] = {}
    # Called before the publication counts as done: an ACL refusal is a PUBACK with a
    # failure reason code (MQTT v5), not a missing PUBACK.
    client.on_publish = lambda c, u, mid, rc, p: (
        refused.__setitem__(mid, reason_words(rc)) if rc.is_failure else None
    )
    connack: list[ReasonCode] = []
    answered = threading.Event()

    def on_connect(c: mqtt.Client, u: object, f: object, rc: ReasonCode, p: object) -> None:
        connack.append(rc)
        answered.set()

    client.on_connect = on_connect
    if broker.tls:
        configure_tls(client, broker.tls_files)
    try:
        client.connect(broker.host, broker.port)
    except OSError as exc:
        why = tls_failure_words(exc) if isinstance(exc, ssl.SSLError) else exc
        raise ReplayError(f"cannot connect to {broker.host}:{broker.port}: {why}") from None
    client.loop_start()
    try:
        if not answered.wait(_PUBACK_TIMEOUT_S):
            raise ReplayError(f"the broker did not answer {broker.username!r}'s connection")
        if connack[0].is_failure:
            raise ReplayError(f"the broker refused {broker.username!r}: {reason_words(connack[0])}")
        sent = 0
        for topic, payload in messages:
            info = client.publish(topic, payload, qos=1)
            try:
                info.wait_for_publish(_PUBACK_TIMEOUT_S)
            except (RuntimeError, ValueError) as exc:
                raise ReplayError(f"{topic}: not published: {exc}") from None
            if not info.is_published():
                raise ReplayError(f"{topic}: no PUBACK within {_PUBACK_TIMEOUT_S:.0f} s")
            if info.mid in refused:
                raise ReplayError(f"{topic}: the broker refused it: {refused[info.mid]}")
            sent += 1
        return sent
    finally:
        client.disconnect()
        client.loop_stop()

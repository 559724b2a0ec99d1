"""A window's PUBACKs go to the broker as one write of back-to-back 4-byte packets."""

from __future__ import annotations

from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from cloud.ingest.pubacks import puback_bytes, send_pubacks


def test_puback_packets_are_the_bytes_paho_would_send_one_by_one() -> None:
    assert puback_bytes([1, 258, 65535]) == bytes.fromhex("40020001400201024002ffff")
    assert puback_bytes([]) == b""


class _Queued(mqtt.Client):
    """A real paho client (never connected) that records what it queues for the socket."""

    def __init__(self) -> None:
        super().__init__(
            callback_api_version=CallbackAPIVersion.VERSION2,
            protocol=MQTTProtocolVersion.MQTTv5,
            manual_ack=True,
        )
        self.queued: list[tuple[int, bytes]] = []

    def _packet_queue(self, command: int, packet: Any, mid: int, qos: int, info: Any = None) -> Any:
        self.queued.append((command, bytes(packet)))
        return mqtt.MQTT_ERR_SUCCESS


def test_a_window_of_qos1_acks_is_queued_as_one_packet_and_qos2_one_by_one() -> None:
    client = _Queued()
    send_pubacks(client, [(7, 1), (8, 1), (9, 2), (10, 1)])
    assert client.queued == [
        (mqtt.PUBACK, bytes.fromhex("40020007400200084002000a")),
        (mqtt.PUBCOMP, bytes.fromhex("70020009")),
    ]


def test_paho_still_has_the_internal_queue_the_batched_acks_use() -> None:
    # If a paho release renames it, acks fall back to one Client.ack each: correct but slower.
    assert callable(getattr(mqtt.Client, "_packet_queue", None))

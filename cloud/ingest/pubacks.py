"""A window's PUBACKs as one write to the broker.

``paho``'s ``Client.ack`` queues one 4-byte packet per message, and each queued packet costs a
wake-up of the network thread (a byte on its socket pair) and a ``send`` of its own: at one
reading per message that was a large share of the per-message CPU (docs/performance.md, issue
14 (a)). MQTT has no batched acknowledgement, but PUBACKs are independent packets, so their
bytes may be concatenated into one write: the broker reads the same packets either way.

paho offers no public call for that, so this uses its internal ``_packet_queue`` (what
``Client.ack`` itself calls, from any thread, under the same rules) with a 0 packet id: paho
only tracks outgoing PUBLISH packets, never PUBACKs. If a paho release drops that method, the
acks fall back to one ``Client.ack`` each (tests/unit/test_ingest_pubacks.py fails first).
See docs/adr/0027-per-message-path-and-changed-rollups.md.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

import paho.mqtt.client as mqtt

#: PUBACK fixed header: packet type 4, remaining length 2 (the packet id; MQTT v5's reason
#: code 0x00 "success" and empty properties may be omitted, as paho does).
_PUBACK = 0x40
_PUBACK_REMAINING = 2


def puback_bytes(mids: Sequence[int]) -> bytes:
    """The PUBACK packets of ``mids``, back to back."""
    return struct.pack(
        f"!{len(mids)}I", *((_PUBACK << 24 | _PUBACK_REMAINING << 16 | m) for m in mids)
    )


def send_pubacks(client: mqtt.Client, acks: Sequence[tuple[int, int]]) -> None:
    """Acknowledge ``(packet id, qos)`` pairs: every QoS 1 message in one write; QoS 2 (never
    subscribed here) through ``Client.ack``."""
    queue = getattr(client, "_packet_queue", None)
    batched = [mid for mid, qos in acks if qos == 1] if queue is not None else []
    if queue is not None and batched:
        queue(mqtt.PUBACK, puback_bytes(batched), 0, 0)
    for mid, qos in acks:
        if queue is None or qos != 1:
            client.ack(mid, qos)

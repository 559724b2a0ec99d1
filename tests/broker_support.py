"""A real MQTT v5 connection with blocking helpers, for the broker policy tests (ACL, CLI,
scale-out members' accounts)."""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.reasoncodes import ReasonCode

from pantau.services import Mosquitto

TIMEOUT = 10.0
_ids = itertools.count()
NO_MATCHING_SUBSCRIBERS = 16  # MQTT v5 reason code 0x10: accepted, but nobody may receive it
NOT_AUTHORIZED = 135  # MQTT v5 reason code 0x87


@dataclass
class Peer:
    """One real MQTT connection with blocking helpers; every wait has a deadline."""

    broker: Mosquitto
    username: str | None
    password: str | None = None
    #: Defaults to the username: every account is bound to one client id, a device's is its id.
    client_id: str | None = None
    protocol: MQTTProtocolVersion = MQTTProtocolVersion.MQTTv5
    messages: list[tuple[str, bytes]] = field(default_factory=list)
    connack: ReasonCode | None = None
    disconnected: bool = False
    _cond: threading.Condition = field(default_factory=threading.Condition)
    _acks: dict[int, int] = field(default_factory=dict)
    _subacks: dict[int, list[int]] = field(default_factory=dict)
    _client: mqtt.Client | None = None

    def __enter__(self) -> Self:
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id or self.username or f"anonymous-{next(_ids)}",
            protocol=self.protocol,
        )
        if self.username is not None:
            client.username_pw_set(self.username, self.password)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_publish = self._on_publish
        client.on_subscribe = self._on_subscribe
        self._client = client
        client.connect(self.broker.host, self.broker.port)
        client.loop_start()
        self._wait(lambda: self.connack is not None or self.disconnected, "CONNACK")
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._client is not None
        self._client.disconnect()
        self._client.loop_stop()

    @property
    def accepted(self) -> bool:
        return self.connack is not None and not self.connack.is_failure and not self.disconnected

    def _wait(self, ready: Any, what: str) -> None:
        deadline = time.monotonic() + TIMEOUT
        with self._cond:
            while not ready():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{self.username}: no {what} within {TIMEOUT}s")
                self._cond.wait(left)

    def _notify(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def _on_connect(self, c: Any, u: Any, flags: Any, rc: ReasonCode, props: Any) -> None:
        self.connack = rc
        self._notify()

    def _on_disconnect(self, c: Any, u: Any, flags: Any, rc: ReasonCode, props: Any) -> None:
        self.disconnected = True
        self._notify()

    def _on_message(self, c: Any, u: Any, msg: mqtt.MQTTMessage) -> None:
        with self._cond:
            self.messages.append((msg.topic, bytes(msg.payload)))
            self._cond.notify_all()

    def _on_publish(self, c: Any, u: Any, mid: int, rc: ReasonCode, props: Any) -> None:
        with self._cond:
            self._acks[mid] = rc.value
            self._cond.notify_all()

    def _on_subscribe(self, c: Any, u: Any, mid: int, rcs: list[ReasonCode], props: Any) -> None:
        with self._cond:
            self._subacks[mid] = [rc.value for rc in rcs]
            self._cond.notify_all()

    def subscribe(self, topic: str) -> list[int]:
        """Subscribe at QoS 1; returns the SUBACK reason codes."""
        assert self._client is not None
        result, mid = self._client.subscribe(topic, qos=1)
        assert result == mqtt.MQTT_ERR_SUCCESS
        assert mid is not None
        self._wait(lambda: mid in self._subacks, f"SUBACK for {topic}")
        return self._subacks[mid]

    def publish(
        self, topic: str, payload: bytes, *, wait: bool = True, retain: bool = False
    ) -> int | None:
        """Publish at QoS 1; returns the PUBACK reason code (0 = accepted)."""
        assert self._client is not None
        info = self._client.publish(topic, payload, qos=1, retain=retain)
        assert info.rc == mqtt.MQTT_ERR_SUCCESS
        if not wait:
            return None
        self._wait(lambda: info.mid in self._acks, f"PUBACK for {topic}")
        return self._acks[info.mid]

    def wait_for(self, topic: str, payload: bytes) -> list[tuple[str, bytes]]:
        """Wait until (topic, payload) arrived; return everything received so far."""
        self._wait(lambda: (topic, payload) in self.messages, f"message on {topic}")
        return list(self.messages)

    def wait_disconnected(self) -> None:
        self._wait(lambda: self.disconnected, "disconnect")

"""Direct devices: a kiosk with its own network that publishes single readings over MQTT
(``contract.SingleReading`` on ``.../reading``), as a device maker would with mosquitto_pub."""

from __future__ import annotations

import logging
import time

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from contract import SerialFrame, SingleReading, encode
from contract.backoff import backoff_delay
from contract.errors import ConfigError
from contract.mqtturl import BrokerUrl
from contract.topics import Channel, build
from firmware_sim.transport import Bus, OnWritten

log = logging.getLogger(__name__)

_BACKOFF_BASE_S = 0.5
_BACKOFF_CAP_S = 15.0


def single_reading_payload(frame: SerialFrame) -> bytes:
    """The JSON a direct device publishes for ``frame``."""
    reading = SingleReading(
        sensor=frame.sensor,
        kind=frame.kind,
        ts=frame.ts_ms,
        seq=frame.seq,
        values=frame.values_dict(),
    )
    return encode(reading)


class MqttBus(Bus):
    """Publishes a direct gateway's readings at QoS 1; a reading counts as written once the
    broker acknowledged it. Reconnects with a fresh client and full-jitter backoff."""

    def __init__(
        self,
        *,
        gateway: str,
        site: str,
        mqtt_url: str,
        password: str,
        on_written: OnWritten,
    ) -> None:
        super().__init__(gateway=gateway, port="mqtt", on_written=on_written)
        try:
            url = BrokerUrl.parse(mqtt_url)
        except ValueError as exc:
            raise ConfigError(f"MQTT URL {exc}") from None
        self._host, self._port, self._tls = url.host, url.port, url.tls
        self._password = password
        self.topic = build(site, gateway, Channel.READING)
        self._client: mqtt.Client | None = None
        self._attempt = 0

    def _open(self) -> str:
        return f"mqtt://{self._host}:{self._port}/{self.topic}"

    def _connect(self) -> mqtt.Client | None:
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            # The broker binds a device's account to its own id as client id.
            client_id=self.gateway,
            protocol=mqtt.MQTTv311,
        )
        client.username_pw_set(self.gateway, self._password)
        if self._tls:
            client.tls_set()
        try:
            client.connect(self._host, self._port, keepalive=30)
        except OSError as exc:
            log.warning("%s: cannot connect to MQTT: %s", self.gateway, exc)
            return None
        client.loop_start()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not client.is_connected():
            time.sleep(0.02)
        if not client.is_connected():
            client.loop_stop()
            client.disconnect()
            log.warning("%s: MQTT connection refused or timed out", self.gateway)
            return None
        return client

    def _pump(self) -> None:
        head = self._head(0.1)
        if head is None:
            return
        if self._client is None or not self._client.is_connected():
            if self._client is not None:
                self._client.loop_stop()
            self._client = self._connect()
            if self._client is None:
                delay = backoff_delay(self._attempt, base=_BACKOFF_BASE_S, cap=_BACKOFF_CAP_S)
                self._attempt += 1
                with self._cond:
                    self._cond.wait(delay)
                return
            self._attempt = 0
        info = self._client.publish(self.topic, head[1], qos=1)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            return
        try:
            info.wait_for_publish(timeout=5)
        except (ValueError, RuntimeError):
            return
        if info.is_published():
            self._advance(len(head[1]))

    def reader_caught_up(self) -> bool:
        return self.pending() == 0

    def _close(self) -> None:
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()
            self._client = None

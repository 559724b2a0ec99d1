"""Change the broker's identities while it runs, through the dynamic security plugin's
``$CONTROL`` topic (what ``mosquitto_ctrl`` does, from Python so the admin password never goes
on a command line). The plugin applies each command at once and saves its file itself.

One :class:`DynsecControl` is one admin connection; :meth:`DynsecControl.run` sends a batch
of commands and waits for the plugin's answers, raising on the first refusal."""

from __future__ import annotations

import itertools
import json
import ssl
import threading
import time
from types import TracebackType
from typing import Any, Self

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.reasoncodes import ReasonCode
from pydantic_settings import BaseSettings, SettingsConfigDict

from contract import topics
from contract.errors import PantauError
from contract.mqtttls import MqttTlsSettings, tls_failure_words
from contract.mqtturl import BrokerUrl
from contract.topics import Channel
from pantau.broker_identity import (
    CONTROL_TOPIC,
    SERVICE_ACCOUNTS,
    Account,
    DeviceKind,
    device_account,
    device_role,
)

_batches = itertools.count(1)


class BrokerControlError(PantauError):
    """The broker refused a connection or a command (``command`` and the plugin's words)."""

    def __init__(self, command: str, reason: str) -> None:
        super().__init__(f"{command}: {reason}")
        self.command = command
        self.reason = reason


class TlsFromEnv(MqttTlsSettings, BaseSettings):
    """``PANTAU_MQTT_CA_FILE`` and the client certificate, for an operator command that dials
    an ``mqtts://`` broker."""

    model_config = SettingsConfigDict(env_prefix="PANTAU_", extra="ignore")


def control_for(url: str, password: str) -> DynsecControl:
    """An admin session on the broker at ``url`` (``mqtts://``: TLS with the CA and client
    certificate of ``PANTAU_MQTT_CA_FILE``, ...). Raises ``ValueError`` for a bad URL."""
    broker = BrokerUrl.parse(url)
    tls = TlsFromEnv().mqtt_tls_context() if broker.tls else None
    return DynsecControl(host=broker.host, port=broker.port, password=password, tls=tls)


class DynsecControl:
    """A blocking admin session on the broker's dynamic security plugin."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        password: str,
        admin: Account = SERVICE_ACCOUNTS["pantau-admin"],
        timeout: float = 10.0,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self._tls = tls
        self._admin, self._password = admin, password
        self._cond = threading.Condition()
        self._answers: dict[str, list[dict[str, Any]]] = {}
        #: Retained status messages seen on this connection, by topic.
        self.statuses: dict[str, bytes] = {}
        self._connack: ReasonCode | None = None
        self._subscribed = False
        self._client: mqtt.Client | None = None

    # --- connection ----------------------------------------------------------------------
    def __enter__(self) -> Self:
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self._admin.client_id,
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        client.username_pw_set(self._admin.username, self._password)
        if self._tls is not None:
            client.tls_set_context(self._tls)
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        self._client = client
        try:
            client.connect(self.host, self.port)
        except OSError as exc:  # the TLS handshake too: its failure in words
            why = tls_failure_words(exc) if isinstance(exc, ssl.SSLError) else exc
            raise BrokerControlError("connect", f"{self.host}:{self.port}: {why}") from None
        client.loop_start()
        try:
            self._handshake(client)
        except BaseException:
            self.close()
            raise
        return self

    def _handshake(self, client: mqtt.Client) -> None:
        self._wait(lambda: self._connack is not None, "connect")
        if self._connack is None or self._connack.is_failure:
            raise BrokerControlError("connect", str(self._connack))
        client.subscribe(f"{CONTROL_TOPIC}/response", qos=1)
        self._wait(lambda: self._subscribed, "subscribe")

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Disconnect; safe to call twice."""
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()
            self._client = None

    def _wait(self, ready: Any, what: str) -> None:
        deadline = time.monotonic() + self.timeout
        with self._cond:
            while not ready():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise BrokerControlError(what, f"no answer within {self.timeout}s")
                self._cond.wait(left)

    def _on_connect(self, c: Any, u: Any, flags: Any, rc: ReasonCode, props: Any) -> None:
        with self._cond:
            self._connack = rc
            self._cond.notify_all()

    def _on_subscribe(self, c: Any, u: Any, mid: int, rcs: list[ReasonCode], props: Any) -> None:
        with self._cond:
            self._subscribed = not any(rc.is_failure for rc in rcs)
            if not self._subscribed:
                self._connack = rcs[0]
            self._cond.notify_all()

    def _on_message(self, c: Any, u: Any, msg: mqtt.MQTTMessage) -> None:
        if not msg.topic.startswith(CONTROL_TOPIC):
            with self._cond:
                self.statuses[msg.topic] = bytes(msg.payload)
            return
        try:
            responses = json.loads(msg.payload)["responses"]
        except (ValueError, KeyError, TypeError):
            return
        with self._cond:
            for answer in responses:
                key = str(answer.get("correlationData", ""))
                self._answers.setdefault(key, []).append(answer)
            self._cond.notify_all()

    # --- commands --------------------------------------------------------------------------
    def run(
        self, *commands: dict[str, Any], allow: frozenset[str] = frozenset()
    ) -> list[dict[str, Any]]:
        """Send ``commands`` as one batch and return the plugin's answers in order. An answer
        with an error raises, unless its text is in ``allow`` (e.g. ``Client not found`` when
        deleting something that may already be gone)."""
        if self._client is None:
            raise BrokerControlError("run", "not connected")
        batch = f"pantau-{next(_batches)}"
        tagged = [{**c, "correlationData": f"{batch}-{i}"} for i, c in enumerate(commands)]
        self._client.publish(CONTROL_TOPIC, json.dumps({"commands": tagged}), qos=1)
        keys = [c["correlationData"] for c in tagged]
        self._wait(lambda: all(k in self._answers for k in keys), commands[0]["command"])
        answers = [self._answers.pop(k)[0] for k in keys]
        for answer in answers:
            error = answer.get("error")
            if error and error not in allow:
                raise BrokerControlError(str(answer.get("command")), str(error))
        return answers

    def add_device(self, device_id: str, site: str, password: str, *, kind: DeviceKind) -> None:
        """Create a device's role (its exact topics) and account (bound to its id)."""
        account = device_account(device_id)
        role = device_role(device_id, site, kind=kind)
        self.add_account(account, password, roles=[role])

    def add_account(
        self, account: Account, password: str, *, roles: list[dict[str, Any]] | None = None
    ) -> None:
        """Create ``roles`` (if given) and an account holding ``account.roles``."""
        create_roles = [{"command": "createRole", **r} for r in roles or []]
        self.run(
            *create_roles,
            {
                "command": "createClient",
                "username": account.username,
                "password": password,
                "clientid": account.client_id,
                "roles": [{"rolename": r} for r in account.roles],
            },
        )

    def set_password(self, username: str, password: str) -> None:
        """Replace an account's password; the plugin disconnects its current session."""
        self.run({"command": "setClientPassword", "username": username, "password": password})

    def get_client(self, username: str) -> dict[str, Any] | None:
        """One account (username, clientid, roles, textdescription), None if there is none."""
        answer = self.run(
            {"command": "getClient", "username": username},
            allow=frozenset({"Client not found"}),
        )[0]
        if answer.get("error"):
            return None
        client: dict[str, Any] = answer.get("data", {}).get("client", {})
        return client

    def set_description(self, username: str, text: str) -> None:
        """Replace an account's free-text description (where a pending rotation is noted)."""
        self.run({"command": "modifyClient", "username": username, "textdescription": text})

    def delete_device(self, device_id: str) -> None:
        """Remove a device's account and role; the plugin disconnects it at once."""
        self.run(
            {"command": "deleteClient", "username": device_id},
            {"command": "deleteRole", "rolename": device_account(device_id).roles[0]},
            allow=frozenset({"Client not found", "Role not found"}),
        )

    def clear_retained(self, topic: str) -> None:
        """Remove the retained message on ``topic`` (an empty retained publish)."""
        if self._client is None:
            raise BrokerControlError("clear", "not connected")
        info = self._client.publish(topic, b"", qos=1, retain=True)
        info.wait_for_publish(self.timeout)

    def list_clients(self) -> list[str]:
        """Every account's username."""
        answer = self.run({"command": "listClients", "verbose": False})[0]
        return [str(u) for u in answer.get("data", {}).get("clients", [])]

    def accounts_and_statuses(self) -> tuple[list[dict[str, Any]], dict[str, bytes]]:
        """Every account (username, clientid, roles) and every retained device status.

        The broker queues retained messages to a new subscription before it handles any later
        packet of ours, so once the answer to the listing arrives, every status has too."""
        if self._client is None:
            raise BrokerControlError("list", "not connected")
        self._client.subscribe(topics.subscription(Channel.STATUS), qos=1)
        answer = self.run({"command": "listClients", "verbose": True})[0]
        with self._cond:
            statuses = dict(self.statuses)
        return list(answer.get("data", {}).get("clients", [])), statuses

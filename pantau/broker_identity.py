"""Who may connect to the broker, with which client id, and say what on which topic.

Mosquitto's dynamic security plugin holds this state (docs/adr/0010-broker-identity.md). This
module builds it, derived from ``contract.topics`` so the broker's rules cannot drift from the
wire contract: the tests, ``pantau demo`` and the compose stack all start from
:func:`identity_document`, and later changes go through ``$CONTROL`` (``pantau.dynsec``).

The rules:

* Every account is bound to exactly one client id; the broker refuses a CONNECT whose client id
  is not its account's. A device account's username *and* client id are the device id (gateway
  or direct device), so nobody else can take its session, and it cannot take anyone's.
* A device may write only ``pantau/v1/<its site>/<its id>/<its channels>`` (a gateway:
  ``readings``, ``status``, ``ack``; a direct device: ``reading``, ``status``) and subscribe
  only to its own ``cmd``. Everything not granted is refused (default deny).
* Service accounts get one role each; further ingester members get their own accounts
  (:func:`ingest_member`), bound to their own client ids, with the same role.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from contract import topics
from contract.topics import ID_PATTERN, Channel

#: PBKDF2-SHA512 as the plugin checks it (12-byte salt, 64-byte hash). The plugin's own default
#: count is 101; every password here is 18 random bytes, so the count adds no real strength and
#: a higher one would cost the broker CPU on every connect of a thousand gateways.
ITERATIONS = 101
SALT_BYTES = 12
#: Topic of the plugin's commands; answers come on ``<this>/response``.
CONTROL_TOPIC = "$CONTROL/dynamic-security/v1"

DeviceKind = Literal["gateway", "direct"]
ServiceRole = Literal[
    "pantau-ingest", "pantau-api", "pantau-ops", "pantau-admin", "pantau-health", "pantau-replay"
]

#: What each kind of device may publish. Only ``status`` is retained by the protocol.
DEVICE_CHANNELS: dict[DeviceKind, tuple[Channel, ...]] = {
    "gateway": (Channel.READINGS, Channel.STATUS, Channel.ACK),
    "direct": (Channel.READING, Channel.STATUS),
}
_DATA_CHANNELS = (Channel.READINGS, Channel.READING, Channel.STATUS)


class Account(BaseModel):
    """One broker login: its username, the one client id it may use, and its roles."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    username: str = Field(pattern=f"^{ID_PATTERN}$")
    client_id: str = Field(pattern=f"^{ID_PATTERN}$")
    roles: tuple[str, ...]


#: The service accounts every deployment has, with the client id each is bound to. The
#: ingester's is its default ``PANTAU_MQTT_CLIENT_ID`` (member 1 of a scale-out group).
SERVICE_ACCOUNTS: dict[str, Account] = {
    "pantau-ingest": Account(
        username="pantau-ingest", client_id="pantau-ingest-1", roles=("pantau-ingest",)
    ),
    "pantau-api": Account(username="pantau-api", client_id="pantau-api", roles=("pantau-api",)),
    "pantau-ops": Account(username="pantau-ops", client_id="pantau-ops", roles=("pantau-ops",)),
    "pantau-admin": Account(
        username="pantau-admin", client_id="pantau-admin", roles=("pantau-admin",)
    ),
    # `pantau ingest replay` re-publishes dead letters to the devices' data topics.
    "pantau-replay": Account(
        username="pantau-replay", client_id="pantau-replay", roles=("pantau-replay",)
    ),
    # The container healthcheck: its own login, so probing never takes an ops session over.
    "pantau-health": Account(
        username="pantau-health", client_id="pantau-health", roles=("pantau-health",)
    ),
}
#: What the healthcheck reads: proves the broker answers, logins work and roles are loaded.
HEALTH_TOPIC = "$SYS/broker/uptime"
SERVICE_USERS = tuple(SERVICE_ACCOUNTS)


def _acl(acltype: str, topic: str, *, allow: bool = True) -> dict[str, Any]:
    return {"acltype": acltype, "topic": topic, "priority": 0, "allow": allow}


def _read(topic_filter: str) -> list[dict[str, Any]]:
    """Subscribe to ``topic_filter`` and receive what matches it."""
    return [_acl("subscribePattern", topic_filter), _acl("publishClientReceive", topic_filter)]


def service_roles() -> list[dict[str, Any]]:
    """The roles of the service accounts, in the plugin's JSON form."""
    data = [topics.subscription(c) for c in _DATA_CHANNELS]
    # Every group's state topic: the group name is a member's setting, not a broker account.
    state = topics.ingest_state("group").replace("/group/", "/+/")
    ingest = [acl for t in data for acl in _read(t)]
    # Scale-out members subscribe as $share/<group>/<filter>; the plugin sees the whole string.
    ingest += [_acl("subscribePattern", topics.shared("+", t)) for t in data]
    ingest += [*_read(state), _acl("publishClientSend", state)]
    everything = f"{topics.PREFIX}/{topics.VERSION}/#"
    control = [
        _acl("publishClientSend", CONTROL_TOPIC),
        _acl("subscribeLiteral", f"{CONTROL_TOPIC}/response"),
        _acl("publishClientReceive", f"{CONTROL_TOPIC}/response"),
        # Revoking a device also clears its retained status (an empty retained message), and
        # listing accounts shows each device's last status.
        _acl("publishClientSend", topics.subscription(Channel.STATUS)),
        *_read(topics.subscription(Channel.STATUS)),
    ]
    return [
        {"rolename": "pantau-ingest", "acls": ingest},
        # The API follows the devices' statuses and the ingesters' state (cloud/api/state_follow).
        {"rolename": "pantau-api", "acls": [*_read(everything), *_read(state)]},
        {
            "rolename": "pantau-ops",
            "acls": [
                *_read(everything),
                _acl("publishClientSend", topics.subscription(Channel.CMD)),
            ],
        },
        {"rolename": "pantau-admin", "acls": control},
        {
            "rolename": "pantau-replay",
            "acls": [_acl("publishClientSend", t) for t in data],
        },
        {
            "rolename": "pantau-health",
            "acls": [
                _acl("subscribeLiteral", HEALTH_TOPIC),
                _acl("publishClientReceive", HEALTH_TOPIC),
            ],
        },
    ]


def device_role_name(device_id: str) -> str:
    """The name of the role that holds one device's topics."""
    return f"device-{device_id}"


def device_role(device_id: str, site: str, *, kind: DeviceKind) -> dict[str, Any]:
    """One device's role: its own site and id, exact topics, nothing with a wildcard."""
    acls = [
        _acl("publishClientSend", topics.build(site, device_id, ch)) for ch in DEVICE_CHANNELS[kind]
    ]
    if kind == "gateway":
        cmd = topics.build(site, device_id, Channel.CMD)
        acls += [_acl("subscribeLiteral", cmd), _acl("publishClientReceive", cmd)]
    return {"rolename": device_role_name(device_id), "textdescription": site, "acls": acls}


def device_account(device_id: str) -> Account:
    """A device logs in as its id, with its id as client id, holding only its own role."""
    return Account(username=device_id, client_id=device_id, roles=(device_role_name(device_id),))


def ingest_member(n: int) -> Account:
    """The account of ingester member ``n`` (1 is the default ``pantau-ingest``)."""
    if n == 1:
        return SERVICE_ACCOUNTS["pantau-ingest"]
    name = f"pantau-ingest-{n}"
    return Account(username=name, client_id=name, roles=("pantau-ingest",))


def hash_password(password: str, *, salt: bytes | None = None) -> dict[str, Any]:
    """The ``password``/``salt``/``iterations`` fields the plugin checks a CONNECT against."""
    salt = salt if salt is not None else secrets.token_bytes(SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, ITERATIONS, 64)
    return {
        "password": base64.b64encode(digest).decode(),
        "salt": base64.b64encode(salt).decode(),
        "iterations": ITERATIONS,
    }


def client_entry(account: Account, password: str) -> dict[str, Any]:
    """One account in the plugin's JSON form."""
    return {
        "username": account.username,
        "clientid": account.client_id,
        "roles": [{"rolename": r, "priority": 0} for r in account.roles],
        **hash_password(password),
    }


def identity_document(
    accounts: Iterable[tuple[Account, str]], device_roles: Iterable[dict[str, Any]]
) -> dict[str, Any]:
    """A complete dynamic-security file: default deny, the service roles, the given device
    roles, and the given (account, password) pairs."""
    return {
        # Nothing is allowed unless a role grants it; unsubscribing is always harmless.
        "defaultACLAccess": {
            "publishClientSend": False,
            "publishClientReceive": False,
            "subscribe": False,
            "unsubscribe": True,
        },
        "clients": [client_entry(a, pw) for a, pw in accounts],
        "groups": [],
        "roles": [*service_roles(), *device_roles],
    }


def write_document(path: Path, document: dict[str, Any]) -> None:
    """Write an identity file readable by its owner only (it holds password hashes), atomically:
    a broker starting meanwhile reads the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(document, out, indent=1)
    tmp.replace(path)

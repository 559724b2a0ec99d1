"""The pending step of a two-step credential rotation, kept on the broker itself.

Mosquitto's dynamic security plugin holds one password per account, so ``pantau gateway
rotate`` issues the new secret first (the gateway is given it as ``mqtt_password_next``) and
``rotate --commit`` switches the broker to it later (docs/adr/0017-gateway-lifecycle.md).
Between the two, the account's ``textdescription`` holds a salted PBKDF2 hash of the new
secret, never the secret: any operator's ``--commit`` can then check that the secret it is
given is the one issued (a typo would lock the gateway out), and ``list`` shows the rotation
as pending. Only ``pantau-admin`` can read an account's description.
"""

from __future__ import annotations

import base64
import hmac
from datetime import UTC, datetime

from pantau.broker_identity import hash_password

__all__ = ["PREFIX", "matches", "pending_marker", "pending_since"]

PREFIX = "pantau-rotation-pending"


def pending_marker(secret: str, *, now: datetime | None = None) -> str:
    """The description noting that ``secret`` was issued and awaits ``--commit``."""
    when = (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    hashed = hash_password(secret)
    return f"{PREFIX} {when} {hashed['salt']} {hashed['password']}"


def _fields(description: str | None) -> list[str] | None:
    parts = (description or "").split()
    if len(parts) != 4 or parts[0] != PREFIX:
        return None
    return parts


def pending_since(description: str | None) -> str | None:
    """When the pending rotation was issued (``2026-11-29T21:40:00Z``), None if none is."""
    parts = _fields(description)
    return parts[1] if parts else None


def matches(description: str | None, secret: str) -> bool:
    """True if ``secret`` is the one the pending rotation issued."""
    parts = _fields(description)
    if parts is None:
        return False
    try:
        salt = base64.b64decode(parts[2], validate=True)
    except ValueError:
        return False
    return hmac.compare_digest(hash_password(secret, salt=salt)["password"], parts[3])

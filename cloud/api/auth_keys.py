"""API keys in a small SQLite file: only a SHA-256 of each key is stored, and a key is shown once.

A key is ``pantau_<id>_<secret>``: ``id`` (12 hex digits) names the row and is safe to log or
list; ``secret`` is 32 random bytes (``secrets.token_urlsafe``). The stored digest is
``sha256(key)``. A slow password hash (argon2, bcrypt) protects *low-entropy* secrets against
guessing after a database leak; a 256-bit random key cannot be guessed either way, so a slow
hash would only add its cost to every request (ADR 0015). Digests are compared in constant time
(``hmac.compare_digest``).

The API reads the file on every request (one indexed row), so ``pantau api key revoke`` takes
effect on the next request of every API process sharing the file, without a restart.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import sqlite3
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Self

from cloud.api.auth_roles import Role

KEY_PREFIX = "pantau"
_ID_HEX_DIGITS = 12
_SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    role         TEXT NOT NULL,
    regions      TEXT NOT NULL,   -- JSON list of region codes; [] = every region
    rate_per_min INTEGER,         -- NULL: the API's PANTAU_API_RATE_PER_MIN
    sha256       TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    revoked_at   TEXT
)
"""


@dataclass(frozen=True, slots=True)
class ApiKey:
    """One key's record (never the key itself: only its digest is stored)."""

    id: str
    name: str
    role: Role
    #: Region codes the key may read restricted data in; empty: every region (admin).
    regions: tuple[str, ...]
    rate_per_min: int | None
    created_at: str
    revoked_at: str | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


def digest(key: str) -> str:
    """The stored form of a key: hex SHA-256 of its UTF-8 bytes."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def key_id_of(key: str) -> str | None:
    """The id part of ``pantau_<id>_<secret>``; None for anything not shaped like a key."""
    prefix, sep, rest = key.partition("_")
    key_id, sep2, secret = rest.partition("_")
    if prefix != KEY_PREFIX or not sep or not sep2 or not secret:
        return None
    if len(key_id) != _ID_HEX_DIGITS or any(c not in "0123456789abcdef" for c in key_id):
        return None
    return key_id


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class KeyStore:
    """The key file. Cheap to build; :meth:`open` (or ``with``) creates the file and table if
    missing. One connection, shared by threads under a lock (lookups are one indexed row)."""

    def __init__(self, *, path: Path) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def open(self) -> Self:
        """Open (creating the file and table if needed)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Digests are no secrets, but who holds which key is nobody else's business.
        self.path.touch(mode=0o600, exist_ok=True)
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        # WAL lets `pantau api key create` write while running APIs read.
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA busy_timeout=5000")
        db.execute(_SCHEMA)
        self._db = db
        return self

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def __enter__(self) -> Self:
        return self.open()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("KeyStore used before open()")
        return self._db

    def create(
        self,
        *,
        name: str,
        role: Role,
        regions: tuple[str, ...] = (),
        rate_per_min: int | None = None,
    ) -> tuple[ApiKey, str]:
        """A new key: its record and the key itself, which is not stored and cannot be shown
        again."""
        key_id = secrets.token_hex(_ID_HEX_DIGITS // 2)
        key = f"{KEY_PREFIX}_{key_id}_{secrets.token_urlsafe(32)}"
        record = ApiKey(
            id=key_id,
            name=name,
            role=role,
            regions=tuple(dict.fromkeys(regions)),
            rate_per_min=rate_per_min,
            created_at=_now(),
            revoked_at=None,
        )
        with self._lock:
            self._conn().execute(
                "INSERT INTO api_keys (id, name, role, regions, rate_per_min, sha256, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    record.id,
                    record.name,
                    record.role.value,
                    json.dumps(list(record.regions)),
                    record.rate_per_min,
                    digest(key),
                    record.created_at,
                ),
            )
        return record, key

    def records(self) -> list[ApiKey]:
        """Every key, revoked ones included, oldest first."""
        with self._lock:
            rows = self._conn().execute(
                "SELECT id, name, role, regions, rate_per_min, created_at, revoked_at"
                " FROM api_keys ORDER BY rowid"
            )
            return [_record(row) for row in rows.fetchall()]

    def revoke(self, key_id: str) -> ApiKey | None:
        """Mark a key revoked (kept for the record); None if there is no such key."""
        with self._lock:
            self._conn().execute(
                "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                (_now(), key_id),
            )
            row = (
                self._conn()
                .execute(
                    "SELECT id, name, role, regions, rate_per_min, created_at, revoked_at"
                    " FROM api_keys WHERE id = ?",
                    (key_id,),
                )
                .fetchone()
            )
        return None if row is None else _record(row)

    def lookup(self, key: str) -> ApiKey | None:
        """The record of an active key; None for an unknown, malformed or revoked key."""
        key_id = key_id_of(key)
        if key_id is None:
            return None
        with self._lock:
            row = (
                self._conn()
                .execute(
                    "SELECT id, name, role, regions, rate_per_min, created_at, revoked_at, sha256"
                    " FROM api_keys WHERE id = ?",
                    (key_id,),
                )
                .fetchone()
            )
        if row is None or not hmac.compare_digest(str(row[7]), digest(key)):
            return None
        record = _record(row[:7])
        return record if record.active else None


def _record(row: tuple[object, ...]) -> ApiKey:
    key_id, name, role, regions, rate, created, revoked = row
    return ApiKey(
        id=str(key_id),
        name=str(name),
        role=Role(str(role)),
        regions=tuple(str(r) for r in json.loads(str(regions))),
        rate_per_min=None if rate is None else int(str(rate)),
        created_at=str(created),
        revoked_at=None if revoked is None else str(revoked),
    )

"""Certificates for the TLS tests, made with the same code as ``pantau broker certs``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from pantau.certs import Validity, make_certs

#: The hosts the test broker's certificate names (it listens on loopback).
TEST_HOSTS = ["127.0.0.1", "localhost"]


def valid_now(days: int = 30) -> Validity:
    """Valid from a minute ago for ``days`` days."""
    return Validity(start=datetime.now(UTC) - timedelta(minutes=1), days=days)


def expired() -> Validity:
    """Valid for one day, ten days ago: an already-expired certificate."""
    return Validity(start=datetime.now(UTC) - timedelta(days=10), days=1)


def make_broker_certs(
    folder: Path, *, valid: Validity | None = None, clients: list[str] | None = None
) -> Path:
    """A CA, a server certificate for the loopback broker and optional client certificates
    in ``folder``; returns ``folder``."""
    make_certs(folder, hosts=TEST_HOSTS, clients=clients or [], valid=valid or valid_now())
    return folder

"""The latest status of every gateway, as the broker keeps it retained on
``pantau/v1/{site}/{gateway}/status`` (contract/status.py): link state, spool depth and drops,
silent sensors. The state follower (cloud/api/state_follow.py) subscribes to it beside the
ingesters' state topic; on subscription the broker sends every retained status at once, so the
API knows every gateway's state without reading InfluxDB."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from pydantic import ValidationError

from contract import GatewayStatus, topics
from contract.errors import TopicError
from contract.topics import Channel

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class GatewayEntry:
    """A gateway's latest status, the site its topic named, and when the API received it."""

    status: GatewayStatus
    site: str
    received_ms: int


class GatewayBook:
    """Latest status per gateway id. Thread-safe."""

    def __init__(self) -> None:
        self._by_gateway: dict[str, GatewayEntry] = {}
        self._lock = threading.Lock()
        #: statuses refused (not the contract, or a gateway speaking for another)
        self.refused = 0

    def offer(self, topic: str, payload: bytes) -> str | None:
        """Take a message from a status topic; returns the gateway id whose status changed,
        or None (another channel, or refused and logged). An empty retained payload (a
        cleared status) forgets the gateway."""
        try:
            parsed = topics.parse(topic)
        except TopicError as exc:
            log.warning("status on an unknown topic: %s", exc)
            return None
        if parsed.channel is not Channel.STATUS:
            return None
        if not payload:
            with self._lock:
                self._by_gateway.pop(parsed.gateway, None)
            return parsed.gateway
        try:
            status = GatewayStatus.model_validate_json(payload)
        except ValidationError as exc:
            log.warning(
                "refused the status of %s: %d schema errors", parsed.gateway, exc.error_count()
            )
            self.refused += 1
            return None
        if status.gw != parsed.gateway:
            log.warning("refused a status for %s on %s's topic", status.gw, parsed.gateway)
            self.refused += 1
            return None
        entry = GatewayEntry(status=status, site=parsed.site, received_ms=time.time_ns() // 10**6)
        with self._lock:
            self._by_gateway[parsed.gateway] = entry
        return parsed.gateway

    def get(self, gateway: str) -> GatewayEntry | None:
        """The latest status of ``gateway``, if any arrived."""
        with self._lock:
            return self._by_gateway.get(gateway)

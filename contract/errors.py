"""One root error for Pantau, with typed subclasses that carry what a caller needs."""

from __future__ import annotations

from enum import StrEnum


class RejectReason(StrEnum):
    """Why a message or reading was refused. The values are stable: they are metric labels,
    dead-letter keys and API strings, so never rename one."""

    INVALID_JSON = "invalid_json"
    UNSUPPORTED_VERSION = "unsupported_version"
    SCHEMA_VIOLATION = "schema_violation"
    OVERSIZE = "oversize"
    UNKNOWN_GATEWAY = "unknown_gateway"
    UNKNOWN_SENSOR = "unknown_sensor"
    TOPIC_MISMATCH = "topic_mismatch"
    KIND_MISMATCH = "kind_mismatch"
    NON_FINITE = "non_finite"
    NEGATIVE_COUNT = "negative_count"
    OCCUPIED_EXCEEDS_CAPACITY = "occupied_exceeds_capacity"
    FUTURE_TIMESTAMP = "future_timestamp"
    ANCIENT_TIMESTAMP = "ancient_timestamp"
    BAD_TOPIC = "bad_topic"
    STORAGE_REJECTED = "storage_rejected"
    INVALID_BINARY = "invalid_binary"
    #: The ingester failed on this message (a bug, not the device's fault); the traceback is
    #: in the ingester's log once. Stored, so the message can be replayed once fixed.
    INTERNAL_ERROR = "internal_error"
    #: The ingester died while processing this message too often (crash-loop guard).
    POISON = "poison"


class PantauError(Exception):
    """Root of every error Pantau raises on purpose."""


class ContractError(PantauError):
    """Something on the wire does not follow the contract."""

    def __init__(self, reason: RejectReason, detail: str, *, index: int | None = None) -> None:
        self.reason = reason
        self.detail = detail
        #: Position of the offending reading inside a batch, when the fault is a reading's.
        self.index = index
        where = f" (reading {index})" if index is not None else ""
        super().__init__(f"{reason.value}{where}: {detail}")


class TopicError(ContractError):
    """An MQTT topic that is not one of Pantau's."""

    def __init__(self, topic: str, detail: str) -> None:
        self.topic = topic
        super().__init__(RejectReason.BAD_TOPIC, f"{topic!r}: {detail}")


class PayloadError(ContractError):
    """A payload that cannot be decoded or breaks a validation rule."""


class FrameError(ContractError):
    """A serial frame that is malformed (checksum, field count, bad value)."""

    def __init__(self, detail: str, *, raw: bytes = b"") -> None:
        self.raw = raw
        super().__init__(RejectReason.SCHEMA_VIOLATION, detail)


class ConfigError(PantauError):
    """Settings that cannot work (missing secret in production, bad URL...)."""


class ConfigFileError(ConfigError):
    """A configuration file that is missing or invalid; names the file, the place in it
    (``sensors[4].gateway`` or ``line 3, column 7``) and what is wrong."""

    def __init__(self, path: str, location: str, message: str) -> None:
        self.path = path
        self.location = location
        self.message = message
        at = f" at {location}" if location else ""
        super().__init__(f"{path}{at}: {message}")


class RegistryError(ConfigFileError):
    """A city registry file that is missing or invalid."""


class StorageError(PantauError):
    """The time-series store refused or could not be reached."""

    def __init__(
        self,
        detail: str,
        *,
        status: int | None = None,
        retryable: bool,
        retry_after_s: float | None = None,
    ) -> None:
        self.status = status
        self.retryable = retryable
        #: how long the store asked us to wait (HTTP Retry-After), when it said
        self.retry_after_s = retry_after_s
        super().__init__(detail)

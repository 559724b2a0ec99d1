"""The wire contract: topics, payload schema and versions, serial framing, errors.

Edge, ingester, simulator and tests all import this package; nothing else defines the wire.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from contract.beds import BED_GROUPS, BED_TYPES, BorBand, bor_band, bor_percent
from contract.errors import (
    ConfigError,
    ConfigFileError,
    ContractError,
    FrameError,
    PantauError,
    PayloadError,
    RegistryError,
    RejectReason,
    StorageError,
    TopicError,
)
from contract.mqtt_reason import reason_words, reasons_words
from contract.payload import (
    KIND_CODES,
    KIND_FIELDS,
    MAX_FUTURE_SKEW_MS,
    MAX_PAYLOAD_BYTES,
    MAX_READINGS_PER_BATCH,
    SCHEMA_VERSION,
    Batch,
    ClockSource,
    Command,
    CommandAck,
    CommandName,
    Reading,
    SensorKind,
    SingleReading,
    check_row,
    check_rows,
    check_timestamp,
    check_values,
    check_version,
    encode,
    load_json,
)
from contract.serial_frame import (
    FrameColumns,
    FrameDecoder,
    FrameStats,
    SerialFrame,
    encode_frame,
    parse_frame,
)
from contract.status import STAT_TYPES, GatewayState, GatewayStatus, StatType, known_stats
from contract.topics import Channel, Topic

if TYPE_CHECKING:
    from contract.binary import (
        MAX_BINARY_READINGS_PER_BATCH,
        BinaryBatch,
        decode_binary_batch,
        encode_binary_batch,
        is_binary,
        readings_section,
    )
    from contract.cluster import StateDelta, decode_state_delta, encode_state_delta

#: The numpy-backed formats load on first use: a gateway agent that only speaks JSON then never
#: imports numpy (about 12 MB of its RSS on a small device).
_LAZY = {
    **dict.fromkeys(
        (
            "MAX_BINARY_READINGS_PER_BATCH",
            "BinaryBatch",
            "decode_binary_batch",
            "encode_binary_batch",
            "is_binary",
            "known_stats",
            "readings_section",
        ),
        "contract.binary",
    ),
    **dict.fromkeys(("StateDelta", "decode_state_delta", "encode_state_delta"), "contract.cluster"),
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'contract' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "BED_GROUPS",
    "BED_TYPES",
    "KIND_CODES",
    "KIND_FIELDS",
    "MAX_BINARY_READINGS_PER_BATCH",
    "MAX_FUTURE_SKEW_MS",
    "MAX_PAYLOAD_BYTES",
    "MAX_READINGS_PER_BATCH",
    "SCHEMA_VERSION",
    "STAT_TYPES",
    "Batch",
    "BinaryBatch",
    "BorBand",
    "Channel",
    "ClockSource",
    "Command",
    "CommandAck",
    "CommandName",
    "ConfigError",
    "ConfigFileError",
    "ContractError",
    "FrameColumns",
    "FrameDecoder",
    "FrameError",
    "FrameStats",
    "GatewayState",
    "GatewayStatus",
    "PantauError",
    "PayloadError",
    "Reading",
    "RegistryError",
    "RejectReason",
    "SensorKind",
    "SerialFrame",
    "SingleReading",
    "StatType",
    "StateDelta",
    "StorageError",
    "Topic",
    "TopicError",
    "bor_band",
    "bor_percent",
    "check_row",
    "check_rows",
    "check_timestamp",
    "check_values",
    "check_version",
    "decode_binary_batch",
    "decode_state_delta",
    "encode",
    "encode_binary_batch",
    "encode_frame",
    "encode_state_delta",
    "is_binary",
    "known_stats",
    "load_json",
    "parse_frame",
    "readings_section",
    "reason_words",
    "reasons_words",
]

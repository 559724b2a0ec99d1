"""Decode a flush window of MQTT messages into numpy columns, and validate them vectorised.

``window.decode_window`` is the entry point; ``envelope`` judges each message's envelope
(a JSON batch is written straight into columns by the native decoder ``json_native`` when it is
built and the batch is in its strict subset, else decoded to typed structs by
``json_structs``), ``struct_columns``,
``json_columns`` (what the struct decoder refused) and ``binary_columns`` turn its readings into
columns, ``segments`` joins the forms, and ``rules`` applies the contract's reading rules to the
whole window at once (the precedence of faults is written there). Batch-level faults reject the
whole message; reading-level faults reject only that reading.
"""

from cloud.ingest.decode.json_columns import check_readings
from cloud.ingest.decode.types import (
    REASONS,
    DecodedWindow,
    Message,
    Readings,
    Rejection,
    StatusUpdate,
    empty_readings,
)
from cloud.ingest.decode.window import decode_window
from cloud.ingest.dedup import BatchDedup, content_fingerprint

__all__ = [
    "REASONS",
    "BatchDedup",
    "DecodedWindow",
    "Message",
    "Readings",
    "Rejection",
    "StatusUpdate",
    "check_readings",
    "content_fingerprint",
    "decode_window",
    "empty_readings",
]

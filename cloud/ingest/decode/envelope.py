"""The envelope of one message: topic, JSON or binary form, version, gateway, sizes.

Batch-level faults (JSON, version, envelope, unknown gateway, topic mismatch) reject the whole
message; what passes is handed on as admitted readings (or a status update).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from cloud.ingest.decode.json_native import NativeBatch, NativeColumns
from cloud.ingest.decode.json_structs import WireBatch, decode_batch
from cloud.ingest.decode.rules import BATCH_KEYS, SINGLE_KEYS
from cloud.ingest.decode.single_structs import AdmittedSingle, decode_single, single_reading
from cloud.ingest.decode.types import Message, Rejection, StatusUpdate
from cloud.ingest.topology import CityIndex
from contract import (
    MAX_READINGS_PER_BATCH,
    BinaryBatch,
    Channel,
    GatewayStatus,
    PayloadError,
    RejectReason,
    TopicError,
    check_version,
    decode_binary_batch,
    is_binary,
    known_stats,
    load_json,
    topics,
)


@dataclass(frozen=True, slots=True)
class AdmittedJson:
    """An admitted JSON message the struct decoder refused: its gateway and parsed readings
    (any JSON values), for the general path."""

    gateway: int
    readings: list[Any]
    is_batch: bool
    seq: int = 0


@dataclass(frozen=True, slots=True)
class AdmittedStructs:
    """An admitted JSON batch as ``json_structs`` decoded it (well-formed to the last
    reading): its gateway, batch seq and reading structs."""

    gateway: int
    seq: int
    readings: list[Any]


@dataclass(frozen=True, slots=True)
class AdmittedNative:
    """An admitted JSON batch the native decoder took (``json_native``): its gateway, batch
    seq and number of readings, which wait in the window's ``NativeColumns``."""

    gateway: int
    seq: int
    n: int


@dataclass(frozen=True, slots=True)
class AdmittedBinary:
    gateway: int
    batch: BinaryBatch


def admit(
    m: int,
    msg: Message,
    index: CityIndex,
    *,
    structs: bool = True,
    native: NativeColumns | None = None,
) -> (
    Rejection
    | StatusUpdate
    | AdmittedJson
    | AdmittedNative
    | AdmittedStructs
    | AdmittedBinary
    | AdmittedSingle
    | None
):
    """Envelope of one message: a Rejection, a StatusUpdate, admitted readings, or None for a
    message with nothing to store. ``structs=False`` skips the struct decoder (for a batch
    whose integers the columns could not hold: ``struct_columns``). With ``native``, a batch
    is offered to the native decoder first (``json_native``); what it does not take goes to
    the struct decoder."""
    binary: BinaryBatch | None = None
    wire: WireBatch | NativeBatch | None = None
    single: Any = None
    doc: Any = None
    try:
        topic = topics.parse(msg.topic)
        if topic.channel is Channel.STATUS and not msg.payload:
            return None  # a retained status being cleared: nothing to store
        if topic.channel is Channel.READINGS and is_binary(msg.payload):
            binary = decode_binary_batch(msg.payload)
        else:
            # A well-formed batch of this topic's gateway skips the parse to dicts; anything
            # else (a fault anywhere, another gw) is parsed again and judged by the rules below.
            if structs and topic.channel is Channel.READINGS:
                wire = None if native is None else native.decode(msg.payload)
                if wire is None:
                    wire = decode_batch(msg.payload)
            elif topic.channel is Channel.READING:
                single = decode_single(msg.payload)
            if single is None and (wire is None or wire.gw != topic.gateway):
                wire = None
                doc = load_json(msg.payload)
                check_version(doc)
    except (TopicError, PayloadError) as exc:
        return Rejection(m, exc.reason, exc.detail)
    gw = index.gateway_pos.get(topic.gateway)
    if gw is None:
        return Rejection(
            m, RejectReason.UNKNOWN_GATEWAY, f"gateway {topic.gateway!r} not registered"
        )
    registered_site = index.site_ids[index.gateway_site[gw]]
    if registered_site != topic.site:
        detail = f"gateway {topic.gateway} is registered at {registered_site}, not {topic.site}"
        return Rejection(m, RejectReason.TOPIC_MISMATCH, detail)
    if binary is not None:
        if binary.gw != topic.gateway:
            detail = f"payload gw {binary.gw!r} != topic {topic.gateway!r}"
            return Rejection(m, RejectReason.TOPIC_MISMATCH, detail)
        return AdmittedBinary(gw, binary)
    if isinstance(wire, NativeBatch):
        return AdmittedNative(gw, wire.seq, wire.n)
    if wire is not None:
        return AdmittedStructs(gw, wire.seq, wire.readings)
    if topic.channel is Channel.STATUS:
        try:
            status = GatewayStatus.model_validate(doc)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(map(str, first["loc"][:2]))
            return Rejection(m, RejectReason.SCHEMA_VIOLATION, f"{where}: {first['msg']}"[:200])
        if status.gw != topic.gateway:
            detail = f"payload gw {status.gw!r} != topic {topic.gateway!r}"
            return Rejection(m, RejectReason.TOPIC_MISMATCH, detail)
        return StatusUpdate(m, gw, status, known_stats(doc.get("stats", {}))[1])
    if topic.channel is Channel.READING and not index.registry.doc.gateways[gw].direct:
        # The single-reading topic is for direct devices (registry ``direct: true``); a batch
        # gateway there is misconfigured or impersonating a simple device.
        detail = f"gateway {topic.gateway} is not a direct device: publish batches on readings"
        return Rejection(m, RejectReason.TOPIC_MISMATCH, detail)
    if topic.channel is Channel.READINGS:
        fault = batch_fault(doc, topic.gateway)
        if fault is not None:
            return Rejection(m, fault.reason, fault.detail)
        return AdmittedJson(gw, doc["readings"], True, doc["seq"])
    if topic.channel is Channel.READING:
        if single is not None:
            return AdmittedSingle(gw, single)
        if doc.keys() - SINGLE_KEYS:
            extra = sorted(doc.keys() - SINGLE_KEYS)
            return Rejection(m, RejectReason.SCHEMA_VIOLATION, f"unknown keys {extra}")
        return AdmittedJson(gw, [single_reading(doc, msg.received_ms)], False)
    return Rejection(m, RejectReason.BAD_TOPIC, f"channel {topic.channel.value} is not ingested")


def batch_fault(doc: dict[str, Any], gateway: str) -> Rejection | None:
    """Envelope rules of a Batch (index is filled in by the caller)."""
    schema = RejectReason.SCHEMA_VIOLATION
    if doc.keys() - BATCH_KEYS:
        return Rejection(0, schema, f"unknown batch keys {sorted(doc.keys() - BATCH_KEYS)}")
    readings = doc.get("readings")
    if not isinstance(readings, list) or not 1 <= len(readings) <= MAX_READINGS_PER_BATCH:
        return Rejection(0, schema, f"readings must be a list of 1..{MAX_READINGS_PER_BATCH}")
    seq, sent, offset = doc.get("seq"), doc.get("sent"), doc.get("clock_offset_ms")
    if type(seq) is not int or seq < 0 or type(sent) is not int:
        return Rejection(0, schema, "seq (>= 0) and sent must be integers")
    if offset is not None and type(offset) is not int:
        return Rejection(0, schema, "clock_offset_ms must be an integer")
    gw = doc.get("gw")
    if type(gw) is not str or not topics.is_valid_id(gw):
        return Rejection(0, schema, "gw must be a gateway id")
    if gw != gateway:
        return Rejection(0, RejectReason.TOPIC_MISMATCH, f"payload gw {gw!r} != topic {gateway!r}")
    return None

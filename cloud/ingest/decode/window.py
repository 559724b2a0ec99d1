"""Decode a flush window of MQTT messages into validated numpy columns.

Per message: the envelope (``envelope``), which has a JSON batch written into the window's
columns by the native decoder (``json_native``, no Python work per reading) or, if that does not
take it, decoded to structs (``json_structs``); per reading the only Python work is then pulling
the columns out of the structs
(``struct_columns``), of JSON the struct decoder refused (``json_columns``, the general path) or
of the binary batch (``binary_columns``); every rule of ``contract.payload`` is then applied to
the whole window's columns at once (``rules``), by the precedence written there. Reading-level
faults reject only that reading.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from cloud.ingest.decode.envelope import (
    AdmittedBinary,
    AdmittedJson,
    AdmittedNative,
    AdmittedStructs,
    admit,
)
from cloud.ingest.decode.json_native import NativeColumns, native_columns
from cloud.ingest.decode.rules import judge, reading_detail
from cloud.ingest.decode.segments import (
    Segment,
    binary_segment,
    concat,
    json_segment,
    struct_segment,
)
from cloud.ingest.decode.single_columns import SingleColumns
from cloud.ingest.decode.single_structs import AdmittedSingle
from cloud.ingest.decode.struct_columns import StructColumns
from cloud.ingest.decode.types import (
    REASONS,
    DecodedWindow,
    Message,
    Readings,
    Rejection,
    StatusUpdate,
    empty_readings,
)
from cloud.ingest.dedup import BatchDedup, content_fingerprint
from cloud.ingest.topology import CityIndex


@dataclass(kw_only=True)
class Admitted:
    """A window's messages sorted by what decoding they need."""

    structs: StructColumns
    native: NativeColumns | None = None
    singles: SingleColumns = field(default_factory=SingleColumns)
    rejections: list[Rejection] = field(default_factory=list)
    statuses: list[StatusUpdate] = field(default_factory=list)
    general: list[tuple[int, AdmittedJson]] = field(default_factory=list)
    binaries: list[tuple[int, AdmittedBinary]] = field(default_factory=list)
    duplicates: list[int] = field(default_factory=list)
    keys: list[tuple[int, int, int]] = field(default_factory=list)


def admit_all(messages: Sequence[Message], index: CityIndex, dedup: BatchDedup | None) -> Admitted:
    out = Admitted(structs=StructColumns(index=index), native=native_columns(index, messages))
    in_window: set[tuple[int, int, int]] = set()
    singles = out.singles
    for m, msg in enumerate(messages):
        if singles.add_known(m, msg):  # a single reading on a topic this window admitted
            continue
        got = admit(m, msg, index, native=out.native)
        if isinstance(got, Rejection):
            out.rejections.append(got)
            continue
        if isinstance(got, StatusUpdate):
            out.statuses.append(got)
            continue
        if got is None:
            continue
        if isinstance(got, AdmittedSingle):  # no dedup: a single reading has no batch seq
            singles.add(m, msg.topic, got)
            continue
        if not isinstance(got, AdmittedJson) or got.is_batch:
            seq = got.batch.seq if isinstance(got, AdmittedBinary) else got.seq
            key = (got.gateway, seq, content_fingerprint(msg.payload))
            if key in in_window or (dedup is not None and dedup.seen(*key)):
                out.duplicates.append(m)
                continue
            in_window.add(key)
            out.keys.append(key)
        if isinstance(got, AdmittedNative):
            if out.native is not None:  # always: admit took it with these columns
                out.native.add(m, got.gateway, got.n)
        elif isinstance(got, AdmittedStructs):
            out.structs.add(m, got.gateway, got.readings)
        elif isinstance(got, AdmittedBinary):
            out.binaries.append((m, got))
        else:
            out.general.append((m, got))
    out.structs.finish()
    for m in out.structs.refused:  # integers beyond int64: the general path says what is wrong
        again = admit(m, messages[m], index, structs=False)
        if isinstance(again, AdmittedJson):
            out.general.append((m, again))
        elif isinstance(again, Rejection):  # not seen: the struct decoder took the envelope
            out.rejections.append(again)
    if out.structs.refused:
        out.general.sort(key=lambda item: item[0])
    return out


def decode_window(
    messages: Sequence[Message],
    index: CityIndex,
    now_ms: int,
    *,
    dedup: BatchDedup | None = None,
) -> DecodedWindow:
    """Decode and validate a window of messages. Never raises for bad input: every refused
    message or reading is a :class:`Rejection`. With ``dedup``, a batch it has seen (or one
    seen earlier in this window) is not decoded, only listed in ``duplicates``."""
    # The cyclic GC stays on: a valid batch decodes to structs it does not track (json_structs),
    # so it has nothing to traverse per reading. (Parsed to dicts, it used to cost up to 15 %,
    # and decoding switched the collector off process-wide: docs/adr/0026.)
    adm = admit_all(messages, index, dedup)
    rejections, statuses = adm.rejections, adm.statuses
    duplicates, keys = adm.duplicates, adm.keys
    structs, general, binaries = adm.structs, adm.general, adm.binaries
    segments: list[Segment] = []
    if adm.native is not None and adm.native.n:
        segments.append(struct_segment(adm.native, messages))
    if structs.n:
        segments.append(struct_segment(structs, messages))
    if adm.singles.readings:
        segments.append(adm.singles.segment(index, messages))
    if general:
        segments.append(json_segment(general, index))
    if binaries:
        segments.append(binary_segment(binaries, index))
    if not segments:
        return DecodedWindow(
            readings=empty_readings(),
            rejections=rejections,
            statuses=statuses,
            duplicates=duplicates,
            batch_keys=keys,
        )
    cols = concat([s.cols for s in segments])
    message = np.concatenate([s.message for s in segments])
    position = np.concatenate([s.index for s in segments])
    gateway = np.concatenate([s.gateway for s in segments])
    seg_starts = np.cumsum([0] + [len(s.message) for s in segments])
    code = judge(cols, gateway, index, now_ms)
    readings = Readings(
        message=message,
        index=position,
        sensor=cols.sensor,
        kind=cols.kind,
        ts=cols.ts,
        seq=cols.seq,
        values=cols.values,
    )
    order: npt.NDArray[np.intp] | None = None
    if len(segments) > 1 and np.any(message[1:] < message[:-1]):
        # Forms were decoded in groups; restore arrival order (state breaks ties by it).
        order = np.argsort(message, kind="stable")
        readings = readings.take(order)
        code = code[order]
    refused = np.flatnonzero(code)
    for row in refused.tolist():
        origin = int(order[row]) if order is not None else row
        k = int(np.searchsorted(seg_starts, origin, side="right")) - 1
        why = REASONS[int(code[row]) - 1]
        at = int(readings.index[row])
        detail = reading_detail(segments[k].source(origin - int(seg_starts[k])), why, now_ms)
        rejections.append(
            Rejection(int(readings.message[row]), why, detail, None if at < 0 else at)
        )
    return DecodedWindow(
        readings=readings.take(code == 0) if len(refused) else readings,
        rejections=rejections,
        statuses=statuses,
        duplicates=duplicates,
        batch_keys=keys,
    )

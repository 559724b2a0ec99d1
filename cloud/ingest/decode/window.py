"""Decode a flush window of MQTT messages into validated numpy columns.

Per message: the envelope (``envelope``); per reading the only Python work is pulling the
columns out of the parsed JSON (``json_columns``) or the binary batch (``binary_columns``);
every rule of ``contract.payload`` is then applied to the whole window's columns at once
(``rules``), by the precedence written there. Reading-level faults reject only that reading.
"""

from __future__ import annotations

import gc
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from cloud.ingest.decode.envelope import AdmittedBinary, AdmittedJson, admit
from cloud.ingest.decode.json_columns import PlainJson
from cloud.ingest.decode.rules import judge, reading_detail
from cloud.ingest.decode.segments import (
    Segment,
    binary_segment,
    concat,
    json_segment,
    plain_segment,
)
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

    rejections: list[Rejection] = field(default_factory=list)
    statuses: list[StatusUpdate] = field(default_factory=list)
    plain: PlainJson = field(default_factory=PlainJson)
    general: list[tuple[int, AdmittedJson]] = field(default_factory=list)
    binaries: list[tuple[int, AdmittedBinary]] = field(default_factory=list)
    duplicates: list[int] = field(default_factory=list)
    keys: list[tuple[int, int, int]] = field(default_factory=list)


def admit_all(messages: Sequence[Message], index: CityIndex, dedup: BatchDedup | None) -> Admitted:
    out = Admitted()
    in_window: set[tuple[int, int, int]] = set()
    for m, msg in enumerate(messages):
        got = admit(m, msg, index)
        if isinstance(got, Rejection):
            out.rejections.append(got)
            continue
        if isinstance(got, StatusUpdate):
            out.statuses.append(got)
            continue
        if got is None:
            continue
        if isinstance(got, AdmittedBinary) or got.is_batch:
            seq = got.batch.seq if isinstance(got, AdmittedBinary) else got.seq
            key = (got.gateway, seq, content_fingerprint(msg.payload))
            if key in in_window or (dedup is not None and dedup.seen(*key)):
                out.duplicates.append(m)
                continue
            in_window.add(key)
            out.keys.append(key)
        if isinstance(got, AdmittedBinary):
            out.binaries.append((m, got))
        elif not (got.plain and out.plain.add(m, got)):
            out.general.append((m, got))
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
    # Decoding allocates millions of small acyclic objects (parsed JSON, tuples); the cyclic
    # GC would traverse them again and again for nothing. Process-wide for the length of one
    # decode, which no other thread of the ingester needs collected. Measured by
    # `bench.ingest_decode --gc-on` (and in CPU time on a loaded machine, docs/adr/0022):
    # the collector left on costs 0-15 % of the decode (JSON 1000/msg: 0.35 vs 0.29-0.33 M
    # readings/s per CPU second).
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        return decode_gc_on(messages, index, now_ms, dedup)
    finally:
        if gc_was_enabled:
            gc.enable()


def decode_gc_on(
    messages: Sequence[Message],
    index: CityIndex,
    now_ms: int,
    dedup: BatchDedup | None = None,
) -> DecodedWindow:
    """:func:`decode_window` without switching the cyclic GC off (``bench.ingest_decode
    --gc-on`` measures what that switch saves)."""
    adm = admit_all(messages, index, dedup)
    rejections, statuses = adm.rejections, adm.statuses
    duplicates, keys = adm.duplicates, adm.keys
    plain, general, binaries = adm.plain, adm.general, adm.binaries
    segments: list[Segment] = []
    if plain.n:
        segments.append(plain_segment(plain, messages, index))
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
    for row in np.flatnonzero(code).tolist():
        origin = int(order[row]) if order is not None else row
        k = int(np.searchsorted(seg_starts, origin, side="right")) - 1
        why = REASONS[int(code[row]) - 1]
        at = int(readings.index[row])
        detail = reading_detail(segments[k].source(origin - int(seg_starts[k])), why, now_ms)
        rejections.append(
            Rejection(int(readings.message[row]), why, detail, None if at < 0 else at)
        )
    return DecodedWindow(
        readings=readings.take(code == 0),
        rejections=rejections,
        statuses=statuses,
        duplicates=duplicates,
        batch_keys=keys,
    )

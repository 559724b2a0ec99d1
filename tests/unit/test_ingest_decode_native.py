"""The native column decoder (cloud.ingest.decode.json_native, _jsoncols.c) changes how fast a
JSON batch is decoded, never what is decided: on any bytes, decode_window gives exactly what it
gives with the native decoder off (the msgspec path) and what the general path alone gives;
the native decoder never takes what msgspec refuses, and what it takes has msgspec's columns.
It is built and used here, and its C code survives untrusted bytes and misuse."""

from __future__ import annotations

import logging
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from city import Registry
from cloud.ingest import CityIndex, decode_window
from cloud.ingest.decode import DecodedWindow, envelope, json_native
from cloud.ingest.decode.json_native import ENVELOPE_KEYS, READING_KEYS, NativeColumns
from cloud.ingest.decode.json_structs import WireBatch, decode_batch
from cloud.ingest.decode.struct_columns import StructColumns
from cloud.ingest.topology import MAX_FIELDS
from contract import KIND_FIELDS, Batch, Reading, SensorKind
from contract.payload import MAX_PAYLOAD_BYTES, MAX_READINGS_PER_BATCH
from tests.ingest_decode_support import (
    JSON_EDITS,
    NOW,
    TOPIC,
    bed,
    general_only,
    json_edit,
    msg,
    mutated_batch,
    outcome,
    plain_readings,
)

_jsoncols: Any = json_native._jsoncols
ONE_BED = orjson.dumps({"v": 1, "gw": "gw-kariadi", "seq": 1, "sent": NOW, "readings": [bed()]})
#: whitespace a producer may put between tokens (JSON's four), or none
_SPACE = st.sampled_from(["", "", "", " ", "\n", "\t", "\r\n  "])


def native_off(messages: list[Any], index: CityIndex) -> DecodedWindow:
    """decode_window with the module switch off: the msgspec path, as without a compiler."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(json_native, "ENABLED", False)
        return decode_window(messages, index, NOW)


def written(draw: st.DrawFn, value: Any) -> str:
    """``value`` as JSON the way another producer may write it: keys in any order and
    whitespace between any two tokens."""
    sp = draw(_SPACE)
    if isinstance(value, dict):
        keys = draw(st.permutations(list(value)))
        inner = ",".join(
            f"{sp}{orjson.dumps(k).decode()}{sp}:{written(draw, value[k])}" for k in keys
        )
        return f"{sp}{{{inner}{sp}}}"
    if isinstance(value, list):
        return f"{sp}[{','.join(written(draw, v) for v in value)}{sp}]"
    return f"{sp}{orjson.dumps(value).decode()}{draw(_SPACE)}"


@st.composite
def reshaped_batch(draw: st.DrawFn) -> bytes:
    """A batch as any producer may write it (keys in any order, whitespace, clock or not,
    ``clock_offset_ms`` null or an integer, seq up to int64), readings that may break any rule
    (``plain_readings``), mostly with their own kind's value keys so the native path takes
    them; then edits: odd numbers, keys renamed, repeated or dropped, cuts, escapes, non-ASCII,
    a leading zero, ``-0``."""
    readings = draw(st.lists(plain_readings(), min_size=1, max_size=5))
    if draw(st.integers(0, 3)):
        for r in readings:
            fields = KIND_FIELDS[SensorKind(r["kind"])]
            r["values"] = dict(zip(fields, [*r["values"].values(), 0, 0], strict=False))
    doc: dict[str, Any] = {
        "v": 1,
        "gw": "gw-kariadi",
        "seq": draw(st.sampled_from([0, 1, 2**63 - 1])),
        "sent": draw(st.sampled_from([NOW, -(2**63), 2**63 - 1])),
        "readings": readings,
    }
    if draw(st.booleans()):
        doc["clock_offset_ms"] = draw(st.sampled_from([None, -3, 0, 2**63 - 1]))
    raw = written(draw, doc).encode()
    for _ in range(draw(st.sampled_from([0, 0, 1, 2]))):
        edit = draw(st.sampled_from([*JSON_EDITS, "text"]))
        if edit == "text":
            old, new = draw(
                st.sampled_from(
                    [
                        (b"kariadi", rb"kari\u0061di"),
                        (b"kariadi", b"kar\xc3\xa9"),
                        (b"kariadi", b"kari\x7fdi"),
                        (b"kariadi", b"kari\x01di"),
                        (b":7", b":07"),
                        (b":0", b":-0"),
                        (b'"sensor"', b'"sensor" '),
                        (b'"bed"', b'"Bed"'),
                        (b'"sensor"', b'"clock"'),
                        (b'"gateway"', b'"GATEWAY"'),
                        (b"}", b"},"),
                        (b"]", b"]]"),
                    ]
                )
            )
            raw = raw.replace(old, new, 1)
        else:
            raw = json_edit(draw, raw, edit, [b'"bogus":', b'"kind":', b'"values":', b'"v":'])
    return raw


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payloads=st.lists(st.one_of(reshaped_batch(), mutated_batch()), min_size=1, max_size=3))
@example(payloads=[orjson.dumps({"v": 1, "gw": "gw-kariadi", "seq": 1, "sent": NOW,
                                 "readings": [bed()] * (MAX_READINGS_PER_BATCH + 1)})])  # fmt: skip
@example(payloads=[ONE_BED.replace(b'"v":1', b'"v":2')])
@example(payloads=[ONE_BED.replace(b'"kind"', b'"kind":"crowd","kind"')])  # a repeated key
@example(payloads=[ONE_BED.replace(b"kariadi-icu", rb"kariadi\u002dicu")])  # an escape
def test_native_decoder_decides_exactly_like_the_msgspec_and_general_paths(
    city: Registry, payloads: list[bytes]
) -> None:
    """For any bytes, every refusal with its reason, detail and position, every stored
    column, duplicates and dedup keys are the same with the native decoder, without it, and on
    the general path alone."""
    index = CityIndex.from_registry(city)
    messages = [msg(TOPIC, p, i) for i, p in enumerate(payloads)]
    got = outcome(decode_window(messages, index, NOW))
    assert got == outcome(native_off(messages, index))
    assert got == outcome(general_only(messages, index, fast_path="decode_batch"))


def native_columns_of(payload: bytes, index: CityIndex) -> tuple[Any, ...] | None:
    """(gw, seq, and the columns) as the native decoder writes them, None if not its."""
    cols = NativeColumns(index=index, messages=[msg(TOPIC, payload)])
    got = cols.decode(payload)
    if got is None:
        return None
    cols.add(0, 0, got.n)
    c = cols.columns()
    return (got.gw, got.seq, c.sensor.tolist(), c.kind.tolist(), c.ts.tolist(),
            c.seq.tolist(), c.values.tolist())  # fmt: skip


def struct_columns_of(payload: bytes, index: CityIndex) -> tuple[Any, ...] | None:
    """The same of msgspec's structs and ``StructColumns``; None if either refuses."""
    wire = decode_batch(payload)
    if wire is None:
        return None
    cols = StructColumns(index=index)
    cols.add(0, 0, wire.readings)
    cols.finish()
    if cols.refused:
        return None
    c = cols.columns()
    return (wire.gw, wire.seq, c.sensor.tolist(), c.kind.tolist(), c.ts.tolist(),
            c.seq.tolist(), c.values.tolist())  # fmt: skip


@st.composite
def fuzzed(draw: st.DrawFn) -> bytes:
    """Random bytes, or a batch with bytes flipped, inserted or removed, or cut short."""
    if draw(st.integers(0, 4)) == 0:
        return draw(st.binary(max_size=200))
    raw = bytearray(draw(reshaped_batch()))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, max(len(raw) - 1, 0)))
        how = draw(st.sampled_from(["flip", "insert", "remove", "cut"]))
        byte = draw(st.sampled_from([*b'{}[]",:-.0159eE \\\x00\xff', draw(st.integers(0, 255))]))
        if how == "flip" and raw:
            raw[at] = byte
        elif how == "insert":
            raw.insert(at, byte)
        elif how == "remove" and raw:
            del raw[at]
        else:
            del raw[at:]
    return bytes(raw)


@settings(max_examples=1500, deadline=None)
@given(payload=st.one_of(reshaped_batch(), fuzzed()))
def test_native_decoder_never_takes_what_msgspec_refuses_and_writes_its_columns(
    city: Registry, payload: bytes
) -> None:
    """On any bytes the native decoder returns (never crashes); what it takes, msgspec takes
    too, with the same gateway, batch seq and, per reading, sensor position, kind code, ts,
    seq and values in wire order clipped as ``struct_columns`` clips them."""
    index = CityIndex.from_registry(city)
    native = native_columns_of(payload, index)
    if native is not None:
        assert native == struct_columns_of(payload, index)


@st.composite
def sensor_walk(draw: st.DrawFn, ids: list[str]) -> list[str]:
    """Sensor ids as gateways send them: runs in registry order (the native decoder's guess is
    the position after the last), jumps anywhere, and ids that are not in the registry but
    share bytes with the guessed one (a prefix of it, it plus a byte) or with none."""
    out: list[str] = []
    at = draw(st.integers(0, len(ids) - 1))
    for _ in range(draw(st.integers(1, 30))):
        how = draw(st.sampled_from(["next", "next", "next", "jump", "prefix", "longer", "other"]))
        if how == "next":
            at = (at + 1) % len(ids)
            out.append(ids[at])
        elif how == "jump":
            at = draw(st.integers(0, len(ids) - 1))
            out.append(ids[at])
        elif how == "prefix":
            out.append(ids[(at + 1) % len(ids)][:-1])
        elif how == "longer":
            out.append(ids[(at + 1) % len(ids)] + draw(st.sampled_from(["x", "0", "-"])))
        else:
            out.append("nope")
    return out


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_sensor_positions_are_the_registrys_whether_the_next_position_guess_holds_or_not(
    city: Registry, data: st.DataObject
) -> None:
    """The C decoder guesses each reading's sensor is the one after the last in registry order;
    whatever the order, every row's position is the registry's (-1: unknown), as msgspec's."""
    index = CityIndex.from_registry(city)
    ids = sorted(index.sensor_pos, key=index.sensor_pos.__getitem__)
    walk = data.draw(sensor_walk(ids))
    payload = orjson.dumps({"v": 1, "gw": "gw-kariadi", "seq": 1, "sent": NOW,
                            "readings": [bed(s, seq=i) for i, s in enumerate(walk)]})  # fmt: skip
    native = native_columns_of(payload, index)
    assert native is not None
    assert native[2] == [index.sensor_pos.get(s, -1) for s in walk]
    assert native == struct_columns_of(payload, index)


def test_twenty_thousand_random_byte_edits_of_a_valid_batch_never_crash_or_overreach(
    city: Registry,
) -> None:
    """20 000 copies of a valid 20-reading batch, each with 1-3 random bytes overwritten, one
    cut short or a random byte inserted (a seeded generator): the native decoder returns for
    each; each it takes msgspec takes with the same columns."""
    index = CityIndex.from_registry(city)
    good = orjson.dumps({"v": 1, "gw": "gw-kariadi", "seq": 1, "sent": NOW,
                         "readings": [bed(seq=i, ts=NOW - i) for i in range(20)]})  # fmt: skip
    rng = random.Random(14)
    taken = 0
    for _ in range(20_000):
        raw = bytearray(good)
        for _ in range(rng.randint(1, 3)):
            raw[rng.randrange(len(raw))] = rng.randrange(256)
        if rng.random() < 0.2:
            del raw[rng.randrange(len(raw)) :]
        native = native_columns_of(bytes(raw), index)
        if native is not None:
            taken += 1
            assert native == struct_columns_of(bytes(raw), index)
    # some edits keep the batch valid (a digit for a digit): the comparison above did run
    assert taken > 100


def test_the_native_decoder_is_built_and_takes_well_formed_batches(
    city: Registry, caplog: pytest.LogCaptureFixture
) -> None:
    """In this environment the extension is built (pip install -e builds it in place) and
    decode_window takes a well-formed batch without msgspec; the decoder in use is logged
    once."""
    assert json_native.ENABLED
    assert json_native._jsoncols is not None
    assert json_native._jsoncols.__file__.endswith(".so")
    index = CityIndex.from_registry(city)
    batch = {"v": 1, "gw": "gw-kariadi", "seq": 1, "sent": NOW,
             "readings": [bed(seq=i) for i in range(10)]}  # fmt: skip

    def no_msgspec(payload: bytes) -> None:
        raise AssertionError("the msgspec path was taken")

    with pytest.MonkeyPatch.context() as mp, caplog.at_level(logging.INFO):
        mp.setattr(envelope, "decode_batch", no_msgspec)
        mp.setattr(json_native, "_logged", False)
        out = decode_window([msg(TOPIC, batch)], index, NOW)
        decode_window([msg(TOPIC, batch)], index, NOW)
    assert out.readings.seq.tolist() == list(range(10))
    assert out.rejections == []
    assert [r.getMessage() for r in caplog.records if r.name == json_native.__name__] == [
        "JSON batches are decoded by native (_jsoncols)"
    ]


def test_the_native_keys_are_the_contract_models_fields() -> None:
    """The keys the C decoder is configured with are contract.Batch's and contract.Reading's,
    the envelope's in json_structs' order (their roles are positional in C)."""
    assert set(ENVELOPE_KEYS) == set(Batch.model_fields)
    assert WireBatch.__struct_fields__ == ENVELOPE_KEYS
    assert set(READING_KEYS) == set(Reading.model_fields)


def buffers(rows: int) -> list[Any]:
    return [np.full(rows, -7, np.int32), np.full(rows, -7, np.int8), np.full(rows, -7, np.int64),
            np.full(rows, -7, np.int64), np.full((rows, MAX_FIELDS), -7, np.int64)]  # fmt: skip


def test_the_c_decoder_writes_no_row_past_the_buffers_and_refuses_misuse(city: Registry) -> None:
    """A batch of 3 readings into buffers of 2 rows is not taken, and the rows past them
    (views of larger arrays) are untouched; a start past the buffers, buffers of the wrong
    item size, a payload that is not bytes, a table of non-str ids and a second configure
    raise; a sparse table still finds its ids; an oversize payload, too many readings and
    100 000 nested brackets are not taken."""
    table = json_native.native_table(CityIndex.from_registry(city))
    three = orjson.dumps({"v": 1, "gw": "gw-kariadi", "seq": 1, "sent": NOW,
                          "readings": [bed()] * 3})  # fmt: skip
    big = buffers(3)
    assert _jsoncols.decode(three, table, *(b[:2] for b in big), 0) is None
    assert big[0][2] == -7
    assert big[4][2].tolist() == [-7] * MAX_FIELDS
    assert _jsoncols.decode(three, table, *(b[:3] for b in big), 1) is None
    assert _jsoncols.decode(three, table, *big, 0) == ("gw-kariadi", 1, 3)
    with pytest.raises(ValueError, match="start outside"):
        _jsoncols.decode(three, table, *big, 4)
    with pytest.raises(ValueError, match="sensor: items of 4 bytes"):
        _jsoncols.decode(three, table, big[2], *big[1:], 0)
    with pytest.raises(TypeError):
        _jsoncols.decode(bytearray(three), table, *big, 0)
    with pytest.raises(TypeError):
        _jsoncols.Table({1: 2})
    with pytest.raises(ValueError, match="int32"):
        _jsoncols.Table({"a": -1})
    # a sparse table (positions far beyond its size: no position-order guesses) still finds
    assert _jsoncols.Table({"a": 2**31 - 2, "b": 0}).get("a") == 2**31 - 2
    with pytest.raises(RuntimeError, match="once"):
        _jsoncols.configure(envelope_keys=ENVELOPE_KEYS, reading_keys=READING_KEYS,
                            kinds=[], clocks=(), width=1, max_readings=1, max_payload=1,
                            version=1, lo=0, hi=0)  # fmt: skip
    rows = MAX_READINGS_PER_BATCH + 2
    many = buffers(rows)
    too_many = {"v": 1, "gw": "gw-kariadi", "seq": 1, "sent": NOW,
                "readings": [bed()] * (MAX_READINGS_PER_BATCH + 1)}  # fmt: skip
    for payload in (
        orjson.dumps(too_many),
        three[:-1] + b" " * (MAX_PAYLOAD_BYTES - len(three) + 1) + b"}",
        b"[" * 100_000,
        b'{"v":1,"readings":' + b"[" * 100_000,
    ):
        assert _jsoncols.decode(payload, table, *many, 0) is None
    assert (
        table.get("bed-kariadi-icu") == CityIndex.from_registry(city).sensor_pos["bed-kariadi-icu"]
    )
    assert table.get("nope") == -1


_WITHOUT_EXTENSION = """
import sys
sys.modules["cloud.ingest.decode._jsoncols"] = None  # its import fails, as with no compiler
import orjson
from city import load_registry
from city.registry import DEMO_CITY
from cloud.ingest import CityIndex, Message, decode_window
from cloud.ingest.decode import json_native
reading = {"sensor": "bed-kariadi-icu", "kind": "bed", "ts": 1_795_000_000_000, "seq": 7,
           "values": {"capacity": 24, "occupied": 20, "suspect": 3, "confirmed": 5, "waiting": 2}}
batch = {"v": 1, "gw": "gw-kariadi", "seq": 1, "sent": 0, "readings": [reading] * 3}
topic = "pantau/v1/rs-kariadi/gw-kariadi/readings"
out = decode_window([Message(topic, orjson.dumps(batch), 0)],
                    CityIndex.from_registry(load_registry(DEMO_CITY)), 1_795_000_000_000)
print(json_native.ENABLED, json_native.DECODER, len(out.readings), len(out.rejections))
"""


def test_without_the_extension_the_ingester_decodes_with_msgspec() -> None:
    """An install without a C compiler has no ``_jsoncols``: in a fresh interpreter whose
    import of it fails, ``json_native`` still imports, is switched off, names msgspec as the
    decoder, and decode_window stores a batch's 3 readings."""
    done = subprocess.run(
        [sys.executable, "-c", _WITHOUT_EXTENSION],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert done.stdout.split("\n")[0] == ("False msgspec (the native decoder is not built) 3 0")

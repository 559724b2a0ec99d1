"""The struct decoder (cloud.ingest.decode.json_structs) changes how fast a JSON batch is
decoded, never what is decided: on any bytes, decode_window gives exactly what the general
path alone gives (the path test_ingest_decode.py proves equal to the contract)."""

from __future__ import annotations

import gc

import orjson
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from city import Registry
from cloud.ingest import CityIndex, decode_window
from cloud.ingest.decode import struct_columns
from cloud.ingest.decode.json_structs import KIND_OF_TYPE, WireBatch, decode_batch
from contract import KIND_CODES, KIND_FIELDS, Batch, Reading
from contract.payload import MAX_READINGS_PER_BATCH
from tests.ingest_decode_support import (
    NOW,
    TOPIC,
    bed,
    general_only,
    msg,
    mutated_batch,
    outcome,
)

#: these tests are about the msgspec struct path, the one an install without a C compiler uses
pytestmark = pytest.mark.usefixtures("msgspec_path")


@settings(max_examples=400, deadline=None)
@given(
    payloads=st.lists(mutated_batch(), min_size=1, max_size=3),
    chunk=st.sampled_from([1, 2, struct_columns.CHUNK]),
)
@example(payloads=[orjson.dumps({"v": 1, "gw": "gw-kariadi", "seq": 1, "sent": NOW,
                                 "readings": [bed()] * (MAX_READINGS_PER_BATCH + 1)})],
         chunk=struct_columns.CHUNK)  # fmt: skip
@example(payloads=[orjson.dumps({"v": 1, "gw": "gw-johar", "seq": 1, "sent": NOW,
                                 "readings": [bed()]})], chunk=struct_columns.CHUNK)  # fmt: skip
def test_struct_decoder_decides_exactly_like_the_general_path(
    city: Registry, payloads: list[bytes], chunk: int
) -> None:
    """For any bytes (valid batches, mutated ones, broken JSON), every refusal with its reason,
    detail and position, every stored column, duplicates and dedup keys are the same with and
    without the struct decoder, however the struct columns are chunked (a chunk per message
    or one spanning two, which a message the columns refuse must not upset)."""
    index = CityIndex.from_registry(city)
    messages = [msg(TOPIC, p, i) for i, p in enumerate(payloads)]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(struct_columns, "CHUNK", chunk)
        got = decode_window(messages, index, NOW)
    assert outcome(got) == outcome(general_only(messages, index, fast_path="decode_batch"))


def test_struct_types_have_the_contract_models_fields() -> None:
    """A field added to or renamed in contract.Batch or contract.Reading must be typed in
    json_structs too (else every batch would silently take the slow path)."""
    assert set(WireBatch.__struct_fields__) == set(Batch.model_fields)
    for struct, code in KIND_OF_TYPE.items():
        config = struct.__struct_config__
        assert {*struct.__struct_fields__, config.tag_field} == set(Reading.model_fields)
        kind = next(k for k, c in KIND_CODES.items() if c == code)
        assert config.tag == kind.value
        values = struct.__annotations__["values"]
        assert values.__struct_fields__ == KIND_FIELDS[kind]


def test_a_well_formed_batch_takes_the_struct_path_and_a_faulty_one_does_not() -> None:
    """decode_batch accepts what needs no general path (a bad seq or an unknown sensor is
    judged later, on columns; a reading integer beyond int64 is sent on by the columns,
    tests/unit/test_ingest_struct_columns.py) and refuses the rest whole."""
    good = {"v": 1, "gw": "gw-kariadi", "seq": 1, "sent": NOW, "readings": [bed(seq=-1)]}
    got = decode_batch(orjson.dumps(good))
    assert got is not None
    assert [(type(r).__name__, r.seq) for r in got.readings] == [("BedReading", -1)]
    for bad in (
        {**good, "v": True},
        {**good, "readings": [bed(extra=1)]},
        {**good, "sent": 2**63},
        {**good, "readings": [bed(values={"capacity": 1})]},
        {**good, "readings": [bed(kind="tide")]},
        {**good, "seq": -1},
    ):
        assert decode_batch(orjson.dumps(bad)) is None, bad


def test_a_decoded_batch_gives_the_cyclic_gc_nothing_to_track_per_reading() -> None:
    """Of 1 000 readings decoded to structs, the GC tracks none (nor their values); parsed to
    dicts it tracks all 1 000 reading dicts, which is what made decoding switch it off."""
    payload = orjson.dumps(
        {"v": 1, "gw": "gw-kariadi", "seq": 1, "sent": NOW, "readings": [bed()] * 1000}
    )
    batch = decode_batch(payload)
    assert batch is not None
    assert len(batch.readings) == 1000
    assert sum(gc.is_tracked(r) or gc.is_tracked(r.values) for r in batch.readings) == 0
    assert sum(map(gc.is_tracked, orjson.loads(payload)["readings"])) == 1000


def test_decoding_never_switches_the_process_wide_gc_off(city: Registry) -> None:
    """Issue 14: decode_window leaves the collector alone (other threads of the ingester keep
    theirs); valid batches give it nothing to do per reading (test above)."""
    index = CityIndex.from_registry(city)
    batch = {"v": 1, "gw": "gw-kariadi", "seq": 1, "sent": NOW, "readings": [bed()] * 10}
    switched: list[str] = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(gc, "disable", lambda: switched.append("disable"))
        out = decode_window([msg(TOPIC, batch)], index, NOW)
    assert len(out.readings) == 10
    assert switched == []

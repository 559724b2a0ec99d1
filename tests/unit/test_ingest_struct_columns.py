"""The struct path's column extraction (cloud.ingest.decode.struct_columns): its own copy of
the registry's sensor table, and columns that do not depend on how readings are chunked."""

from __future__ import annotations

import gc
import json
from typing import Any

import orjson
import pytest

from city import Registry
from cloud.ingest import CityIndex, decode_window
from cloud.ingest.decode import envelope, struct_columns
from cloud.ingest.decode.json_structs import decode_batch
from cloud.ingest.decode.struct_columns import sensor_table
from tests.ingest_decode_support import NOW, TOPIC, bed, msg

#: these tests are about the msgspec struct path, the one an install without a C compiler uses
pytestmark = pytest.mark.usefixtures("msgspec_path")


def test_the_sensor_table_maps_every_id_like_the_index_with_keys_of_its_own(
    city: Registry,
) -> None:
    """Same ids, same positions, but key strings allocated afresh (not the registry's), built
    once per index and dropped with it."""
    index = CityIndex.from_registry(city)
    table = sensor_table(index)
    assert table == index.sensor_pos
    assert len(table) == len(city.doc.sensors)
    own = {id(k) for k in table}
    assert not own & {id(k) for k in index.sensor_pos}
    assert sensor_table(index) is table
    other = CityIndex.from_registry(city)
    assert sensor_table(other) is not table
    gc.collect()  # indexes earlier tests left for the collector go first, not in the count
    tables = len(sensor_table)
    del index
    gc.collect()
    assert len(sensor_table) == tables - 1


@pytest.mark.parametrize("chunk", [1, 3, 256, 4096])
def test_columns_are_the_same_whatever_the_chunk(
    city: Registry, chunk: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Batches of 1, 2 and 5 readings (one of an unknown sensor, one out of range) give the
    same rows and verdicts taken one reading per chunk or all in one."""
    index = CityIndex.from_registry(city)
    sizes = [1, 2, 5]
    docs: list[dict[str, Any]] = [
        {"v": 1, "gw": "gw-kariadi", "seq": s, "sent": NOW,
         "readings": [bed(seq=i, ts=NOW - 1000 + i) for i in range(n)]}
        for s, n in enumerate(sizes)
    ]  # fmt: skip
    docs[1]["readings"][1] = bed(sensor="bed-nowhere", seq=1)
    docs[2]["readings"][4] = bed(seq=4, values={**bed()["values"], "capacity": 10**12})
    messages = [msg(TOPIC, orjson.dumps(d), i) for i, d in enumerate(docs)]
    monkeypatch.setattr(struct_columns, "CHUNK", chunk)
    out = decode_window(messages, index, NOW)
    assert [(r.message, r.index, r.reason.name) for r in out.rejections] == [
        (1, 1, "UNKNOWN_SENSOR"),
        (2, 4, "SCHEMA_VIOLATION"),
    ]
    assert out.readings.message.tolist() == [0, 1, 2, 2, 2, 2]
    assert out.readings.index.tolist() == [0, 0, 0, 1, 2, 3]
    assert out.readings.seq.tolist() == [0, 0, 0, 1, 2, 3]
    assert out.readings.values.tolist() == [[24, 20, 3, 5, 2]] * 6


@pytest.mark.parametrize("chunk", [1, 4096])
def test_a_reading_integer_beyond_int64_sends_its_message_whole_to_the_general_path(
    city: Registry, chunk: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """msgspec does not bound reading integers; the columns cannot hold 2**63 (ts), 2**64
    (a value) or -2**63 - 1 (seq), so those messages are judged by the general path exactly as
    it judges them alone, and the valid messages around them keep the struct path."""
    index = CityIndex.from_registry(city)
    odd = [
        bed(ts=2**63),
        bed(values={**bed()["values"], "capacity": 2**64}),
        bed(seq=-(2**63) - 1),
    ]
    docs = [
        {"v": 1, "gw": "gw-kariadi", "seq": s, "sent": NOW, "readings": [bed(seq=s), *r]}
        for s, r in enumerate([[], [odd[0]], [], [odd[1], odd[2]], []])
    ]
    # the standard library writes integers of any size (orjson refuses past 64 bits)
    messages = [msg(TOPIC, json.dumps(d).encode(), i) for i, d in enumerate(docs)]
    assert all(decode_batch(m.payload) is not None for m in messages)
    monkeypatch.setattr(struct_columns, "CHUNK", chunk)
    out = decode_window(messages, index, NOW)
    assert [(r.message, r.index, r.reason.name) for r in out.rejections] == [
        (1, 1, "FUTURE_TIMESTAMP"),
        (3, 1, "SCHEMA_VIOLATION"),
        (3, 2, "SCHEMA_VIOLATION"),
    ]
    assert out.readings.message.tolist() == [0, 1, 2, 3, 4]
    assert out.readings.seq.tolist() == [0, 1, 2, 3, 4]
    assert [s for _, s, _ in out.batch_keys] == [0, 1, 2, 3, 4]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(envelope, "decode_batch", lambda payload: None)
        alone = decode_window(messages, index, NOW)
    assert [(r.message, r.index, r.reason, r.detail) for r in out.rejections] == [
        (r.message, r.index, r.reason, r.detail) for r in alone.rejections
    ]
    assert out.readings.ts.tolist() == alone.readings.ts.tolist()

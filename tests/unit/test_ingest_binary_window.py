"""A window's binary batches become the same columns, and the same verdicts, through the
window-wide fast path (``binary_window_columns``: sensor tables resolved once, columns filled in
place, registry rules judged per table) as through the per-batch reference (``binary_columns``
concatenated, judged reading by reading by the full precedence)."""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from city import Registry
from cloud.ingest.decode.binary_columns import binary_columns, binary_window_columns
from cloud.ingest.decode.rules import _by_precedence, judge
from cloud.ingest.decode.segments import concat
from cloud.ingest.topology import CityIndex
from contract import decode_binary_batch, encode_binary_batch
from contract.binary import VALUE_WIDTH
from contract.payload import MAX_COUNT
from tests.ingest_decode_support import KARIADI_SENSORS, NOW, timestamps

#: ids of this gateway, of other gateways, and none at all
SENSOR_POOL = [*KARIADI_SENSORS, "crowd-johar-utara", "bed-kariadi-icu-2"]
GATEWAYS = ["gw-kariadi", "gw-johar", "gw-mpp"]
value = st.one_of(
    st.integers(0, 40),
    st.integers(0, 40),
    st.sampled_from([-(2**63), -(2**31), -1, MAX_COUNT, MAX_COUNT + 1, 2**31 - 1, 2**63 - 1]),
)


@st.composite
def batch_payloads(draw: st.DrawFn) -> tuple[str, bytes]:
    """A binary batch of any gateway, whose readings may break any rule the format can carry:
    unknown or foreign sensors, unknown or wrong kinds, values out of range, non-zero padding,
    bad clocks, times out of range, negative seqs (wide columns)."""
    gw = draw(st.sampled_from(GATEWAYS))
    sensors = draw(st.lists(st.sampled_from(SENSOR_POOL), min_size=1, max_size=5, unique=True))
    kinds = [draw(st.sampled_from([1, 1, 2, 3, 0, 7])) for _ in sensors]
    n = draw(st.integers(1, 25))
    # small counts, each column zero or not on its own (padding read past any kind's fields)
    small = st.one_of(st.just(0), st.integers(1, 40))
    cell = value if draw(st.booleans()) else small
    rows = [[draw(cell) for _ in range(VALUE_WIDTH)] for _ in range(n)]
    payload = encode_binary_batch(
        gw=gw,
        seq=draw(st.integers(0, 2**40)),
        sent=NOW,
        sensors=sensors,
        kinds=kinds,
        sensor=[draw(st.integers(0, len(sensors) - 1)) for _ in range(n)],
        ts=[draw(timestamps) for _ in range(n)],
        reading_seq=[draw(st.integers(-2, 2**33)) for _ in range(n)],
        values=rows,
        clock=[draw(st.sampled_from([0, 0, 1, 2])) for _ in range(n)],
        wide=draw(st.booleans()),
    )
    return gw, payload


def _fields(c: Any) -> dict[str, Any]:
    names = ("sensor", "kind", "ts", "seq", "values", "keys_bad", "shape_bad", "field_ok")
    return {k: None if getattr(c, k) is None else getattr(c, k).tolist() for k in names}


@settings(max_examples=300, deadline=None)
@given(
    batches=st.lists(batch_payloads(), min_size=1, max_size=5),
    sender=st.lists(st.sampled_from(GATEWAYS), min_size=5, max_size=5),
)
def test_window_columns_and_verdicts_equal_the_per_batch_reference(
    city: Registry, batches: list[tuple[str, bytes]], sender: list[str]
) -> None:
    """Every column and every reason code of the fast path equals the reference's, for any
    mix of batches (a table seen again is taken from the cache, also by another gateway)."""
    index = CityIndex.from_registry(city)
    decoded = [decode_binary_batch(p) for _, p in batches]
    # mostly the batch's own gateway; sometimes another (the table's registry rule changes)
    gateways = [index.gateway_pos[gw if i % 2 else sender[i]] for i, (gw, _) in enumerate(batches)]
    fast = binary_window_columns(list(zip(decoded, gateways, strict=True)), index)
    ref = concat([binary_columns(b, index) for b in decoded])
    assert _fields(fast) == _fields(ref)
    gateway = np.repeat(np.array(gateways, np.int32), [len(b) for b in decoded])
    known = ref.sensor >= 0
    at = np.where(known, ref.sensor, 0)
    registry_ok = (
        known
        & (ref.kind != 0)
        & (index.sensor_gateway[at] == gateway)
        & (index.sensor_kind[at] == ref.kind)
    )
    assert fast.registry_ok is not None
    assert fast.registry_ok.tolist() == registry_ok.tolist()
    expected = _by_precedence(ref, gateway, index, NOW).tolist()
    assert judge(fast, gateway, index, NOW).tolist() == expected
    assert judge(ref, gateway, index, NOW).tolist() == expected


def test_a_table_resolved_for_one_gateway_is_judged_again_for_another(city: Registry) -> None:
    """The cached table of gw-kariadi's batch is valid for gw-kariadi (2 readings accepted)
    and refused for gw-johar, which sends the same bytes (2 registry faults)."""
    index = CityIndex.from_registry(city)
    payload = encode_binary_batch(
        gw="gw-kariadi",
        seq=1,
        sent=NOW,
        sensors=["bed-kariadi-icu"],
        kinds=[1],
        sensor=[0, 0],
        ts=[NOW - 2000, NOW - 1000],
        reading_seq=[1, 2],
        values=[[24, 20, 3, 5, 2], [24, 21, 3, 5, 2]],
    )
    b = decode_binary_batch(payload)
    own, foreign = index.gateway_pos["gw-kariadi"], index.gateway_pos["gw-johar"]
    cols = binary_window_columns([(b, own), (b, foreign), (b, own)], index)
    assert cols.registry_ok is not None
    assert cols.registry_ok.tolist() == [True, True, False, False, True, True]
    gateway = np.array([own, own, foreign, foreign, own, own], np.int32)
    assert np.count_nonzero(judge(cols, gateway, index, NOW)) == 2

"""The column-wise raw line formatter writes exactly the bytes of ``cloud.influx.format_int_rows``,
and its packed lines give exactly the request bodies of those lines (cloud/ingest/raw_lines.py)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cloud.influx import LineProtocolError, format_int_rows, series_key
from cloud.ingest.raw_lines import KeyTable, PackedLines, format_int_parts
from cloud.ingest.writer import body
from tests.raw_lines_support import Point, formatter_args, points
from tests.raw_lines_support import lines_text as _text


def _packed(*args: Any) -> PackedLines:
    return PackedLines.of_parts([format_int_parts(*args)])


@settings(max_examples=300, deadline=None)
@given(points())
def test_columns_give_the_bytes_of_format_int_rows(
    case: Point,
) -> None:
    keys, names, key_rows, rows, ts = case
    old = format_int_rows([keys[k] for k in key_rows], names, rows, ts)
    new = _text(*formatter_args(case))
    assert new == "".join(line + "\n" for line in old).encode()


def test_every_width_of_number_from_one_digit_to_nineteen_and_negative() -> None:
    """0, 9, 10, 99, 100 ... 10**18 and their negatives, each next to its neighbours."""
    edges = sorted({v for k in range(19) for v in (10**k - 1, 10**k, -(10**k), 1 - 10**k)})
    edges.append(2**63 - 1)
    keys = [series_key("queue", {"sensor": "q-1"})]
    rows = [[v, 7] for v in edges]
    ts = list(reversed(edges))
    new = _text(
        KeyTable(keys),
        np.zeros(len(rows), np.intp),
        ["waiting", "seq"],
        np.array(rows, np.int64),
        np.array(ts, np.int64),
    )
    old = format_int_rows(keys * len(rows), ["waiting", "seq"], rows, ts)
    assert new.split(b"\n")[:-1] == [line.encode() for line in old]
    assert len(old) == 76  # 19 widths x 4 edges with 0 once, and int64 max


def test_a_point_without_fields_is_refused_as_format_int_rows_refuses_it() -> None:
    with pytest.raises(LineProtocolError):
        _text(
            KeyTable(["bed,sensor=a"]),
            np.zeros(1, np.intp),
            [],
            np.zeros((1, 0), np.int64),
            np.zeros(1, np.int64),
        )


@settings(max_examples=300, deadline=None)
@given(points(), st.data())
def test_packed_lines_are_format_int_rows_lines_and_their_slices_the_joined_bodies(
    case: Point, data: st.DataObject
) -> None:
    """Line i of the packed lines is format_int_rows' line i, and the body of any slice (and of
    a slice of it) is the old body: those lines joined by newlines."""
    keys, names, key_rows, rows, ts = case
    old = [line.encode() for line in format_int_rows([keys[k] for k in key_rows], names, rows, ts)]
    new = _packed(*formatter_args(case))
    assert len(new) == len(old)
    assert [new[i] for i in range(len(new))] == old
    assert list(new) == old
    lo = data.draw(st.integers(min_value=0, max_value=len(old)))
    hi = data.draw(st.integers(min_value=lo, max_value=len(old)))
    assert body(new[lo:hi]) == b"\n".join(old[lo:hi])
    mid = data.draw(st.integers(min_value=0, max_value=hi - lo))
    assert body(new[lo:hi][mid:]) == b"\n".join(old[lo + mid : hi])


def test_joined_packed_lines_hold_every_part_in_order() -> None:
    """Three parts (one empty, one a slice of a bigger buffer) and status lines packed apart:
    the join is their lines in order, and its body the old joined body."""
    a = PackedLines.of([b"bed,sensor=a occupied=1i 1", b"bed,sensor=b occupied=0i 2"])
    b = PackedLines.of([b"x", b"queue,sensor=q waiting=3i 3", b"y"])[1:2]
    c = PackedLines.of([b"gateway_status,gateway=g online=1i 4"])
    joined = PackedLines.join([a, PackedLines(), b, c])
    want = [a[0], a[1], b[0], c[0]]
    assert list(joined) == want
    assert joined.body() == b"\n".join(want)
    assert len(joined) == 4
    assert joined[-1] == b"gateway_status,gateway=g online=1i 4"
    assert body(joined[1:3]) == b"bed,sensor=b occupied=0i 2\nqueue,sensor=q waiting=3i 3"
    with pytest.raises(IndexError):
        joined[4]
    assert PackedLines().body() == b""
    assert list(PackedLines()) == []

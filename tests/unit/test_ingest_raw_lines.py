"""The column-wise raw line formatter writes exactly the bytes of ``cloud.influx.format_int_rows``
(cloud/ingest/raw_lines.py)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cloud.influx import LineProtocolError, format_int_rows, series_key
from cloud.ingest.raw_lines import KeyTable, format_int_columns

I64 = st.integers(min_value=-(2**63) + 1, max_value=2**63 - 1)
#: tag values and names with line protocol's special characters and non-ASCII text
TEXT = st.text(
    alphabet=st.sampled_from([*"abcXYZ019_-.", " ", ",", "=", '"', "é", "ß", "🛏"]),
    min_size=1,
    max_size=12,
)


@st.composite
def points(draw: st.DrawFn) -> tuple[list[str], list[str], list[int], list[list[int]], list[int]]:
    keys = [series_key("bed", {"sensor": s}) for s in draw(st.lists(TEXT, min_size=1, max_size=5))]
    names = draw(st.lists(TEXT, min_size=1, max_size=7, unique=True))
    n = draw(st.integers(min_value=0, max_value=40))
    small = st.integers(min_value=0, max_value=999)
    value = st.one_of(small, I64)  # mostly counts, sometimes anything int64 holds
    rows = [[draw(value) for _ in names] for _ in range(n)]
    key_rows = [draw(st.integers(min_value=0, max_value=len(keys) - 1)) for _ in range(n)]
    ts = [draw(st.one_of(I64, st.integers(min_value=10**15, max_value=2 * 10**15))) for _ in rows]
    return keys, names, key_rows, rows, ts


@settings(max_examples=300, deadline=None)
@given(points())
def test_columns_give_the_bytes_of_format_int_rows(
    case: tuple[list[str], list[str], list[int], list[list[int]], list[int]],
) -> None:
    keys, names, key_rows, rows, ts = case
    old = format_int_rows([keys[k] for k in key_rows], names, rows, ts)
    new = format_int_columns(
        KeyTable(keys),
        np.array(key_rows, np.intp),
        names,
        np.array(rows, np.int64).reshape(len(rows), len(names)),
        np.array(ts, np.int64),
    )
    assert new == "".join(line + "\n" for line in old).encode()


def test_every_width_of_number_from_one_digit_to_nineteen_and_negative() -> None:
    """0, 9, 10, 99, 100 ... 10**18 and their negatives, each next to its neighbours."""
    edges = sorted({v for k in range(19) for v in (10**k - 1, 10**k, -(10**k), 1 - 10**k)})
    edges.append(2**63 - 1)
    keys = [series_key("queue", {"sensor": "q-1"})]
    rows = [[v, 7] for v in edges]
    ts = list(reversed(edges))
    new = format_int_columns(
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
        format_int_columns(
            KeyTable(["bed,sensor=a"]),
            np.zeros(1, np.intp),
            [],
            np.zeros((1, 0), np.int64),
            np.zeros(1, np.int64),
        )

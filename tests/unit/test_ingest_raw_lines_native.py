"""The native raw line formatter (``_rawlines.c``, ADR 0039) writes exactly the bytes and line
lengths of raw_lines' numpy path on random rows, so either can format a window's raw points."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cloud.influx import series_key
from cloud.ingest import raw_lines
from cloud.ingest.raw_lines import KeyTable, format_int_columns, format_int_parts

I64 = st.integers(min_value=-(2**63) + 1, max_value=2**63 - 1)
TEXT = st.text(alphabet=st.sampled_from([*"abZ09_-", " ", ",", "=", '"', "é", "🛏"]), min_size=1)


@st.composite
def points(draw: st.DrawFn) -> tuple[list[str], list[str], list[int], list[list[int]], list[int]]:
    """Keys and field names with line protocol's special characters, counts and any int64."""
    keys = [series_key("bed", {"sensor": s}) for s in draw(st.lists(TEXT, min_size=1, max_size=5))]
    names = draw(st.lists(TEXT, min_size=1, max_size=7, unique=True))
    n = draw(st.integers(min_value=0, max_value=40))
    value = st.one_of(st.integers(min_value=0, max_value=999), I64)
    rows = [[draw(value) for _ in names] for _ in range(n)]
    key_rows = [draw(st.integers(min_value=0, max_value=len(keys) - 1)) for _ in range(n)]
    ts = [draw(st.one_of(I64, st.integers(min_value=10**15, max_value=2 * 10**15))) for _ in rows]
    return keys, names, key_rows, rows, ts


def test_the_native_formatter_is_built() -> None:
    """bootstrap builds it; without it raw lines fall back to the numpy path, 0.4 us a line more."""
    assert raw_lines.NATIVE


def _numpy_path(
    monkeypatch: pytest.MonkeyPatch,
    keys: KeyTable,
    key_rows: np.ndarray,
    names: list[str],
    values: np.ndarray,
    ts: np.ndarray,
) -> tuple[bytes, list[int]]:
    with monkeypatch.context() as m:
        m.setattr(raw_lines, "_rawlines", None)
        blocks, lengths = format_int_parts(keys, key_rows, names, values, ts)
    return b"".join(blocks), lengths.tolist()


@settings(max_examples=300, deadline=None)
@given(points())
def test_native_lines_are_the_numpy_paths_bytes_and_lengths(
    case: tuple[list[str], list[str], list[int], list[list[int]], list[int]],
) -> None:
    keys, names, key_rows_l, rows, ts_l = case
    table = KeyTable(keys)
    key_rows = np.array(key_rows_l, np.intp)
    values = np.array(rows, np.int64).reshape(len(rows), len(names))
    ts = np.array(ts_l, np.int64)
    with pytest.MonkeyPatch.context() as mp:
        expected = _numpy_path(mp, table, key_rows, names, values, ts)
    blocks, lengths = format_int_parts(table, key_rows, names, values, ts)
    assert (b"".join(blocks), lengths.tolist()) == expected
    assert format_int_columns(table, key_rows, names, values, ts) == expected[0]


def test_native_digits_of_int64s_extremes_are_str_ints() -> None:
    """Including int64's minimum, which the numpy path does not take (its abs overflows)."""
    extremes = [-(2**63), 2**63 - 1, -1, 0, 10**18, -(10**18)]
    keys = KeyTable([series_key("crowd", {"sensor": "c-1"})])
    values = np.array([[v] for v in extremes], np.int64)
    ts = np.array(extremes[::-1], np.int64)
    text = format_int_columns(keys, np.zeros(len(extremes), np.intp), ["count"], values, ts)
    assert text == b"".join(
        b"crowd,sensor=c-1 count=%di %d\n" % (v, t)
        for v, t in zip(extremes, extremes[::-1], strict=True)
    )


def test_a_key_row_beyond_the_table_is_refused_not_read() -> None:
    keys = KeyTable([series_key("crowd", {"sensor": "c-1"})])
    one = np.array([[1]], np.int64)
    with pytest.raises(IndexError, match="key row 1 beyond 1 keys"):
        format_int_columns(keys, np.array([1], np.intp), ["count"], one, np.array([5], np.int64))

"""The native line formatter (``_rawlines.c``, ADR 0039) writes exactly the bytes and line
lengths of raw_lines' numpy path on random rows, so either can format a window's raw points;
and with a float column exactly ``cloud.influx.format_rows_at``'s rollup lines (ADR 0050)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cloud.influx import LineProtocolError, format_rows_at, series_key
from cloud.ingest import raw_lines
from cloud.ingest.raw_lines import KeyTable, format_int_parts, rows_at
from tests.raw_lines_support import I64, Point, formatter_args, points
from tests.raw_lines_support import lines_text as _text


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
    case: Point,
) -> None:
    table, key_rows, names, values, ts = formatter_args(case)
    with pytest.MonkeyPatch.context() as mp:
        expected = _numpy_path(mp, table, key_rows, names, values, ts)
    blocks, lengths = format_int_parts(table, key_rows, names, values, ts)
    assert (b"".join(blocks), lengths.tolist()) == expected


def test_native_digits_of_int64s_extremes_are_str_ints() -> None:
    """Including int64's minimum, which the numpy path does not take (its abs overflows)."""
    extremes = [-(2**63), 2**63 - 1, -1, 0, 10**18, -(10**18)]
    keys = KeyTable([series_key("crowd", {"sensor": "c-1"})])
    values = np.array([[v] for v in extremes], np.int64)
    ts = np.array(extremes[::-1], np.int64)
    text = _text(keys, np.zeros(len(extremes), np.intp), ["count"], values, ts)
    assert text == b"".join(
        b"crowd,sensor=c-1 count=%di %d\n" % (v, t)
        for v, t in zip(extremes, extremes[::-1], strict=True)
    )


def test_native_digits_at_every_width_boundary_are_str_ints() -> None:
    """Each side of every power of ten and of two, both signs: where the width estimated from
    the bit length needs its one correction (ADR 0042's formatter)."""
    edges = {10**k + d for k in range(19) for d in (-1, 0, 1)}
    edges |= {2**k + d for k in range(63) for d in (-1, 0, 1)}
    edges = {v for v in edges if v < 2**63} | {2**63 - 1}
    ints = sorted(edges | {-v for v in edges} | {-(2**63)})
    keys = KeyTable([series_key("crowd", {"sensor": "c-1"})])
    values = np.array([[v, -v if v > -(2**63) else 0] for v in ints], np.int64)
    ts = np.array(ints, np.int64)
    text = _text(keys, np.zeros(len(ints), np.intp), ["count", "n"], values, ts)
    assert len(ints) == 480
    assert text == b"".join(
        b"crowd,sensor=c-1 count=%di,n=%di %d\n" % (v, -v if v > -(2**63) else 0, v) for v in ints
    )


def test_a_key_row_beyond_the_table_is_refused_not_read() -> None:
    keys = KeyTable([series_key("crowd", {"sensor": "c-1"})])
    one = np.array([[1]], np.int64)
    with pytest.raises(IndexError, match="key row 1 beyond 1 keys"):
        _text(keys, np.array([1], np.intp), ["count"], one, np.array([5], np.int64))


#: a rollup's float field: mostly a ratio, sometimes undefined (NaN: left out), or any finite
#: float repr has to get right (tiny, huge, negative, -0.0)
_FLOAT = st.one_of(
    st.floats(0, 2, allow_nan=False),
    st.just(float("nan")),
    st.floats(allow_nan=False, allow_infinity=False),
)


@settings(max_examples=300, deadline=None)
@given(case=points(), floats=st.lists(_FLOAT, min_size=40, max_size=40), stamp=I64)
def test_rollup_rows_formatted_natively_are_the_python_formatters_lines(
    case: Point, floats: list[float], stamp: int
) -> None:
    """``raw_lines.rows_at`` (the rollups' rows, natively) writes ``cloud.influx.format_rows_at``'s
    lines for any keys, integers, float (repr's digits; NaN left out) and time."""
    keys, names, key_rows, rows, _ = case
    row_keys = [keys[r] for r in key_rows]
    ints = np.array(rows, np.int64).reshape(len(rows), len(names))
    f = np.array(floats[: len(rows)], np.float64)
    expected = format_rows_at(row_keys, names, rows, "bor", f.tolist(), stamp)
    assert rows_at(row_keys, names, ints, "bor", f, stamp) == expected
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(raw_lines, "_rawlines", None)
        assert rows_at(row_keys, names, ints, "bor", f, stamp) == expected


@pytest.mark.parametrize("native", [True, False])
@pytest.mark.parametrize("bad", [float("inf"), float("-inf")])
def test_an_infinite_rollup_float_is_refused_by_both_formatters(native: bool, bad: float) -> None:
    keys = [series_key("crowd_site", {"site": "pasar-johar"})] * 2
    with pytest.MonkeyPatch.context() as mp:
        if not native:
            mp.setattr(raw_lines, "_rawlines", None)
        with pytest.raises(LineProtocolError, match=f"^{bad} cannot be stored$"):
            rows_at(keys, ["people"], np.ones((2, 1), np.int64), "ratio", np.array([0.5, bad]), 1)

"""Random raw points for the raw-line formatter's tests (tests/unit/test_ingest_raw_lines*.py):
keys and field names with line protocol's special characters, counts and any int64."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
from hypothesis import strategies as st

from cloud.influx import series_key
from cloud.ingest.raw_lines import KeyTable, format_int_parts

I64 = st.integers(min_value=-(2**63) + 1, max_value=2**63 - 1)
#: tag values and names with line protocol's special characters and non-ASCII text
TEXT = st.text(
    alphabet=st.sampled_from([*"abcXYZ019_-.", " ", ",", "=", '"', "é", "ß", "🛏"]),
    min_size=1,
    max_size=12,
)


#: keys, field names, each point's key row, its values and its time
Point = tuple[list[str], list[str], list[int], list[list[int]], list[int]]


@st.composite
def points(draw: st.DrawFn) -> Point:
    keys = [series_key("bed", {"sensor": s}) for s in draw(st.lists(TEXT, min_size=1, max_size=5))]
    names = draw(st.lists(TEXT, min_size=1, max_size=7, unique=True))
    n = draw(st.integers(min_value=0, max_value=40))
    small = st.integers(min_value=0, max_value=999)
    value = st.one_of(small, I64)  # mostly counts, sometimes anything int64 holds
    rows = [[draw(value) for _ in names] for _ in range(n)]
    key_rows = [draw(st.integers(min_value=0, max_value=len(keys) - 1)) for _ in range(n)]
    ts = [draw(st.one_of(I64, st.integers(min_value=10**15, max_value=2 * 10**15))) for _ in rows]
    return keys, names, key_rows, rows, ts


def formatter_args(
    case: Point,
) -> tuple[KeyTable, npt.NDArray[np.intp], list[str], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """A :func:`points` case as the formatter takes it: (keys, key rows, names, values, ts)."""
    keys, names, key_rows, rows, ts = case
    return (
        KeyTable(keys),
        np.array(key_rows, np.intp),
        names,
        np.array(rows, np.int64).reshape(len(rows), len(names)),
        np.array(ts, np.int64),
    )


def lines_text(*args: Any) -> bytes:
    """``format_int_parts``' lines joined, each ending in a newline (whichever path is built)."""
    return b"".join(format_int_parts(*args)[0])

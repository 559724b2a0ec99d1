"""Line protocol formatting: escaping of names and strings, refusal of what cannot round-trip."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cloud.influx import (
    LineProtocolError,
    escape_tag,
    format_field,
    format_int_rows,
    format_line,
    series_key,
)

tag_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\\\n\r"),
    min_size=1,
    max_size=30,
)


def test_known_escapes() -> None:
    key = series_key("bed", {"site_name": 'Balai "Warga", RW 03', "ward": "Ruang = 1"})
    assert key == r'bed,site_name=Balai\ "Warga"\,\ RW\ 03,ward=Ruang\ \=\ 1'
    line = format_line(key, {"occupied": 3, "bor": 12.5, "note": 'a "b" \\ c\nd'}, 1700)
    assert line == key + r' occupied=3i,bor=12.5,note="a \"b\" \\ c' + '\nd" 1700'


@pytest.mark.parametrize("bad", ["a\\b", "line\nend", "cr\r", "", "trailing\\"])
def test_tags_that_cannot_round_trip_are_refused(bad: str) -> None:
    with pytest.raises(LineProtocolError):
        escape_tag(bad)


def test_non_finite_floats_are_refused() -> None:
    with pytest.raises(LineProtocolError):
        format_field(float("nan"))


@given(
    names=st.lists(tag_text, min_size=1, max_size=4, unique=True),
    rows=st.lists(st.lists(st.integers(-(2**63), 2**63 - 1), min_size=4, max_size=4), max_size=5),
    key=tag_text,
)
def test_columnar_formatter_equals_format_line(
    names: list[str], rows: list[list[int]], key: str
) -> None:
    """format_int_rows is format_line per point, braces and all."""
    skey = series_key("m", {"k": key})
    ts = list(range(len(rows)))
    got = format_int_rows([skey] * len(rows), names, [r[: len(names)] for r in rows], ts)
    want = [
        format_line(skey, dict(zip(names, r[: len(names)], strict=True)), t)
        for r, t in zip(rows, ts, strict=True)
    ]
    assert got == want

"""How PointWriter cuts a write into chunks for its parallel writers."""

from __future__ import annotations

import itertools
import threading

import pytest

from cloud.influx import InfluxHTTP
from cloud.ingest.writer import PointWriter


def writer(chunk_lines: int, parallelism: int) -> PointWriter:
    # Construction does no I/O: the client is never started here.
    influx = InfluxHTTP(url="http://127.0.0.1:9", database="unused")
    return PointWriter(
        influx=influx,
        stopping=threading.Event(),
        chunk_lines=chunk_lines,
        parallelism=parallelism,
    )


def test_a_window_is_cut_into_equal_chunks_a_multiple_of_the_writers() -> None:
    """27 500 lines in chunks of at most 5 000 on 2 writers: 6 chunks of 4 583-4 584 lines,
    not 5 of 5 000 and one of 2 500 (one writer would idle while the other writes 2 500)."""
    bounds = writer(5000, 2).chunk_bounds(27_500)
    assert [hi - lo for lo, hi in bounds] == [4583, 4583, 4584, 4583, 4583, 4584]
    assert bounds[0][0] == 0
    assert bounds[-1][1] == 27_500
    assert all(a[1] == b[0] for a, b in itertools.pairwise(bounds))


@pytest.mark.parametrize(
    ("n", "chunk_lines", "parallelism", "sizes"),
    [
        (0, 5000, 2, []),
        (900, 5000, 2, [900]),  # one chunk: written on the caller's thread
        (5001, 5000, 2, [2500, 2501]),
        (10_001, 5000, 1, [3333, 3334, 3334]),
        (100, 7, 3, [6, 7, 7, 6, 7, 7, 6, 7, 7, 6, 7, 7, 6, 7, 7]),
    ],
)
def test_chunks_never_exceed_chunk_lines_and_cover_every_line_once(
    n: int, chunk_lines: int, parallelism: int, sizes: list[int]
) -> None:
    bounds = writer(chunk_lines, parallelism).chunk_bounds(n)
    assert [hi - lo for lo, hi in bounds] == sizes
    assert sum(sizes) == n

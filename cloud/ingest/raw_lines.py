"""Raw points formatted column-wise in numpy: the same bytes as ``cloud.influx.format_int_rows``,
without a Python loop per line.

``format_int_rows`` formats each point with ``str.format`` on a row of Python ints, and the
columns must first become those ints (``tolist``): about 2.2 us per raw line, most of the
ingester's own CPU in mode (d) (docs/performance.md, issue 14 (d)). Here every part of a line
is a byte matrix with one row per point: the series key (from ``cloud.influx.series_key``,
padded), the field names (escaped by ``cloud.influx.escape_tag``), and each integer column's
decimal digits computed by numpy. The valid bytes of each row are then taken in row order
(``matrix[mask]``): one ``bytes`` holding every line, each ending in ``\\n``.

The result is byte-identical to ``format_int_rows`` (tests/unit/test_ingest_raw_lines.py checks
it on random rows with hypothesis); keys and names still come from ``cloud.influx``, the only
place that escapes line protocol. docs/adr/0032-overlapped-window-writes.md.

:func:`format_int_parts` gives the text with each line's length computed from its parts, for
:class:`PackedLines`: the writer cuts request bodies out of the one buffer, where
splitting it into a ``bytes`` per line and joining them again per chunk cost about 0.13 us per
line (docs/adr/0037-influxdb-inside-the-drain.md).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import overload

import numpy as np
import numpy.typing as npt

from cloud.influx import LineProtocolError, escape_tag, format_rows_at

try:
    from cloud.ingest import _rawlines
except ImportError:  # not built (an optional extension): the numpy path formats every line
    _rawlines = None  # type: ignore[assignment]

#: Which formatter raw lines go through (the native one is ADR 0039's).
NATIVE = _rawlines is not None

#: 10**k for k = 0..18: every power below int64's maximum
_POW10 = 10 ** np.arange(19, dtype=np.int64)
#: rows formatted at once: the byte matrices stay a few MB whatever the window
_BLOCK = 8192
_ZERO = ord("0")
_MINUS = ord("-")

Part = tuple[npt.NDArray[np.uint8], npt.NDArray[np.bool_]] | bytes


class KeyTable:
    """Series keys as a padded byte matrix, one row per key (built once per registry)."""

    def __init__(self, keys: Sequence[str]) -> None:
        encoded = [k.encode() for k in keys]
        width = max((len(k) for k in encoded), default=1)
        self.bytes = np.zeros((len(encoded), width), np.uint8)
        for i, k in enumerate(encoded):
            self.bytes[i, : len(k)] = np.frombuffer(k, np.uint8)
        self.length = np.array([len(k) for k in encoded], np.int64)
        #: the keys end to end, key i from ``starts[i]`` to ``starts[i + 1]`` (native path)
        self.joined, self.starts = _end_to_end(encoded)


def _end_to_end(encoded: Sequence[bytes]) -> tuple[bytes, npt.NDArray[np.int64]]:
    """``encoded`` joined, and where each begins (one more: the end), as the native formatter
    takes its keys."""
    starts = np.zeros(len(encoded) + 1, np.int64)
    np.cumsum([len(k) for k in encoded], out=starts[1:])
    return b"".join(encoded), starts


def digits(col: npt.NDArray[np.int64]) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.bool_]]:
    """The decimal text of each value as ``str(int)`` writes it: a matrix of right-aligned
    digits (a '-' first) and the mask of its valid bytes."""
    n = len(col)
    neg = col < 0
    a = np.abs(col)  # int64's minimum is beyond any value the contract admits
    width = max(1, int(np.searchsorted(_POW10, a.max(), side="right"))) if n else 1
    text = np.empty((n, width + 1), np.uint8)
    valid = np.empty((n, width + 1), np.bool_)
    text[:, 0] = _MINUS
    valid[:, 0] = neg
    q = a
    for k in range(width):
        # floor division by a constant is several times faster than % in numpy
        nxt = q // 10
        text[:, width - k] = q - nxt * 10 + _ZERO
        valid[:, width - k] = a >= _POW10[k] if k else True
        q = nxt
    return text, valid


def widths(col: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """How many bytes ``str(int)`` writes for each value (its digits, and a '-')."""
    a = np.abs(col)
    return np.maximum(1, np.searchsorted(_POW10, a, side="right")) + (col < 0)


def format_int_parts(
    keys: KeyTable,
    key_rows: npt.NDArray[np.integer],
    names: Sequence[str],
    values: npt.NDArray[np.int64],
    ts: npt.NDArray[np.int64],
) -> tuple[list[bytes], npt.NDArray[np.int64]]:
    """Points ``keys[key_rows[i]]`` with the integer fields ``names`` = ``values[i]`` at time
    ``ts[i]``: ``format_int_rows``' lines, each ending in ``\\n``, as text in pieces (joined
    once with other parts' by :meth:`PackedLines.of_parts`), and the length of each line."""
    if _rawlines is not None:
        text, lengths = _native(keys, key_rows, names, values, ts)
        return [text], lengths
    blocks = _format(keys, key_rows, names, values, ts)
    # the key, the text before each value, "i " before the time and "\n" after it
    size = keys.length[key_rows] + widths(ts) + sum(len(t) for t in _fixed(names)) + 3
    for j in range(len(names)):
        size += widths(values[:, j])
    return blocks, size


def _check(
    key_rows: npt.NDArray[np.integer],
    names: Sequence[str],
    values: npt.NDArray[np.int64],
    ts: npt.NDArray[np.int64],
) -> None:
    if not names:
        raise LineProtocolError("a point needs at least one field")
    if values.shape != (len(ts), len(names)) or len(key_rows) != len(ts):
        raise ValueError("keys, values and times must have one row per point")


def _native(
    keys: KeyTable,
    key_rows: npt.NDArray[np.integer],
    names: Sequence[str],
    values: npt.NDArray[np.int64],
    ts: npt.NDArray[np.int64],
) -> tuple[bytes, npt.NDArray[np.int64]]:
    """The native formatter's text and line lengths: the numpy path's bytes, without its byte
    matrices (about 0.4 us less CPU per raw line; ADR 0039)."""
    _check(key_rows, names, values, ts)
    text, lengths = _rawlines.format_lines(
        keys.joined,
        keys.starts,
        np.ascontiguousarray(key_rows, np.int64),
        tuple(_fixed(names)),
        np.ascontiguousarray(values, np.int64),
        np.ascontiguousarray(ts, np.int64),
    )
    return text, np.frombuffer(lengths, np.int64)


def rows_at(
    keys: Sequence[str],
    names: Sequence[str],
    ints: npt.NDArray[np.int64],
    float_name: str,
    floats: npt.NDArray[np.float64],
    ts: int,
) -> list[str]:
    """:func:`cloud.influx.format_rows_at`'s lines from the columns themselves (``ints`` one row
    per key), formatted by the native formatter when it is built: the rollup rows a window
    writes, whose formatting was a window's largest fixed cost (ADR 0050)."""
    if _rawlines is None:
        return format_rows_at(keys, names, ints.tolist(), float_name, floats.tolist(), ts)
    key_rows = np.arange(len(keys), dtype=np.int64)
    times = np.full(len(keys), ts, np.int64)
    _check(key_rows, names, ints, times)
    if len(floats) != len(keys):
        raise ValueError("keys and floats must have one row per point")
    if (inf := np.isinf(floats)).any():
        raise LineProtocolError(f"{floats[inf][0]} cannot be stored")
    joined, starts = _end_to_end([k.encode() for k in keys])
    text, _ = _rawlines.format_lines(
        joined,
        starts,
        key_rows,
        tuple(_fixed(names)),
        np.ascontiguousarray(ints, np.int64),
        times,
        np.ascontiguousarray(floats, np.float64),
        f",{escape_tag(float_name)}=".encode(),
    )
    return text.decode().split("\n")[:-1]


def _format(
    keys: KeyTable,
    key_rows: npt.NDArray[np.integer],
    names: Sequence[str],
    values: npt.NDArray[np.int64],
    ts: npt.NDArray[np.int64],
) -> list[bytes]:
    """The numpy path: byte matrices per block of rows."""
    _check(key_rows, names, values, ts)
    fixed = _fixed(names)
    out = []
    for lo in range(0, len(ts), _BLOCK):
        hi = min(lo + _BLOCK, len(ts))
        rows = key_rows[lo:hi]
        key_valid = np.arange(keys.bytes.shape[1]) < keys.length[rows][:, None]
        parts: list[Part] = [(keys.bytes[rows], key_valid)]
        for j, text in enumerate(fixed):
            parts += [text, digits(values[lo:hi, j])]
        parts += [b"i ", digits(ts[lo:hi]), b"\n"]
        out.append(_assemble(parts, hi - lo))
    return out


def _fixed(names: Sequence[str]) -> list[bytes]:
    # the bytes before each field's value: " name=" for the first, "i,name=" for the others
    return [((" " if j == 0 else "i,") + escape_tag(n) + "=").encode() for j, n in enumerate(names)]


def _assemble(parts: list[Part], n: int) -> bytes:
    width = sum(len(p) if isinstance(p, bytes) else p[0].shape[1] for p in parts)
    text = np.empty((n, width), np.uint8)
    valid = np.ones((n, width), np.bool_)
    at = 0
    for p in parts:
        if isinstance(p, bytes):
            text[:, at : at + len(p)] = np.frombuffer(p, np.uint8)
            at += len(p)
        else:
            w = p[0].shape[1]
            text[:, at : at + w] = p[0]
            valid[:, at : at + w] = p[1]
            at += w
    return text[valid].tobytes()


class PackedLines(Sequence[bytes]):
    """Lines held as one buffer: ``text`` holds every line, each ending in ``\\n``, line ``i``
    at ``text[starts[i]:starts[i + 1] - 1]``. A slice shares the buffer (no copy);
    :meth:`body` is the ``/write`` body of its lines, ``b"\\n".join`` of them, in one copy."""

    __slots__ = ("_starts", "_text")

    def __init__(self, *, text: bytes = b"", starts: npt.NDArray[np.int64] | None = None) -> None:
        self._text = text
        self._starts = np.zeros(1, np.int64) if starts is None else starts

    @classmethod
    def of(cls, lines: Sequence[bytes]) -> PackedLines:
        """``lines`` (none containing ``\\n``) packed."""
        starts = np.zeros(len(lines) + 1, np.int64)
        np.cumsum([len(line) + 1 for line in lines], out=starts[1:])
        return cls(text=b"".join(line + b"\n" for line in lines), starts=starts)

    @classmethod
    def of_parts(cls, parts: Sequence[tuple[list[bytes], npt.NDArray[np.int64]]]) -> PackedLines:
        """Lines given as (text pieces, each line's length in bytes with its ``\\n``), in one
        buffer: the pieces are copied once."""
        starts = np.zeros(1 + sum(len(size) for _, size in parts), np.int64)
        if len(starts) > 1:
            np.cumsum(np.concatenate([size for _, size in parts]), out=starts[1:])
        return cls(text=b"".join(b for blocks, _ in parts for b in blocks), starts=starts)

    @classmethod
    def join(cls, parts: Sequence[PackedLines]) -> PackedLines:
        """The lines of ``parts``, in order, in one buffer."""
        parts = [p for p in parts if len(p)]
        if len(parts) == 1 and parts[0]._starts[0] == 0 and parts[0]._whole():
            return parts[0]
        starts = [np.zeros(1, np.int64)]
        at = 0
        for p in parts:
            starts.append(p._starts[1:] - p._starts[0] + at)
            at += int(p._starts[-1] - p._starts[0])
        text = b"".join(p._text[p._starts[0] : p._starts[-1]] for p in parts)
        return cls(text=text, starts=np.concatenate(starts))

    def _whole(self) -> bool:
        return int(self._starts[-1]) == len(self._text)

    def __len__(self) -> int:
        return len(self._starts) - 1

    @overload
    def __getitem__(self, i: int) -> bytes: ...
    @overload
    def __getitem__(self, i: slice) -> PackedLines: ...
    def __getitem__(self, i: int | slice) -> bytes | PackedLines:
        if isinstance(i, slice):
            lo, hi, step = i.indices(len(self))
            if step != 1:
                raise ValueError("packed lines are sliced in order")
            return PackedLines(text=self._text, starts=self._starts[lo : max(lo, hi) + 1])
        n = len(self)
        if not -n <= i < n:
            raise IndexError("line index out of range")
        i %= n
        return self._text[self._starts[i] : self._starts[i + 1] - 1]

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.body().split(b"\n") if len(self) else ())

    def body(self) -> bytes:
        """The lines joined by ``\\n`` (no newline after the last): a ``/write`` body."""
        if not len(self):
            return b""
        return self._text[self._starts[0] : self._starts[-1] - 1]

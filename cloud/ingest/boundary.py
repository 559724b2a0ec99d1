"""The per-message boundary: no message a device sends can stop the ingester.

Decoding and formatting work on a whole window at once (vectorised, ``decode``/``writer``), so
an unexpected exception there (a bug: every refusal the contract knows is a ``Rejection``)
would fail the window, leave every message of it unacknowledged, and the broker would
redeliver the same window after every restart: one message, a crash loop, for good.

Here such an exception is pinned on the message that causes it, without giving up the
vectorised path for the others: the window is split in halves and each half decoded again
(bisection), down to the single message that still fails. That message becomes a
``Rejection`` with reason ``internal_error`` (its traceback logged once, at that point), and
the rest of the window is stored and acknowledged as usual. A window with one bad message costs
``2 log2(n)`` extra decodes of ever smaller parts, at worst about three times the window's decode
work (bench/ingest_boundary.py: 5 000 batches, 0.16 s clean, 0.52 s with one fault), and nothing
at all while nothing fails.

``except Exception`` is deliberate here, as at a process's outermost loop: this *is* the
outermost place a message's handling can be caught without losing the other messages.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np

from cloud.ingest.decode import (
    DecodedWindow,
    Message,
    Readings,
    Rejection,
    StatusUpdate,
    empty_readings,
)
from contract import RejectReason

log = logging.getLogger(__name__)

Decode = Callable[[Sequence[Message]], DecodedWindow]


def internal_error(message: int, exc: BaseException, doing: str) -> Rejection:
    """The rejection of a message whose handling raised ``exc`` (a bug, not the device's
    fault). The detail names the exception type only: its text may quote the payload, which
    the dead-letter store keeps anyway."""
    return Rejection(message, RejectReason.INTERNAL_ERROR, f"{type(exc).__name__} while {doing}")


def decode_isolating(window: Sequence[Message], decode: Decode) -> DecodedWindow:
    """``decode(window)``; if that raises, the same result for every message that can be
    decoded (in halves, recursively) and an ``internal_error`` rejection for each that
    cannot. Never raises for anything a message contains."""
    got = _try(decode, window)
    if isinstance(got, DecodedWindow):
        return got
    if len(window) == 1:
        return _refused(window[0], got)
    log.warning(
        "decoding a window of %d messages failed (%s); isolating the message that causes it",
        len(window),
        type(got).__name__,
    )
    return _bisect(window, 0, len(window), decode)


def _try(decode: Decode, part: Sequence[Message]) -> DecodedWindow | Exception:
    try:
        return decode(part)
    except Exception as exc:  # noqa: BLE001 - the message boundary, see the module docstring
        return exc


def _refused(msg: Message, exc: Exception) -> DecodedWindow:
    # Logged once, with the traceback, for the one message that causes it.
    log.error(
        "internal error decoding the message on %s (%d bytes); dead-lettered as %s",
        msg.topic,
        len(msg.payload),
        RejectReason.INTERNAL_ERROR.value,
        exc_info=exc,
    )
    return DecodedWindow(
        readings=empty_readings(), rejections=[internal_error(0, exc, "decoding")], statuses=[]
    )


def _bisect(window: Sequence[Message], lo: int, hi: int, decode: Decode) -> DecodedWindow:
    """Decode ``window[lo:hi]``, known to fail as a whole, half by half (message indices of
    the result count from ``lo``)."""
    mid = (lo + hi) // 2
    parts = []
    for a, b in ((lo, mid), (mid, hi)):
        got = _try(decode, window[a:b])
        if isinstance(got, DecodedWindow):
            parts.append((a - lo, got))
        elif b - a == 1:
            parts.append((a - lo, _refused(window[a], got)))
        else:
            parts.append((a - lo, _bisect(window, a, b, decode)))
    return merge(parts)


def merge(parts: Sequence[tuple[int, DecodedWindow]]) -> DecodedWindow:
    """One DecodedWindow of the decoded parts of a window, each given with the position of its
    first message in the window (message indices are shifted by it), in window order."""
    readings = [p.readings for _, p in parts if len(p.readings)]
    offsets = [at for at, p in parts if len(p.readings)]
    return DecodedWindow(
        readings=_concat(readings, offsets) if readings else empty_readings(),
        rejections=[
            Rejection(r.message + at, r.reason, r.detail, r.index)
            for at, p in parts
            for r in p.rejections
        ],
        statuses=[
            StatusUpdate(s.message + at, s.gateway, s.status, s.dropped_stats)
            for at, p in parts
            for s in p.statuses
        ],
        duplicates=[d + at for at, p in parts for d in p.duplicates],
        batch_keys=[k for _, p in parts for k in p.batch_keys],
    )


def _concat(parts: Sequence[Readings], offsets: Sequence[int]) -> Readings:
    return Readings(
        message=np.concatenate(
            [p.message + np.int32(at) for p, at in zip(parts, offsets, strict=True)]
        ),
        index=np.concatenate([p.index for p in parts]),
        sensor=np.concatenate([p.sensor for p in parts]),
        kind=np.concatenate([p.kind for p in parts]),
        ts=np.concatenate([p.ts for p in parts]),
        seq=np.concatenate([p.seq for p in parts]),
        values=np.concatenate([p.values for p in parts]),
    )


def status_lines(
    statuses: Sequence[StatusUpdate], line_of: Callable[[StatusUpdate], str]
) -> tuple[list[tuple[int, str]], list[Rejection]]:
    """The ``gateway_status`` line of each status, as (window message, line), and an
    ``internal_error`` rejection for each status whose line could not be made. (Raw reading
    lines need no such guard: they are formatted from validated integers and registry keys,
    nothing a device chose.)"""
    lines: list[tuple[int, str]] = []
    refused: list[Rejection] = []
    for st in statuses:
        try:
            lines.append((st.message, line_of(st)))
        except Exception as exc:  # the message boundary, see the module docstring
            log.exception("internal error formatting the status of message %d", st.message)
            refused.append(internal_error(st.message, exc, "formatting its status"))
    return lines, refused

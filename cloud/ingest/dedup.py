"""Redelivered batches: dropped before decoding when this ingester already stored them."""

from __future__ import annotations

from collections.abc import Sequence

from contract import is_binary, readings_section


def content_fingerprint(payload: bytes) -> int:
    """A hash of a batch's readings, leaving out the envelope fields a gateway stamps anew on
    every resend (``sent``, ``clock_offset_ms``): a resent batch must count as a duplicate.

    JSON: everything from the ``"readings"`` key on (Pantau's encoders put it last; a producer
    that orders keys differently only makes dedup stricter, never wrong). Binary:
    :func:`contract.readings_section`."""
    if is_binary(payload):
        return hash(readings_section(payload))
    at = payload.find(b'"readings"')
    return hash(payload[at:] if at >= 0 else payload)


class BatchDedup:
    """Which (gateway, batch seq) this ingester has already stored and acknowledged, for the
    most recent ``per_gateway`` batches of each gateway (bounded memory: about 100 bytes per
    remembered batch).

    A batch is a duplicate only if its readings are identical too (a
    :func:`content_fingerprint` is kept with the seq): a gateway that lost its spool and
    restarted its seq at 0 sends new data under old numbers, and that must not be dropped.
    What this memory does not cover (batches older than the last ``per_gateway``, everything
    before an ingester restart) is still stored only once: raw points are idempotent (same
    series and time), so a redelivered batch overwrites itself."""

    def __init__(self, *, per_gateway: int = 1024) -> None:
        self.per_gateway = per_gateway
        self._seen: dict[int, dict[int, int]] = {}
        #: batches of a window still being written (not yet remembered or given up)
        self._held: set[tuple[int, int, int]] = set()

    def seen(self, gateway: int, seq: int, fingerprint: int) -> bool:
        """True if this exact batch was remembered, or is held."""
        got = self._seen.get(gateway)
        return (got is not None and got.get(seq) == fingerprint) or (
            (gateway, seq, fingerprint) in self._held
        )

    def hold(self, keys: Sequence[tuple[int, int, int]]) -> None:
        """Batches of a window whose write is under way: the next window, decoded meanwhile,
        drops their copies as a window decoded after the acknowledgement would
        (docs/adr/0032-overlapped-window-writes.md). :meth:`settle` ends the hold."""
        self._held.update(keys)

    def settle(self, keys: Sequence[tuple[int, int, int]], *, stored: bool) -> None:
        """End the hold of ``keys``: remembered if their window was ``stored`` and
        acknowledged, forgotten otherwise (it comes back and must not be dropped)."""
        self._held.difference_update(keys)
        if stored:
            self.remember(keys)

    def remember(self, keys: Sequence[tuple[int, int, int]]) -> None:
        """Remember stored batches ((gateway, seq, fingerprint)); forgets each gateway's
        oldest beyond ``per_gateway``."""
        for gateway, seq, fingerprint in keys:
            recent = self._seen.setdefault(gateway, {})
            recent.pop(seq, None)  # re-inserted at the end: it is the newest again
            recent[seq] = fingerprint
            while len(recent) > self.per_gateway:
                del recent[next(iter(recent))]

    def __len__(self) -> int:
        return sum(map(len, self._seen.values()))

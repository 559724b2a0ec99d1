"""Redelivered batches: dropped before decoding when this ingester already stored them."""

from __future__ import annotations

from collections.abc import Sequence

from blake3 import blake3

from contract import is_binary, readings_section

#: The content digests of the window the crash-loop guard hashed last, by payload identity
#: (``id``, checked with ``is``): the guard's hash pass over a payload's readings is then
#: the only pass dedup needs (docs/adr/0039-one-hash-pass-per-payload.md). Only a shortcut: a
#: payload not here (no guard, or a window the guard has moved past) is hashed again.
_guarded: dict[int, tuple[bytes, bytes]] = {}


def content_start(payload: bytes) -> int:
    """Where a batch's readings begin: the part of it :func:`content_digest` covers, leaving
    out the envelope fields a gateway stamps anew on every resend (``sent``,
    ``clock_offset_ms``). JSON: from the ``"readings"`` key on (Pantau's encoders put it last;
    a producer that orders keys differently only makes dedup stricter, never wrong); if there
    is none, 0. Binary: where :func:`contract.readings_section` begins."""
    if is_binary(payload):
        # the contract's rule, not a copy of its offsets (a slice of the payload: a memcpy)
        return len(payload) - len(readings_section(payload))
    return max(payload.find(b'"readings"'), 0)


def digest_from(payload: bytes, at: int) -> bytes:
    """The 32-byte BLAKE3 digest of ``payload`` from ``at`` on: the one hash of the guard and
    dedup. BLAKE3, not ``hashlib``'s SHA-256: every batch of every window is hashed whole, and
    BLAKE3's SIMD lanes hash a window's payloads (tens of KB each, megabytes in all) about three
    times as fast here: 57 against 185 ns per JSON reading, 14 against 42 per binary reading;
    single readings cost 0.04 us more each, beside about 60 us per message
    (docs/adr/0047-blake3-for-the-one-hash-pass.md). Collision-resistant as SHA-256 is: a
    device cannot craft a batch that passes for another."""
    return blake3(memoryview(payload)[at:]).digest()


def content_digest(payload: bytes) -> bytes:
    """:func:`digest_from` a batch's readings (:func:`content_start` on): equal for a resend of
    the same batch, different for different readings."""
    return digest_from(payload, content_start(payload))


def remember_digests(pairs: Sequence[tuple[bytes, bytes]]) -> None:
    """(payload, :func:`content_digest`) of the window the guard has just hashed: dedup reads
    them instead of hashing those payloads again. Replaces the previous window's."""
    global _guarded  # noqa: PLW0603 - one slot, swapped whole so a reader sees either window
    _guarded = {id(p): (p, d) for p, d in pairs}


def content_fingerprint(payload: bytes) -> int:
    """A 64-bit fingerprint of a batch's readings (the first 8 bytes of its
    :func:`content_digest`): a resent batch must count as a duplicate, a different one must not."""
    got = _guarded.get(id(payload))
    digest = got[1] if got is not None and got[0] is payload else content_digest(payload)
    return int.from_bytes(digest[:8], "little")


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

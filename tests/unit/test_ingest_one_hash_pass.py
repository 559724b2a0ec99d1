"""One hash pass per payload serves both the crash-loop guard and dedup (ADR 0039): the
fingerprints tell the same messages and batches apart as the two separate hashes did, and dedup
does not hash a payload the guard has just hashed."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cloud.ingest import dedup
from cloud.ingest.decode import Message
from cloud.ingest.dedup import content_fingerprint, remember_digests
from cloud.ingest.guard import SPLIT_BYTES, PoisonGuard, attempt_fingerprint
from contract import is_binary, readings_section
from contract.binary import MAGIC

KEY = b'"readings"'


def old_content_fingerprint(payload: bytes) -> int:
    """dedup's fingerprint before ADR 0039 (SipHash of the readings section): the reference."""
    if is_binary(payload):
        return hash(readings_section(payload))
    at = payload.find(KEY)
    return hash(payload[at:] if at >= 0 else payload)


def old_attempt_fingerprint(topic: str, payload: bytes) -> bytes:
    """The guard's fingerprint before ADR 0039 (SHA-256 of topic and whole payload)."""
    h = hashlib.sha256(topic.encode("utf-8", "surrogatepass"))
    h.update(b"\0")
    h.update(payload)
    return h.digest()[:16]


# few distinct parts, so that equal and unequal pairs both come up often
heads = st.sampled_from([b"", b'{"v":1,"sent":5,', b'{"v":1,"sent":6,', b"\x00" * 40])
tails = st.sampled_from([b"", b":[1]}", b":[2]}", b":[1]} " + b"z" * SPLIT_BYTES])
binary_heads = st.sampled_from([MAGIC + bytes([1, 0, 3]) + bytes(40), MAGIC + bytes(44)])


@st.composite
def payloads(draw: st.DrawFn) -> bytes:
    if draw(st.booleans()):
        return draw(binary_heads) + draw(tails)
    keyed = draw(st.booleans())
    return draw(heads) + (KEY if keyed else b"") + draw(tails)


@given(a=payloads(), b=payloads())
def test_dedup_fingerprints_tell_batches_apart_as_the_old_hash_did(a: bytes, b: bytes) -> None:
    """Two payloads share a new fingerprint exactly when they shared the old one: a resend
    with a restamped envelope is still a duplicate, other readings are still not."""
    assert (content_fingerprint(a) == content_fingerprint(b)) == (
        old_content_fingerprint(a) == old_content_fingerprint(b)
    )


@given(
    topic=st.sampled_from(["pantau/v1/s/g/batch", "pantau/v1/s/h/batch"]),
    other_topic=st.sampled_from(["pantau/v1/s/g/batch", "pantau/v1/s/h/batch"]),
    a=payloads(),
    b=payloads(),
)
def test_guard_fingerprints_tell_messages_apart_as_the_old_hash_did(
    topic: str, other_topic: str, a: bytes, b: bytes
) -> None:
    """Small and large (split) payloads alike: equal fingerprints exactly for equal messages."""
    new_equal = attempt_fingerprint(topic, a) == attempt_fingerprint(other_topic, b)
    old_equal = old_attempt_fingerprint(topic, a) == old_attempt_fingerprint(other_topic, b)
    assert new_equal == old_equal == ((topic, a) == (other_topic, b))


def test_bytes_moving_between_envelope_and_readings_change_the_guard_fingerprint() -> None:
    """The split form hashes the envelope and the readings' digest: a byte that moves from one
    to the other is a different message."""
    tail = b":[1]}" + b" " * SPLIT_BYTES
    one = b'{"a":1,' + KEY + tail
    two = b'{"a":1,"' + KEY + tail[1:]
    assert len(one) == len(two) >= SPLIT_BYTES
    assert attempt_fingerprint("t", one) != attempt_fingerprint("t", two)


def test_dedup_reads_the_digest_the_guard_computed_instead_of_hashing_again(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """After the guard planned a window, fingerprinting its batches hashes nothing more, and
    gives the fingerprint hashing would have given; a payload the guard did not see (an equal
    copy is another object) is still hashed."""
    big = [
        b'{"v":1,"sent":%d,' % i + KEY + b":[%d]}" % (i % 2) + b" " * SPLIT_BYTES for i in range(4)
    ]
    expected = [content_fingerprint(p) for p in big]
    guard = PoisonGuard(path=tmp_path / "guard.sqlite", max_attempts=3)
    guard.plan([Message(topic="t", payload=p, received_ms=0) for p in big])
    hashed: list[bytes] = []
    real = dedup.content_digest

    def counting(payload: bytes) -> bytes:
        hashed.append(payload)
        return real(payload)

    monkeypatch.setattr(dedup, "content_digest", counting)
    assert [content_fingerprint(p) for p in big] == expected
    assert hashed == []
    assert expected[0] != expected[1]
    assert expected[0] == expected[2]
    copy = bytes(bytearray(big[1]))
    assert content_fingerprint(copy) == expected[1]
    assert hashed == [copy]
    remember_digests([])  # a window of small messages forgets the digests of the last one
    assert content_fingerprint(big[3]) == expected[3]
    assert len(hashed) == 2

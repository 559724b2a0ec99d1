"""The crash-loop guard counts attempts by a 16-byte fingerprint of topic and payload: the
same for a redelivery of the same message, different when either part differs (also when a
byte moves between them)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from cloud.ingest.guard import attempt_fingerprint

topics = st.text(min_size=1, max_size=40)


@given(topic=topics, payload=st.binary(max_size=300), other=st.binary(max_size=300))
def test_equal_messages_share_a_fingerprint_and_others_do_not(
    topic: str, payload: bytes, other: bytes
) -> None:
    fp = attempt_fingerprint(topic, payload)
    assert len(fp) == 16
    assert attempt_fingerprint(topic, bytes(payload)) == fp
    assert (attempt_fingerprint(topic, other) == fp) == (other == payload)
    assert attempt_fingerprint(topic + "x", payload) != fp


def test_the_topic_and_payload_boundary_is_part_of_the_fingerprint() -> None:
    assert attempt_fingerprint("pantau/a", b"b{}") != attempt_fingerprint("pantau/ab", b"{}")

"""Scale-out pieces without a network: the state-delta wire format, the merge that makes
members converge on the single-ingester state, and the bulk histogram observe."""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram

from cloud.ingest.aggregate import SensorState
from cloud.ingest.bulk_histogram import BulkHistogram
from cloud.ingest.cluster import (
    apply_rows,
    changed_sensors,
    copy_state,
    deltas_of,
    fits,
    mark_shared,
    merge_rows,
)
from cloud.ingest.metrics import LAG_BUCKETS
from cloud.ingest.topology import MAX_FIELDS
from contract import PayloadError, RejectReason, TopicError, topics
from contract.cluster import (
    StateDelta,
    decode_state_delta,
    encode_state_delta,
    max_rows,
    registry_digest,
)
from contract.payload import MAX_PAYLOAD_BYTES

DIGEST = registry_digest(["a", "b"])


def _delta(n: int, seed: int) -> StateDelta:
    rng = np.random.default_rng(seed)
    return StateDelta(
        digest=DIGEST,
        sensor=rng.integers(0, 2**32, n, dtype=np.uint32),
        ts=rng.integers(-(2**63), 2**63 - 1, n, dtype=np.int64),
        seq=rng.integers(0, 2**40, n, dtype=np.int64),
        prev_ts=rng.integers(-1, 2**45, n, dtype=np.int64),
        values=rng.integers(0, 10**7, (n, MAX_FIELDS), dtype=np.int64),
        prev_values=rng.integers(0, 10**7, (n, MAX_FIELDS), dtype=np.int64),
    )


@given(n=st.integers(0, 50), seed=st.integers(0, 2**32 - 1))
def test_a_state_delta_round_trips_exactly(n: int, seed: int) -> None:
    delta = _delta(n, seed)
    got = decode_state_delta(encode_state_delta(delta))
    assert got.digest == DIGEST
    for name in ("sensor", "ts", "seq", "prev_ts", "values", "prev_values"):
        assert np.array_equal(getattr(got, name), getattr(delta, name)), name
    assert got.values.shape == (n, MAX_FIELDS)


def test_the_largest_delta_fits_one_message_and_a_larger_one_is_refused() -> None:
    biggest = max_rows(MAX_FIELDS)
    assert len(encode_state_delta(_delta(biggest, 1))) <= MAX_PAYLOAD_BYTES
    with pytest.raises(ValueError, match="exceeds"):
        encode_state_delta(_delta(biggest + 1, 1))


@given(raw=st.binary(max_size=300), magic=st.booleans())
def test_garbage_is_refused_as_invalid_binary(raw: bytes, magic: bool) -> None:
    """Random bytes, with or without the magic and version in front, never decode into a
    delta (a header's count would have to match the length exactly)."""
    payload = b"PSD1\x01" + raw if magic else raw
    if payload.startswith(b"PSD1") and len(payload) >= 20:
        fields, n = payload[5], int.from_bytes(payload[16:20], "little")
        if len(payload) == 20 + n * (28 + 16 * fields):
            return  # a well-formed delta after all
    with pytest.raises(PayloadError) as info:
        decode_state_delta(payload)
    assert info.value.reason is RejectReason.INVALID_BINARY


@given(cut=st.integers(1, 200))
def test_a_truncated_or_padded_delta_is_refused(cut: int) -> None:
    raw = encode_state_delta(_delta(3, 7))
    for bad in (raw[:-cut], raw + b"\0" * cut):
        with pytest.raises(PayloadError, match="cannot be"):
            decode_state_delta(bad)


def test_a_delta_from_another_registry_does_not_fit() -> None:
    delta = _delta(2, 3)
    ok = StateDelta(**{**_fields(delta), "sensor": np.array([0, 4], dtype=np.uint32)})
    assert fits(ok, digest=DIGEST, n_sensors=5, fields=MAX_FIELDS)
    assert not fits(ok, digest=registry_digest(["a", "c"]), n_sensors=5, fields=MAX_FIELDS)
    assert not fits(ok, digest=DIGEST, n_sensors=4, fields=MAX_FIELDS)  # sensor 4 unknown


def _fields(d: StateDelta) -> dict[str, object]:
    return {
        k: getattr(d, k)
        for k in ("digest", "sensor", "ts", "seq", "prev_ts", "values", "prev_values")
    }


class Member:
    """An ingester of a group, reduced to its state logic (as in Ingester._ack/_merge_peers)."""

    def __init__(self, n: int) -> None:
        self.state = SensorState(n_sensors=n)
        self.shared = copy_state(self.state)
        self.inbox: list[StateDelta] = []

    def process(self, rows: list[tuple[int, int, int, list[int]]]) -> list[StateDelta]:
        s, t, q, v = (np.array(c) for c in zip(*rows, strict=True))
        self.state.update(
            s.astype(np.int32), t.astype(np.int64), q.astype(np.int64), v.astype(np.int64)
        )
        changed = changed_sensors(self.state, self.shared)
        out = deltas_of(self.state, changed, DIGEST)
        mark_shared(self.shared, self.state, changed)
        # through the wire format, as the broker would carry them
        return [decode_state_delta(encode_state_delta(d)) for d in out]

    def merge_inbox(self) -> None:
        if self.inbox:
            apply_rows(self.state, self.shared, merge_rows(self.inbox, self.state))
            self.inbox = []


def _same(a: SensorState, b: SensorState) -> bool:
    return len(changed_sensors(a, b)) == 0 and np.array_equal(a.ts, b.ts)


@settings(max_examples=200, deadline=None)
@given(
    n_sensors=st.integers(1, 6),
    n_readings=st.integers(1, 60),
    seed=st.integers(0, 2**32 - 1),
)
def test_members_on_a_shared_subscription_converge_on_the_single_ingesters_state(
    n_sensors: int, n_readings: int, seed: int
) -> None:
    """Readings (distinct observation times per sensor, any arrival order) are dealt out
    message by message to two members in windows of random size; deltas are delivered late
    and in bursts. Once every delta is delivered, both members hold exactly the state one
    ingester builds from all readings, previous readings included."""
    rng = random.Random(seed)
    times = rng.sample(range(1_000, 1_000 + 10 * n_readings), n_readings)
    readings = [
        (
            rng.randrange(n_sensors),
            t,
            rng.randrange(1000),
            [rng.randrange(50) for _ in range(MAX_FIELDS)],
        )
        for t in times
    ]
    single = SensorState(n_sensors=n_sensors)
    s, t, q, v = (np.array(c) for c in zip(*readings, strict=True))
    single.update(s.astype(np.int32), t.astype(np.int64), q.astype(np.int64), v.astype(np.int64))

    members = [Member(n_sensors), Member(n_sensors)]
    pending = list(readings)
    while pending:
        size = rng.randint(1, 5)
        window, pending = pending[:size], pending[size:]
        who = rng.randrange(2)
        members[1 - who].inbox += members[who].process(window)
        for m in members:
            if rng.random() < 0.4:
                m.merge_inbox()
    for m in members:
        m.merge_inbox()
    for m in members:
        assert _same(m.state, single)
        assert len(changed_sensors(m.state, m.shared)) == 0  # nothing left to tell


def test_merging_the_same_delta_twice_changes_nothing_the_second_time() -> None:
    a = Member(3)
    deltas = a.process([(0, 100, 1, [5, 1, 0, 0, 0]), (0, 200, 2, [5, 2, 0, 0, 0])])
    b = Member(3)
    assert apply_rows(b.state, b.shared, merge_rows(deltas, b.state)) == 1
    assert apply_rows(b.state, b.shared, merge_rows(deltas, b.state)) == 0
    assert (int(b.state.ts[0]), int(b.state.prev_ts[0])) == (200, 100)


def test_equal_times_are_decided_by_seq_whatever_the_order() -> None:
    def delta(seq: int, occupied: int) -> list[StateDelta]:
        return Member(1).process([(0, 500, seq, [9, occupied, 0, 0, 0])])

    for order in ([delta(41, 1), delta(42, 2)], [delta(42, 2), delta(41, 1)]):
        m = Member(1)
        for d in order:
            apply_rows(m.state, m.shared, merge_rows(d, m.state))
        assert (int(m.state.seq[0]), int(m.state.values[0, 1])) == (42, 2)


@given(
    values=st.lists(
        st.one_of(
            st.floats(min_value=-10, max_value=1e6, allow_nan=False),
            st.sampled_from([float(b) for b in LAG_BUCKETS]),
        ),
        max_size=200,
    )
)
def test_a_bulk_histogram_exposes_exactly_what_a_histogram_observed_one_by_one_does(
    values: list[float],
) -> None:
    one, many = CollectorRegistry(), CollectorRegistry()
    h1 = Histogram("lag", "x", buckets=LAG_BUCKETS, registry=one)
    h2 = BulkHistogram("lag", "x", buckets=LAG_BUCKETS, registry=many)
    for v in values:
        h1.observe(v)
    h2.observe_many(np.array(values, dtype=np.float64))

    def samples(r: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for metric in r.collect()
            for s in metric.samples
            if not s.name.endswith("_created")
        }

    got, want = samples(many), samples(one)
    assert got.keys() == want.keys()
    for key, value in want.items():
        assert got[key] == pytest.approx(value, rel=1e-12, abs=1e-9), key
    assert got[("lag_count", ())] == len(values)


def test_the_state_topic_is_outside_the_device_namespace() -> None:
    topic = topics.ingest_state("pantau-ingest")
    assert topic == "pantau-internal/v1/ingest/pantau-ingest/state"
    assert topics.is_internal(topic)
    assert not topics.is_internal("pantau/v1/rs-a/gw-a/readings")
    with pytest.raises(TopicError):
        topics.parse(topic)  # never mistaken for a gateway's message
    for bad in ("", "a/b", "+", "#", "-x", "g" * 65):
        with pytest.raises(TopicError):
            topics.ingest_state(bad)


def test_hello_travels_even_without_sensors_and_unknown_flags_are_refused() -> None:
    state = SensorState(n_sensors=3)
    (hello,) = deltas_of(state, np.zeros(0, np.intp), DIGEST, hello=True)
    raw = encode_state_delta(hello)
    got = decode_state_delta(raw)
    assert (got.hello, len(got)) == (True, 0)
    assert deltas_of(state, np.zeros(0, np.intp), DIGEST) == []
    assert decode_state_delta(encode_state_delta(_delta(2, 5))).hello is False
    with pytest.raises(PayloadError, match="flags"):
        decode_state_delta(raw[:6] + b"\x02" + raw[7:])

"""The edge's reading and envelope give the contract's bytes, so the spool's bytes are publishable
as they are: the readings are validated once (at the frame) and encoded once (into the spool)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from contract.payload import Batch, ClockSource, Reading, SensorKind, encode
from edge.envelope import batch_payload
from edge.reading import EdgeReading, encode_readings

T0 = 1_700_000_000_000

_beds = st.builds(
    lambda sensor, seq, ts, occupied, clock: EdgeReading(
        sensor,
        SensorKind.BED,
        ts,
        seq,
        {
            "capacity": 40,
            "occupied": occupied,
            "suspect": occupied // 4,
            "confirmed": 0,
            "waiting": 2,
        },
        clock,
    ),
    st.from_regex(r"[a-z][a-z0-9-]{0,20}", fullmatch=True),
    st.integers(0, 2**40),
    st.integers(T0, T0 + 10**9),
    st.integers(0, 40),
    st.sampled_from(list(ClockSource)),
)


@given(
    readings=st.lists(_beds, min_size=1, max_size=20),
    seq=st.integers(0, 2**53),
    offset=st.none() | st.integers(-(10**6), 10**6),
)
def test_a_spooled_batch_published_as_is_is_the_contracts_encoding_of_that_batch(
    readings: list[EdgeReading], seq: int, offset: int | None
) -> None:
    body = encode_readings(readings)
    payload = batch_payload(gw="gw-01", seq=seq, sent=T0, clock_offset_ms=offset, body=body)
    models = [Reading.model_validate(r, from_attributes=True) for r in readings]
    batch = Batch(gw="gw-01", seq=seq, sent=T0, clock_offset_ms=offset, readings=models)
    assert payload == encode(batch)
    assert Batch.model_validate_json(payload) == batch


def test_an_edge_reading_and_a_contract_reading_encode_to_the_same_bytes() -> None:
    values = {"issued": 12, "served": 7, "counters_open": 2}
    edge = EdgeReading("q-mpp", SensorKind.QUEUE, T0, 3, values, ClockSource.GATEWAY)
    model = Reading(
        sensor="q-mpp",
        kind=SensorKind.QUEUE,
        ts=T0,
        seq=3,
        values=values,
        clock=ClockSource.GATEWAY,
    )
    assert encode_readings([edge]) == encode_readings([model]) == b"[" + encode(model) + b"]"

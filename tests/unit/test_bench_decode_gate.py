"""The decode-only ingester's bound (bench/ingest_throughput/decode_gate.py): a body is written
only once its readings were decoded, and the decoder keeps pace with the writers instead of
running through the backlog ahead of them."""

from __future__ import annotations

import threading

from bench.ingest_throughput.decode_gate import DecodeGate, readings_needed


def test_each_body_needs_its_share_of_the_readings_rounded_up() -> None:
    # raw bodies of 5000, 5000 and 2000 lines with a rollup body between: 24 000 readings
    assert readings_needed([5000, 0, 5000, 2000], 24_000) == [10_000, 10_000, 20_000, 24_000]
    # a share that falls between readings is rounded up, never down
    assert readings_needed([1, 1, 1], 10) == [4, 7, 10]


def test_no_raw_lines_need_no_readings() -> None:
    assert readings_needed([0, 0], 100) == [0, 0]


def test_a_take_waits_for_its_readings_and_the_decoder_for_the_writers() -> None:
    payloads = [(bytes([i]), 10) for i in range(10)]
    ahead = 25
    seen: list[tuple[int, int, bool]] = []
    took_40 = threading.Event()

    def decode(payload: bytes) -> None:
        # the payload's index, how far the decoder was past the writers, whether take(40)
        # had returned
        seen.append((payload[0], gate.decoded - gate.taken, took_40.is_set()))

    gate = DecodeGate(payloads, decode, ahead=ahead)
    gate.start()
    for needed in (10, 20, 40):
        gate.take(needed)
        assert gate.decoded >= needed
    took_40.set()
    for needed in (70, 100):
        gate.take(needed)
    gate.join()
    assert [i for i, _, _ in seen] == list(range(10))
    assert all(past < ahead for _, past, _ in seen)
    # payload 3 holds readings 31-40: take(40) cannot have returned while it was decoded
    assert not seen[3][2]
    assert gate.decoded == 100


def test_a_body_larger_than_the_lead_does_not_stall_the_decoder() -> None:
    gate = DecodeGate([(b"x", 10)] * 10, lambda _p: None, ahead=5)
    gate.start()
    gate.take(60)  # more than `ahead` past what was taken: the decoder goes on to it
    gate.take(100)
    gate.join()
    assert (gate.decoded, gate.taken) == (100, 100)

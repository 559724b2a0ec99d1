"""Batch ``seq`` behaves as docs/protocol.md ("Batch sequence numbers") says, through the real
broker and ingester into InfluxDB: a gap, a step back, a wrap to 0 and the largest u64 are all
stored; only a resend of the same seq with the same readings is dropped; a negative seq or one
above u64 refuses the batch as ``schema_violation``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from city import Registry
from cloud.influx import InfluxHTTP
from contract import KIND_CODES, SensorKind, encode_binary_batch
from pantau.services import InfluxDB, Mosquitto, free_port
from tests.doc_support import PROTOCOL
from tests.ingest_support import (
    ingester_thread,
    metric,
    now_ms,
    publish,
    publisher,
    settings_for,
    stored_rows,
    wait_for,
)

pytestmark = pytest.mark.integration

GW = "gw-kariadi"
SENSOR = "bed-kariadi-icu"
TOPIC = f"pantau/v1/rs-kariadi/{GW}/readings"
U64_MAX = 2**64 - 1


def _batch(seq: int, reading: int, t0: int, *, sent: int | None = None) -> bytes:
    """A JSON batch of one bed reading; ``reading`` picks its time and seq, so every reading
    sent is told apart in storage. (The stdlib encoder: orjson refuses integers above u64.)"""
    doc: dict[str, Any] = {
        "v": 1,
        "gw": GW,
        "seq": seq,
        "sent": t0 + 100_000 if sent is None else sent,
        "readings": [
            {
                "sensor": SENSOR,
                "kind": "bed",
                "ts": t0 + reading * 1000,
                "seq": reading,
                "values": {
                    "capacity": 24,
                    "occupied": reading,
                    "suspect": 0,
                    "confirmed": 0,
                    "waiting": 0,
                },
            }
        ],
    }
    return json.dumps(doc).encode()


def _binary(seq: int, reading: int, t0: int) -> bytes:
    return encode_binary_batch(
        gw=GW,
        seq=seq,
        sent=t0 + 100_000,
        sensors=[SENSOR],
        kinds=[KIND_CODES[SensorKind.BED]],
        sensor=[0],
        ts=[t0 + reading * 1000],
        reading_seq=[reading],
        values=[[24, reading, 0, 0, 0]],
    )


def test_batch_seq_gaps_steps_back_and_wraps_are_stored_only_exact_resends_dropped(
    mosquitto: Mosquitto, influxdb: InfluxDB, city: Registry, tmp_path: Path
) -> None:
    t0 = now_ms() - 120_000
    port = free_port()
    messages = [
        _batch(100, 1, t0),  # stored
        _batch(100, 1, t0, sent=t0 + 100_500),  # resend, restamped `sent`: duplicate
        _batch(103, 2, t0),  # a gap of 2: stored, nothing else happens
        _batch(7, 3, t0),  # a step back (numbering restarted): stored
        _batch(100, 4, t0),  # a known seq with other readings: not a duplicate, stored
        _batch(U64_MAX, 5, t0),  # the largest seq: stored
        _batch(0, 6, t0),  # wrapped to 0: stored
        _batch(0, 6, t0),  # resend: duplicate
        _batch(-1, 7, t0),  # negative: schema_violation, batch refused
        _batch(U64_MAX + 1, 8, t0),  # above u64: schema_violation, batch refused
        _binary(U64_MAX, 9, t0),  # binary, the largest u64: stored
        _batch(1, 10, t0),  # the last one; once it is stored, every earlier one is decided
    ]
    settings = settings_for(mosquitto, influxdb, tmp_path, metrics_port=port)
    with (
        ingester_thread(settings, city),
        publisher(mosquitto, GW) as pub,
        InfluxHTTP(url=influxdb.url, database="pantau") as influx,
    ):
        for message in messages:
            publish(pub, TOPIC, message)
        wait_for(lambda: any(r[2] == 10 for r in stored_rows(influx)), "the last batch stored")
        stored = sorted(r[2] for r in stored_rows(influx))
        duplicates = metric(port, "pantau_ingest_duplicates_dropped_total")
        refused = metric(port, 'pantau_ingest_dead_letters_total{reason="schema_violation"}')
    assert stored == [1, 2, 3, 4, 5, 6, 9, 10]
    assert duplicates == 2.0
    assert refused == 2.0


def test_the_documented_seq_limits_are_the_ones_tested() -> None:
    text = PROTOCOL.replace("\n", " ")
    assert f"0 to {U64_MAX:,} ".replace(",", " ") in text
    assert U64_MAX == 18_446_744_073_709_551_615
    assert "## Batch sequence numbers" in PROTOCOL

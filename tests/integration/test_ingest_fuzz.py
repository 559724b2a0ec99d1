"""Nothing a device sends stops ingestion (issue 9), fuzzed: hypothesis-made garbage on every
topic a device may publish, through the real broker to the real ``pantau ingest run`` process
and a real InfluxDB; each message ends acknowledged and stored or dead-lettered exactly as the
contract decides for it alone, while good readings sent in between are all stored.
"""

from __future__ import annotations

import copy
import json
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from city import Registry
from cloud.influx import InfluxHTTP
from cloud.ingest import CityIndex
from cloud.ingest.deadrecords import fingerprint
from cloud.ingest.decode import BatchDedup, decode_window
from cloud.ingest.decode import Message as Received
from contract import KIND_CODES, STAT_TYPES, RejectReason, StatType, encode_binary_batch
from pantau.services import InfluxDB, Mosquitto
from tests.ingest_poison_support import (
    DEEP,
    GOOD,
    PAST_THE_BROKER,
    alive,
    dead_by_reason,
    nothing_left_at_the_broker,
    poison_ingester,
    settled,
    status_doc,
    topic_of,
)
from tests.ingest_support import (
    Message,
    make_stream,
    now_ms,
    publishing,
    scrape,
    stored_rows,
    wait_for,
)

pytestmark = pytest.mark.integration


FUZZED = ("gw-johar", "gw-mpp", "kiosk-candisari")  # crowd, queue, direct queue kiosk
_JOHAR = {"v": 1, "gw": "gw-johar", "seq": 7, "sent": 1_764_000_000_000}
_CROWD = {"kind": "crowd", "ts": 1_764_000_000_000, "seq": 1}
_CROWD["values"] = {"entries": 5, "exits": 1, "occupancy": 4}
ARRAY_SENSOR = orjson.dumps(_JOHAR | {"readings": [_CROWD | {"sensor": ["crowd-johar-utara"]}]})
ARRAY_KIND = orjson.dumps(
    _JOHAR | {"readings": [_CROWD | {"sensor": "crowd-johar-utara", "kind": ["crowd"]}]}
)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=16,
)


def _valid(city: Registry, gw: str, channel: str, t: int) -> dict[str, Any]:
    """A valid document of ``channel`` for gateway ``gw``, to be mutated."""
    sensors = city.sensors_of(gateway=gw)
    values = {
        "crowd": {"entries": 9, "exits": 4, "occupancy": 5},
        "queue": {"issued": 9, "served": 4, "counters_open": 2},
    }
    reading = [
        {
            "sensor": s.id,
            "kind": s.kind.value,
            "ts": t - 10 * i,
            "seq": i,
            "values": values[s.kind.value],
        }
        for i, s in enumerate(sensors)
    ]
    if channel == "readings":
        return {"v": 1, "gw": gw, "seq": t % 100_000, "sent": t, "readings": reading}
    if channel == "reading":
        return {"v": 1} | reading[0]
    stats = {
        name: 1.5 if kind is StatType.SECONDS else "up" if kind is StatType.TEXT else 2
        for name, kind in list(STAT_TYPES.items())[:12]
    }
    return status_doc(gw, stats=stats, sensors_last_seen={sensors[0].id: t})


def _binary(city: Registry, gw: str, t: int) -> bytes:
    """A valid binary batch of every sensor of ``gw``, to be mutated."""
    sensors = city.sensors_of(gateway=gw)
    return encode_binary_batch(
        gw=gw,
        seq=t % 100_000,
        sent=t,
        sensors=[s.id for s in sensors],
        kinds=[KIND_CODES[s.kind] for s in sensors],
        sensor=list(range(len(sensors))),
        ts=[t - 10 * i for i in range(len(sensors))],
        reading_seq=list(range(len(sensors))),
        values=[[9, 4, 2] for _ in sensors],  # crowd (entries, exits, occupancy) / queue
    )


def _slots(doc: Any, out: list[tuple[Any, Any]]) -> list[tuple[Any, Any]]:
    """Every (container, key) of a document, for mutations."""
    if isinstance(doc, dict):
        for key, value in doc.items():
            out.append((doc, key))
            _slots(value, out)
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            out.append((doc, i))
            _slots(value, out)
    return out


@st.composite
def device_messages(draw: st.DrawFn, city: Registry) -> tuple[str, str, bytes]:
    """(gateway, topic, payload): arbitrary bytes, arbitrary JSON, or a valid message of the
    topic's channel with one to three mutations, on a device's readings, reading or status
    topic (sometimes under another site or a site segment that is no id at all: the ACL lets a
    device publish under any)."""
    gw = draw(st.sampled_from(FUZZED))
    channel = draw(st.sampled_from(["readings", "reading", "status"]))
    site = draw(st.sampled_from([None, None, None, "rs-kariadi"]))
    if draw(st.integers(0, 9)) == 0:
        # any site segment the ACL's '+' lets through (the broker refuses control characters)
        printable = st.characters(min_codepoint=0x20, max_codepoint=0x7E, exclude_characters="/+#")
        site = draw(st.text(printable, min_size=1, max_size=10))
    topic = topic_of(city, gw, channel, site=site)
    form = draw(st.sampled_from(["bytes", "json", "mutated", "mutated", "valid", "binary"]))
    if form == "bytes":
        return gw, topic, draw(st.binary(max_size=300))
    if form == "binary":  # a valid binary batch with bytes flipped, cut or added
        raw = bytearray(_binary(city, gw, now_ms() - 2_000))
        for _ in range(draw(st.integers(1, 4))):
            at = draw(st.integers(0, len(raw) - 1))
            op = draw(st.sampled_from(["flip", "flip", "cut", "insert"]))
            if op == "flip":
                raw[at] = draw(st.integers(0, 255))
            elif op == "cut":
                del raw[at:]
            else:
                raw[at:at] = draw(st.binary(min_size=1, max_size=8))
            if not raw:
                break
        return gw, topic, bytes(raw)
    if form == "json":
        return gw, topic, json.dumps(draw(json_values)).encode()
    doc = _valid(city, gw, channel, now_ms() - 2_000)
    if form == "mutated":
        for _ in range(draw(st.integers(1, 3))):
            slots = _slots(doc, [])
            if not slots:
                break
            parent, key = draw(st.sampled_from(slots))
            op = draw(st.sampled_from(["set", "set", "delete", "add"]))
            if op == "set":
                parent[key] = draw(json_values)
            elif op == "delete":
                del parent[key]
            elif isinstance(parent, dict):
                parent[draw(st.text(max_size=10))] = draw(json_values)
            else:
                parent.append(draw(json_values))
    return gw, topic, json.dumps(copy.deepcopy(doc)).encode()


def test_fuzzed_device_messages_never_stop_ingestion_and_each_is_accounted_for(
    mosquitto: Mosquitto, influxdb: InfluxDB, city: Registry, tmp_path: Path
) -> None:
    """Hypothesis publishes garbage through the broker to the running ingester, a good batch
    after every fifth message. The process never exits; every message is acknowledged (a
    restart on the same session finds nothing left); each was stored or dead-lettered exactly
    as the contract decides for it alone (the dead-letter counts by reason are exactly those of
    decoding each message by itself), none as internal_error; and every good reading is
    stored."""
    stream = make_stream(city, [GOOD], batches=40, t0=now_ms() - 120_000)
    good = iter(stream.messages)
    index = CityIndex.from_registry(city)
    oracle = BatchDedup()
    expected: Counter[str] = Counter()
    stored_before: set[tuple[bytes, str]] = set()
    repeated = [0]
    published = [0, 0]  # fuzzed, good

    with (
        poison_ingester(mosquitto, influxdb, tmp_path) as ing,
        publishing(mosquitto, [GOOD, *FUZZED], role=PAST_THE_BROKER) as pub,
        InfluxHTTP(url=influxdb.url, database="pantau") as influx,
    ):

        @settings(
            max_examples=80,
            derandomize=True,
            database=None,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(device_messages(city))
        @example(("gw-johar", "pantau/v1/pasar-johar/gw-johar/readings", DEEP))
        @example(("kiosk-candisari", "pantau/v1/kec-candisari/kiosk-candisari/reading", DEEP))
        @example(
            (
                "gw-mpp",
                "pantau/v1/mpp-semarang/gw-mpp/status",
                b'{"v":1,"gw":"gw-mpp","state":"online","ts":1,"stats":{"a\\nb\\\\":1}}',
            )
        )
        @example(("gw-mpp", "pantau/v1/mpp-semarang/gw-mpp/status", b""))
        # found by this test: an id or kind that is an array failed the whole window
        @example(("gw-johar", "pantau/v1/pasar-johar/gw-johar/readings", ARRAY_SENSOR))
        @example(("gw-johar", "pantau/v1/pasar-johar/gw-johar/readings", ARRAY_KIND))
        def publish_one(message: tuple[str, str, bytes]) -> None:
            gw, topic, payload = message
            t = now_ms()
            # What the contract says about this message alone, as the ingester will.
            alone = decode_window(
                [Received(topic=topic, payload=payload, received_ms=t)], index, t, dedup=oracle
            )
            oracle.remember(alone.batch_keys)
            # The store keeps each (message, reason) once: a repeat is counted as a duplicate,
            # not a dead letter (docs/adr/0008).
            for rej in alone.rejections:
                key = (fingerprint(topic, payload), rej.reason.value)
                if key in stored_before:
                    repeated[0] += 1
                else:
                    expected[rej.reason.value] += 1
            stored_before.update(
                (fingerprint(topic, payload), r.reason.value) for r in alone.rejections
            )
            pub.publish(Message(gw, topic, payload, ()))
            published[0] += 1
            if published[0] % 5 == 0:
                pub.publish(next(good))
                published[1] += 1

        publish_one()
        rest = list(good)
        marker = rest.pop()
        for msg in rest:
            pub.publish(msg)
            published[1] += 1
        total = sum(published)
        wait_for(lambda: settled(ing, total), "every message through a window", timeout=60)
        assert alive(ing), ing.log.read_text()[-3000:]
        assert ing.metric("pantau_ingest_messages_total") == total  # each delivered once
        dead = dead_by_reason(ing.port)
        duplicates = scrape(ing.port)["pantau_ingest_dead_letters_duplicate_total"]
        ours = {s.id for s in city.sensors_of(gateway=GOOD)}
        rows = {r for r in stored_rows(influx) if r[0] in ours}
        at_broker = nothing_left_at_the_broker(ing, mosquitto, influxdb, tmp_path, pub, marker)
    assert published[0] == 86  # 80 drawn + 6 explicit examples (derandomized: always these)
    assert dead == expected
    assert duplicates == repeated[0]
    assert dead[RejectReason.INTERNAL_ERROR.value] == 0
    assert sum(dead.values()) > published[0] // 2  # mostly garbage, as intended
    assert rows == {r for m in stream.messages[:-1] for r in m.rows}
    assert len(rows) == 39 * 6
    assert at_broker == 1

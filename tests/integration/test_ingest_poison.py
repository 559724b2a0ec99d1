"""Nothing a device sends stops ingestion (issue 9). The real ``pantau ingest run`` process, the
real broker with Pantau's ACL and a real InfluxDB: poison messages that used to kill the
ingester for good each end acknowledged and stored or dead-lettered, while good readings sent
in between are all stored (hypothesis-made garbage: test_ingest_fuzz.py).
"""

from __future__ import annotations

import copy
from collections import Counter
from pathlib import Path

import orjson
import pytest

from city import Registry
from cloud.influx import InfluxHTTP
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
)
from tests.ingest_support import (
    Message,
    make_stream,
    now_ms,
    publishing,
    stored_rows,
    wait_for,
)

pytestmark = pytest.mark.integration


def _listening_address(port: int) -> str:
    """The local IPv4 address the socket listening on ``port`` is bound to (/proc/net/tcp)."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        addr, hex_port = local.split(":")
        if int(hex_port, 16) == port and state == "0A":  # 0A: LISTEN
            return ".".join(str(b) for b in reversed(bytes.fromhex(addr)))
    raise AssertionError(f"nothing listens on port {port}")


def test_poison_messages_are_dead_lettered_and_ingestion_goes_on(
    mosquitto: Mosquitto, influxdb: InfluxDB, city: Registry, tmp_path: Path
) -> None:
    """Each message of issue 9 that crashed the ingester (and, unacknowledged, crashed it again
    after every restart) or slipped through is now refused with its reason or stored without
    harm, and the good batches around them are all stored."""
    stream = make_stream(city, [GOOD], batches=12, t0=now_ms() - 60_000)
    kariadi = "pantau/v1/rs-kariadi/gw-kariadi"
    single = {"v": 1, "sensor": "bed-kariadi-icu", "kind": "bed", "seq": 1}
    single["values"] = {"capacity": 24, "occupied": 1, "suspect": 0, "confirmed": 0, "waiting": 0}
    good_batch = orjson.loads(stream.messages[0].payload)
    huge = copy.deepcopy(good_batch)
    huge["readings"][0]["values"]["waiting"] = 424242
    poisons: list[tuple[str, bytes]] = [
        (f"{kariadi}/readings", DEEP),  # 1(a): RecursionError in the json fallback
        (f"{kariadi}/reading", DEEP),
        # 1(b): LineProtocolError from the status writer; now those names are just dropped
        (
            f"{kariadi}/status",
            orjson.dumps(status_doc(GOOD, stats={"a\nb": 1, "c\\": 2, "frames": 3})),
        ),
        # 2: 5 000 made-up stats were 5 000 new field keys of gateway_status
        (
            f"{kariadi}/status",
            orjson.dumps(status_doc(GOOD, stats={f"k{i}": i for i in range(5000)})),
        ),
        (f"{kariadi}/readings", orjson.dumps(good_batch | {"v": True, "seq": 900})),
        (f"{kariadi}/readings", orjson.dumps(good_batch | {"v": 1.0, "seq": 901})),
        (f"{kariadi}/status", orjson.dumps(status_doc(GOOD, ts="1"))),
        (f"{kariadi}/readings", orjson.dumps(huge).replace(b"424242", b"1e400")),
        (f"{kariadi}/reading", orjson.dumps(single)),  # not a direct device
    ]
    expected = Counter(
        {
            "invalid_json": 2,
            "unsupported_version": 2,
            "schema_violation": 1,
            "non_finite": 1,
            "topic_mismatch": 1,
        }
    )
    with (
        poison_ingester(mosquitto, influxdb, tmp_path) as ing,
        publishing(mosquitto, [GOOD], role=PAST_THE_BROKER) as pub,
        InfluxHTTP(url=influxdb.url, database="pantau") as influx,
    ):
        for i, good in enumerate(stream.messages[:-1]):
            pub.publish(good)
            if i < len(poisons):
                topic, payload = poisons[i]
                pub.publish(Message(GOOD, topic, payload, ()))
        published = len(stream.messages) - 1 + len(poisons)
        wait_for(lambda: settled(ing, published), "every message through a window")
        assert alive(ing), ing.log.read_text()[-3000:]
        assert ing.metric("pantau_ingest_messages_total") == published
        dead = dead_by_reason(ing.port)
        dropped = ing.metric("pantau_ingest_status_stats_dropped_total")
        rows = stored_rows(influx)
        field_keys = {
            row["fieldKey"]: row["fieldType"]
            for series in influx.query("SHOW FIELD KEYS FROM gateway_status")
            for row in series.rows()
        }
        at_broker = nothing_left_at_the_broker(
            ing, mosquitto, influxdb, tmp_path, pub, stream.messages[-1]
        )
    assert dead == expected
    assert sorted(rows) == sorted(r for m in stream.messages[:-1] for r in m.rows)
    assert len(rows) == 11 * 6  # batches before the marker x gw-kariadi's sensors
    assert dropped == 5002  # 2 unwritable names + 5 000 made-up ones
    assert field_keys == {"online": "integer", "state": "string", "frames": "integer"}
    assert at_broker == 1  # nothing was left unacknowledged in the session


def test_metrics_listen_on_loopback_and_routine_writes_are_not_logged_at_info(
    mosquitto: Mosquitto, influxdb: InfluxDB, city: Registry, tmp_path: Path
) -> None:
    """Issue 9's smalls: the metrics endpoint listened on 0.0.0.0 and every InfluxDB write was
    an INFO line (httpx's request log). Now loopback unless PANTAU_METRICS_HOST says otherwise,
    and an INFO log of 10 stored batches holds no per-write line."""
    stream = make_stream(city, [GOOD], batches=10, t0=now_ms() - 60_000)
    with (
        poison_ingester(mosquitto, influxdb, tmp_path) as ing,
        publishing(mosquitto, [GOOD], role=PAST_THE_BROKER) as pub,
    ):
        for msg in stream.messages:
            pub.publish(msg)
        wait_for(lambda: settled(ing, 10), "10 batches through a window")
        assert ing.metric("pantau_ingest_messages_total") == 10
        writes = ing.metric("pantau_ingest_write_seconds_count")
        address = _listening_address(ing.port)
        log = ing.log.read_text()
    assert address == "127.0.0.1"
    assert writes > 0  # InfluxDB was written to (how many times depends on the windows)
    assert "HTTP Request" not in log
    assert "/write" not in log


# ---- fuzz ---------------------------------------------------------------------------------

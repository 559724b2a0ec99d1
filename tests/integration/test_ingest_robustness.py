"""The ingester as operators run it (``pantau ingest run``, a subprocess configured by PANTAU_*
variables) against a real Mosquitto with persistence and a real InfluxDB, while a known stream
flows: killed, its database stopped, its broker restarted. Every time, what InfluxDB holds in
the end is exactly what was sent: no reading lost, none stored twice."""

from __future__ import annotations

import time
from contextlib import closing
from pathlib import Path

import pytest

from city import Registry
from cloud.influx import InfluxHTTP
from contract import MAX_PAYLOAD_BYTES
from pantau.services import InfluxDB, Mosquitto
from tests.ingest_process_support import ingest_process
from tests.ingest_support import (
    StreamThread,
    make_stream,
    now_ms,
    publishing,
    raw_count,
    stored_rows,
    wait_for,
)
from tests.link_proxy_support import FreezingProxy

pytestmark = pytest.mark.integration

GATEWAYS = ["gw-kariadi", "gw-wongsonegoro", "gw-johar", "gw-simpanglima", "gw-mpp"]
#: Mid-stream tests: the stream (40 rounds of the 5 gateways' batches, 15 readings a round)
#: holds after 20 rounds, 300 readings, until the test has acted, so the kill or restart lands
#: before the end of the stream on any machine.
HOLD_AT = 20 * len(GATEWAYS)


def test_sigkill_mid_stream_then_restart_stores_every_reading_exactly_once(
    mosquitto: Mosquitto, influxdb: InfluxDB, city: Registry, tmp_path: Path
) -> None:
    """A power cut of the ingester while readings flow: messages it had not acknowledged, and
    those sent while it is down, wait in its persistent session, the restarted process stores
    them, and redelivered ones overwrite themselves.

    Neither the machine's speed nor luck decides the moment: the stream holds at HOLD_AT
    messages, then InfluxDB's connections are cut (a proxy) and one more round is sent, which
    the ingester can only hold unacknowledged; the kill comes then, and the stream goes on
    while the ingester is down."""
    stream = make_stream(city, GATEWAYS, batches=40, t0=now_ms() - 60_000)
    sent = stream.rows
    link = FreezingProxy(target=(influxdb.host, influxdb.port))
    link.start()
    with (
        closing(link),
        ingest_process(mosquitto, influxdb, tmp_path, PANTAU_INFLUX_URL=link.http_url) as ing,
        publishing(mosquitto, GATEWAYS) as pub,
        InfluxHTTP(url=influxdb.url, database="pantau") as influx,
    ):
        flow = StreamThread(pub, stream, pause_s=0.01, hold_at=HOLD_AT)
        flow.start()
        wait_for(lambda: ing.metric("pantau_ingest_readings_stored_total") >= 50, "some stored")
        link.cut()
        flow.resume(hold_at=HOLD_AT + len(GATEWAYS))
        wait_for(
            lambda: (
                flow.sent == HOLD_AT + len(GATEWAYS)
                and ing.metric("pantau_ingest_unacked_messages") > 0
            ),
            "a round sent that the ingester holds unacknowledged",
        )
        ing.kill()
        at_kill = (flow.sent, raw_count(influx))
        flow.resume()  # the gateways go on while the ingester is down: queued in its session
        ing.env["PANTAU_INFLUX_URL"] = influxdb.url
        ing.start()
        flow.finish()
        wait_for(lambda: raw_count(influx) >= len(sent), "every reading stored", timeout=30)
        rows = stored_rows(influx)
    assert at_kill[0] == HOLD_AT + len(GATEWAYS) < len(stream.messages)
    assert 50 <= at_kill[1] <= 20 * 15 < len(sent)  # the round after HOLD_AT is not stored
    assert len(sent) == 40 * (6 + 4 + 2 + 2 + 1)  # batches x the gateways' sensors
    assert len(rows) == len(sent)
    assert sorted(rows) == sorted(sent)


def test_influxdb_outage_loses_nothing_and_holds_at_most_receive_maximum_messages(
    mosquitto: Mosquitto, influxdb: InfluxDB, city: Registry, tmp_path: Path
) -> None:
    """While InfluxDB is down the ingester holds no more than Receive Maximum unacknowledged
    messages (the backlog waits at the broker) and its memory stays within what those can
    take; when InfluxDB is back, everything is stored."""
    receive_maximum = 3
    gateways = ["gw-kariadi", "gw-johar"]
    stream = make_stream(city, gateways, batches=75, t0=now_ms() - 900_000, pad_readings=1000)
    biggest = max(len(m.payload) for m in stream.messages)
    assert 100_000 < biggest <= MAX_PAYLOAD_BYTES
    # Per held message: its bytes (at most MAX_PAYLOAD_BYTES) and, for the window being
    # written, its decoded form: parsed JSON objects, columns and line-protocol text, about
    # ten times the JSON. Holding the whole backlog, even undecoded, would break the bound.
    allowance = receive_maximum * MAX_PAYLOAD_BYTES * 12
    assert sum(len(m.payload) for m in stream.messages) > 1.5 * allowance
    warmup, rest = stream.messages[:2], stream.messages[2:]
    sent = stream.rows
    with (
        ingest_process(
            mosquitto, influxdb, tmp_path, PANTAU_MQTT_RECEIVE_MAXIMUM=str(receive_maximum)
        ) as ing,
        publishing(mosquitto, gateways) as pub,
        InfluxHTTP(url=influxdb.url, database="pantau") as influx,
    ):
        for msg in warmup:
            pub.publish(msg)
        wait_for(lambda: raw_count(influx) == 2000, "warm-up stored")
        baseline = ing.rss_bytes()
        influxdb.stop()
        flow = StreamThread(pub, type(stream)(messages=rest))
        flow.start()
        wait_for(
            lambda: ing.metric("pantau_ingest_unacked_messages") == receive_maximum,
            "the ingester to hold Receive Maximum messages",
        )
        flow.finish()  # the whole backlog is at the broker now
        rss = [ing.rss_bytes()]
        for _ in range(10):
            time.sleep(0.1)
            rss.append(ing.rss_bytes())
        held = ing.metric("pantau_ingest_unacked_messages")
        held_max = ing.metric("pantau_ingest_unacked_messages_max")
        retrying = ing.metric("pantau_ingest_write_retrying")
        influxdb.start()
        wait_for(lambda: raw_count(influx) >= len(sent), "every reading stored", timeout=40)
        rows = stored_rows(influx)
    bound = baseline + allowance
    assert retrying == 1
    assert held == held_max == receive_maximum
    assert max(rss) <= bound, (baseline, rss, bound)
    assert len(rows) == len(sent)
    assert sorted(rows) == sorted(sent)


def test_broker_restart_mid_stream_loses_nothing(
    mosquitto: Mosquitto, influxdb: InfluxDB, city: Registry, tmp_path: Path
) -> None:
    """Mosquitto (with persistence) stops and starts mid-stream: the ingester's session and
    the messages queued in it survive, the gateways resend what the broker never
    acknowledged, and InfluxDB ends up with every reading once. The stream holds at HOLD_AT
    messages until the broker is back, so the restart comes before its end on any machine."""
    stream = make_stream(city, GATEWAYS, batches=40, t0=now_ms() - 60_000)
    sent = stream.rows
    with (
        ingest_process(mosquitto, influxdb, tmp_path) as ing,
        publishing(mosquitto, GATEWAYS) as pub,
        InfluxHTTP(url=influxdb.url, database="pantau") as influx,
    ):
        flow = StreamThread(pub, stream, pause_s=0.01, hold_at=HOLD_AT)
        flow.start()
        wait_for(lambda: ing.metric("pantau_ingest_readings_stored_total") >= 50, "some stored")
        mosquitto.restart(down_s=1.0)
        at_restart = flow.sent
        flow.finish()
        wait_for(lambda: raw_count(influx) >= len(sent), "every reading stored", timeout=30)
        rows = stored_rows(influx)
        subscribed = ing.metric("pantau_ingest_subscribed")
    assert 0 < at_restart <= HOLD_AT < len(stream.messages), "the restart must come mid-stream"
    assert subscribed == 1
    assert len(rows) == len(sent)
    assert sorted(rows) == sorted(sent)


def test_influxdb_outage_holds_at_most_held_max_bytes_of_payload(
    mosquitto: Mosquitto, influxdb: InfluxDB, city: Registry, tmp_path: Path
) -> None:
    """Receive Maximum counts messages, not bytes (10 000 x 256 KiB would be 2.5 GiB): while
    InfluxDB is down the ingester also stops reading the socket once it holds
    ``held_max_bytes`` of payload, and stores everything when InfluxDB is back."""
    held_max = 600 * 1024
    gateways = ["gw-kariadi", "gw-johar"]
    stream = make_stream(city, gateways, batches=40, t0=now_ms() - 900_000, pad_readings=1000)
    biggest = max(len(m.payload) for m in stream.messages)
    assert 100_000 < biggest < held_max / 2  # so the budget holds a few messages, not one
    warmup, rest = stream.messages[:2], stream.messages[2:]
    with (
        ingest_process(
            mosquitto,
            influxdb,
            tmp_path,
            PANTAU_MQTT_RECEIVE_MAXIMUM="1000",
            PANTAU_HELD_MAX_BYTES=str(held_max),
            PANTAU_WINDOW_MAX_BYTES=str(256 * 1024),
        ) as ing,
        publishing(mosquitto, gateways) as pub,
        InfluxHTTP(url=influxdb.url, database="pantau") as influx,
    ):
        for msg in warmup:
            pub.publish(msg)
        wait_for(lambda: raw_count(influx) == 2000, "warm-up stored")
        influxdb.stop()
        flow = StreamThread(pub, type(stream)(messages=rest))
        flow.start()
        wait_for(
            lambda: ing.metric("pantau_ingest_held_bytes") + biggest > held_max,
            "the ingester to fill its byte budget",
        )
        flow.finish()  # the whole backlog is at the broker now
        held: list[float] = []
        for _ in range(10):
            time.sleep(0.1)
            held.append(ing.metric("pantau_ingest_held_bytes"))
        unacked = ing.metric("pantau_ingest_unacked_messages")
        influxdb.start()
        wait_for(lambda: raw_count(influx) >= len(stream.rows), "every reading stored", timeout=40)
        rows = stored_rows(influx)
    assert max(held) <= held_max
    assert min(held) + biggest > held_max  # still full: the rest waited at the broker
    assert unacked <= held_max // 100_000 + 1  # far below Receive Maximum
    assert sorted(rows) == sorted(stream.rows)

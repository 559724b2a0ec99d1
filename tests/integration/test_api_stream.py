"""The live stream (/v1/stream) on a real Mosquitto with Pantau's ACL and a real uvicorn: what a
gateway publishes reaches every connected client as one small ``change`` event, and a client
that reconnects with Last-Event-ID receives exactly what it missed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from city import Registry
from cloud.api import ApiSettings, create_app
from contract import KIND_CODES, Batch, Channel, Reading, SensorKind, encode, topics
from contract.binary import encode_binary_batch
from pantau.services import InfluxDB, Mosquitto, free_port
from tests.api_live_support import reading_events, serving
from tests.ingest_support import now_ms, publish, publisher, wait_for

pytestmark = pytest.mark.integration

BEDS = {"capacity": 24, "occupied": 18, "suspect": 2, "confirmed": 10, "waiting": 3}


@pytest.fixture
def api(mosquitto: Mosquitto, influxdb: InfluxDB, city: Registry) -> Iterator[str]:
    """The API, its live hub logged in as the ``pantau-api`` service account."""
    settings = ApiSettings(
        influx_url=influxdb.url,
        mqtt_url=mosquitto.url,
        mqtt_username="pantau-api",
        mqtt_password=mosquitto.users["pantau-api"],
        live_buffer=16,
    )
    with serving(create_app(settings, registry=city)) as url:
        yield url


def kariadi_batch(seq: int, ts: int) -> bytes:
    """A JSON batch from gw-kariadi: its ICU ward and its Kelas III ward."""
    readings = [
        Reading(sensor="bed-kariadi-icu", kind=SensorKind.BED, ts=ts - 500, seq=seq, values=BEDS),
        Reading(sensor="bed-kariadi-k3", kind=SensorKind.BED, ts=ts, seq=seq, values=BEDS),
    ]
    return encode(Batch(gw="gw-kariadi", seq=seq, sent=ts, readings=readings))


def test_a_batch_reaches_every_client_as_one_change_naming_the_site(
    api: str, mosquitto: Mosquitto
) -> None:
    """Three clients, one batch: each gets the same event (same id), with the site, its kind,
    its kecamatan, the sensor kinds and the batch's newest observation time."""
    ts = now_ms()
    with (
        reading_events(f"{api}/v1/stream") as a,
        reading_events(f"{api}/v1/stream") as b,
        reading_events(f"{api}/v1/stream") as c,
        publisher(mosquitto, "gw-kariadi") as gw,
    ):
        publish(
            gw, topics.build("rs-kariadi", "gw-kariadi", Channel.READINGS), kariadi_batch(1, ts)
        )
        got = [r.next() for r in (a, b, c)]
    assert a.content_type == "text/event-stream; charset=utf-8"
    assert a.retry == 3000
    assert {e.id for e in got} == {got[0].id}
    assert [(e.event, e.data) for e in got] == [
        (
            "change",
            {
                "site": "rs-kariadi",
                "site_kind": "hospital",
                "kecamatan": "33.74.07",
                "kinds": ["bed"],
                "observed_ms": ts,
            },
        )
    ] * 3


def test_binary_batches_and_single_readings_are_events_too(api: str, mosquitto: Mosquitto) -> None:
    """A PNB1 batch from an isolation centre and a direct device's single reading (no clock:
    ``observed_ms`` null) each make one event."""
    ts = now_ms()
    binary = encode_binary_batch(
        gw="gw-iso-tegalsari",
        seq=7,
        sent=ts,
        sensors=["bed-iso-tegalsari"],
        kinds=[KIND_CODES[SensorKind.BED]],
        sensor=[0, 0],
        ts=[ts - 2000, ts - 1000],
        reading_seq=[1, 2],
        values=[[10, 7, 2, 5, 1], [10, 8, 2, 5, 1]],
    )
    single = {
        "sensor": "q-candisari",
        "kind": "queue",
        "values": {"issued": 12, "served": 9, "counters_open": 2},
    }
    with (
        reading_events(f"{api}/v1/stream") as sse,
        publisher(mosquitto, "gw-iso-tegalsari") as tegalsari,
        publisher(mosquitto, "kiosk-candisari") as kiosk,
    ):
        topic = topics.build("iso-tegalsari-rw03", "gw-iso-tegalsari", Channel.READINGS)
        publish(tegalsari, topic, binary)
        first = sse.next()
        # the single-reading channel is a direct device's (the broker holds a gateway to its own)
        publish(kiosk, topics.build("kec-candisari", "kiosk-candisari", Channel.READING), single)
        second = sse.next()
    assert first.data == {
        "site": "iso-tegalsari-rw03",
        "site_kind": "isolation_centre",
        "kecamatan": "33.74.08",
        "kinds": ["bed"],
        "observed_ms": ts - 1000,
    }
    assert (second.data["site"], second.data["observed_ms"]) == ("kec-candisari", None)


def test_a_client_resuming_with_last_event_id_gets_exactly_what_it_missed(
    api: str, mosquitto: Mosquitto
) -> None:
    """Disconnect after event 1, miss batches 2-4, reconnect with event 1's id: events 2, 3, 4
    arrive in order, then live ones. An id from another API process gets one ``reset``."""
    topic = topics.build("rs-kariadi", "gw-kariadi", Channel.READINGS)
    ts = now_ms()
    with publisher(mosquitto, "gw-kariadi") as gw:
        with reading_events(f"{api}/v1/stream") as first:
            publish(gw, topic, kariadi_batch(1, ts + 1))
            seen = first.next()
        with reading_events(f"{api}/v1/stream") as witness:
            for n in (2, 3, 4):
                publish(gw, topic, kariadi_batch(n, ts + n))
            missed = [witness.next() for _ in range(3)]
        with reading_events(f"{api}/v1/stream", last_event_id=seen.id) as resumed:
            replay = [resumed.next() for _ in range(3)]
            publish(gw, topic, kariadi_batch(5, ts + 5))
            live = resumed.next()
        foreign = f"{int(str(seen.id).split('-')[0]) - 1}-1"
        with reading_events(f"{api}/v1/stream", last_event_id=foreign) as stranger:
            reset = stranger.next()
    assert [e.id for e in replay] == [e.id for e in missed]
    assert [e.data["observed_ms"] for e in replay] == [ts + 2, ts + 3, ts + 4]
    assert live.data["observed_ms"] == ts + 5
    assert (reset.event, reset.data) == ("reset", {"reason": "resume id unknown or too old"})


def test_readings_of_unknown_sites_and_garbage_make_no_event(
    api: str, mosquitto: Mosquitto
) -> None:
    """A site the registry does not list and a payload that is not JSON are skipped; the next
    good batch is the next event."""
    ts = now_ms()
    with reading_events(f"{api}/v1/stream") as sse, publisher(mosquitto, "gw-kariadi") as gw:
        publish(
            gw, topics.build("rs-nowhere", "gw-kariadi", Channel.READINGS), kariadi_batch(1, ts)
        )
        publish(gw, topics.build("rs-kariadi", "gw-kariadi", Channel.READINGS), b"\xff{not json")
        publish(
            gw, topics.build("rs-kariadi", "gw-kariadi", Channel.READINGS), kariadi_batch(2, ts)
        )
        event = sse.next()
    assert (event.data["site"], event.data["observed_ms"], event.id.split("-")[1]) == (
        "rs-kariadi",
        ts,
        "1",
    )


def test_pantau_api_run_ends_open_streams_and_exits_0_on_sigterm(
    mosquitto: Mosquitto, influxdb: InfluxDB, tmp_path: Path
) -> None:
    """A stream never ends by itself and uvicorn's graceful shutdown waits for open responses:
    SIGTERM ends the streams (the client sees its stream close) and the process exits 0."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PANTAU_")}
    env |= {
        "PANTAU_INFLUX_URL": influxdb.url,
        "PANTAU_MQTT_URL": mosquitto.url,
        "PANTAU_MQTT_PASSWORD": mosquitto.users["pantau-api"],
        "PYTHONUNBUFFERED": "1",
    }
    log_path = tmp_path / "api.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pantau.cli", "api", "run", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for(lambda: b"live stream subscribed" in log_path.read_bytes(), "the hub", 30)
        with reading_events(f"http://127.0.0.1:{port}/v1/stream") as sse:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=20) == 0, log_path.read_text()
            sse.join(20)
            assert not sse.is_alive()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

"""Dead letters against the real broker, InfluxDB and ingester: a refused payload is stored
once however many of its readings are refused, the store stays within its byte bound and
counts what it drops, ``pantau ingest replay`` sends dead letters through the normal path
again without duplicating what is refused again, and a message that kills the ingester
process is quarantined as ``poison`` after N attempts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from city import DEMO_CITY, Registry, read_yaml
from cloud.influx import InfluxHTTP
from cloud.ingest import DeadLetterStore, Problem, Refusal
from cloud.ingest.cli import app
from cloud.ingest.guard import CRASH_EXIT_CODE
from contract import MAX_PAYLOAD_BYTES, ConfigFileError, RejectReason
from pantau.paths import ROOT
from pantau.services import InfluxDB, Mosquitto, free_port
from tests.ingest_process_support import ingest_process
from tests.ingest_support import (
    ingester_thread,
    metric,
    now_ms,
    publish,
    publisher,
    raw_count,
    settings_for,
    stored_rows,
    wait_for,
)

pytestmark = pytest.mark.integration

KARIADI = "pantau/v1/rs-kariadi/gw-kariadi/readings"
KARIADI_BEDS = [
    "bed-kariadi-icu",
    "bed-kariadi-icu-np",
    "bed-kariadi-hcu",
    "bed-kariadi-iso",
    "bed-kariadi-k3",
]


def bed(sensor: str, ts: int, seq: int, occupied: int = 3) -> dict[str, Any]:
    """One bed reading as JSON (capacity 10)."""
    values = {"capacity": 10, "occupied": occupied, "suspect": 0, "confirmed": 0, "waiting": 0}
    return {"sensor": sensor, "kind": "bed", "ts": ts, "seq": seq, "values": values}


def batch(seq: int, readings: list[dict[str, Any]], gw: str = "gw-kariadi") -> bytes:
    """A gateway batch."""
    return orjson.dumps({"v": 1, "gw": gw, "seq": seq, "sent": now_ms(), "readings": readings})


def segment_lines(directory: Path) -> tuple[int, int]:
    """(payload lines, record lines) in the store's segment files."""
    payloads = records = 0
    for path in directory.glob("segment-*.jsonl"):
        for line in path.read_bytes().splitlines():
            if line.startswith(b'{"p":'):
                payloads += 1
            else:
                records += 1
    return payloads, records


def peak_rss(pid: int) -> int:
    """The process's peak resident memory so far (VmHWM), bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


#: Handling one refused message of at most 256 KiB may raise the ingester's peak RSS by at
#: most this much (README, "Dead letters"): its payload, parsed JSON and columns, the payload
#: line (base64) and at most 2 000 record lines.
ONE_MESSAGE_RSS_BOUND = 32 * 1024 * 1024


def test_a_batch_of_1750_refused_readings_stores_its_payload_once_in_bounded_memory(
    mosquitto: Mosquitto, influxdb: InfluxDB, tmp_path: Path
) -> None:
    """The issue's case: one ~256 KiB batch of 1 750 readings of unknown sensors. The old
    store wrote the payload once per reading (582 MB on disk, 2.47 GB RSS); now the disk
    holds the payload once plus 1 750 small records, and the process's peak memory rises by
    less than ONE_MESSAGE_RSS_BOUND."""
    t0 = now_ms() - 60_000
    pad = "x" * 6
    readings = [bed(f"ghost-{i:04d}-{pad}", t0 + i, i) for i in range(1750)]
    payload = batch(1, readings)
    assert 250_000 < len(payload) <= MAX_PAYLOAD_BYTES
    dead_dir = tmp_path / "dead"
    with (
        ingest_process(mosquitto, influxdb, tmp_path) as ing,
        publisher(mosquitto, "gw-kariadi") as gw,
    ):
        before = peak_rss(ing.pid)
        publish(gw, KARIADI, payload)
        reason = 'pantau_ingest_dead_letters_total{reason="unknown_sensor"}'
        wait_for(lambda: ing.metric(reason) == 1750, "1 750 dead letters counted")
        after = peak_rss(ing.pid)
        on_disk = ing.metric("pantau_ingest_dead_letter_bytes")
    payload_lines, record_lines = segment_lines(dead_dir)
    records = DeadLetterStore(directory=dead_dir).read()
    assert (payload_lines, record_lines) == (1, 1750)
    assert [(r.reason, r.index) for r in records] == [("unknown_sensor", i) for i in range(1750)]
    # base64 of the payload once, plus at most 512 bytes per record
    assert on_disk <= len(payload) * 4 / 3 + 1024 + 1750 * 512, on_disk
    assert on_disk < 2 * 1024 * 1024  # the old store: 1 750 x 350 KB = 612 MB
    assert after - before <= ONE_MESSAGE_RSS_BOUND, (before, after)


def test_rotation_keeps_the_store_within_its_bound_and_counts_every_dropped_record(
    mosquitto: Mosquitto, influxdb: InfluxDB, city: Registry, tmp_path: Path
) -> None:
    """40 refused messages of ~60 KB into a 1 MiB store: the oldest segments are dropped,
    the disk stays within 1 MiB, what is left is the newest messages in order, and kept +
    dropped is exactly 40 — in the metric, in ``dead-letters`` and after a restart."""
    max_bytes = 1024 * 1024
    settings = settings_for(
        mosquitto, influxdb, tmp_path, dead_letter_max_bytes=max_bytes, metrics_port=free_port()
    )
    port = settings.metrics_port
    assert port is not None
    sent = [b"not json %02d " % i + b"x" * 60_000 for i in range(40)]
    with ingester_thread(settings, city) as ing, publisher(mosquitto, "gw-kariadi") as gw:
        for payload in sent:
            publish(gw, KARIADI, payload)
        wait_for(lambda: ing.metrics.windows._value.get() >= 1, "a window")
        wait_for(
            lambda: ing.metrics.dead_letters.labels(reason="invalid_json")._value.get() == 40,
            "40 dead letters",
        )
        rotated = ing.metrics.dead_letters_rotated._value.get()
        on_disk = ing.dead.size_bytes()
    store = DeadLetterStore(directory=settings.dead_letter_dir, max_bytes=max_bytes)
    kept = store.read()
    payloads = store.payloads({r.fingerprint for r in kept})
    kept_payloads = [payloads[r.fingerprint][1] for r in kept]
    assert 0 < rotated < 40
    assert len(kept) + rotated == 40
    assert store.rotated().records == rotated
    assert kept_payloads == sent[40 - len(kept) :]
    assert on_disk <= max_bytes
    assert on_disk >= max_bytes * 7 / 8 - 81_000  # rotation drops one 1/8 segment at a time
    result = CliRunner().invoke(app, ["dead-letters", "--dir", str(settings.dead_letter_dir)])
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines()[-1].startswith(
        f"{len(kept)} dead letter(s) in {len(kept)} message(s), oldest first; "
        f"{rotated:.0f} older record(s) dropped by rotation"
    )
    # A new process starts the metric from the store's durable count.
    with ingester_thread(settings, city):
        assert metric(port, "pantau_ingest_dead_letters_rotated_total") == rotated


def _city_without(sensor: str) -> Registry:
    doc = read_yaml(DEMO_CITY, ConfigFileError)
    doc["sensors"] = [s for s in doc["sensors"] if s["id"] != sensor]
    return Registry.from_doc(doc, source="test")


def test_replay_after_a_registry_fix_stores_the_readings_and_does_not_duplicate_refusals(
    mosquitto: Mosquitto, influxdb: InfluxDB, city: Registry, tmp_path: Path
) -> None:
    """A sensor missing from the registry: its 5 readings are dead-lettered (one payload, 5
    records); a batch with a broken reading too. After the registry is fixed and the
    ingester restarted, ``pantau ingest replay`` re-publishes both messages once each: the
    5 readings are stored, the broken reading is refused again and not stored again."""
    t0 = now_ms() - 60_000
    missing = "bed-kariadi-k3"
    first = batch(
        1, [bed(s, t0 + 10 * k + i, i) for i in range(5) for k, s in enumerate(KARIADI_BEDS)]
    )
    broken = batch(
        2, [bed("bed-kariadi-icu", t0 + 500, 9), bed("bed-kariadi-hcu", t0 + 501, 9, 11)]
    )
    settings = settings_for(mosquitto, influxdb, tmp_path)
    store = DeadLetterStore(directory=settings.dead_letter_dir)
    with (
        ingester_thread(settings, _city_without(missing)) as ing,
        publisher(mosquitto, "gw-kariadi") as gw,
        InfluxHTTP(url=influxdb.url, database="pantau") as influx,
    ):
        publish(gw, KARIADI, first)
        publish(gw, KARIADI, broken)
        wait_for(lambda: len(store.read()) == 6, "6 dead letters")
        wait_for(lambda: raw_count(influx) == 21, "21 readings stored")
        assert ing.metrics.readings_stored._value.get() == 21
    before = [(r.reason, r.index, r.fingerprint) for r in store.read()]
    assert sorted((r, i) for r, i, _ in before) == [
        ("occupied_exceeds_capacity", 1),
        *[("unknown_sensor", 4 + 5 * i) for i in range(5)],
    ]
    env = {
        "PANTAU_MQTT_URL": mosquitto.url,
        "PANTAU_DEAD_LETTER_DIR": str(settings.dead_letter_dir),
    }
    with (
        ingester_thread(settings, city) as ing,
        InfluxHTTP(url=influxdb.url, database="pantau") as influx,
    ):
        dry = CliRunner().invoke(app, ["replay", "--dry-run"], env=env)
        assert dry.exit_code == 0, dry.output
        assert dry.stdout.splitlines() == [
            f"{KARIADI} ({len(first)} bytes)",
            f"{KARIADI} ({len(broken)} bytes)",
        ]
        result = CliRunner().invoke(app, ["replay"], env=env)
        assert result.exit_code == 0, result.output
        assert result.stderr.strip() == "replayed 2 message(s)"
        wait_for(lambda: ing.metrics.dead_letters_duplicate._value.get() == 1, "refused again")
        wait_for(lambda: raw_count(influx) == 26, "the missing sensor's 5 readings stored")
        rows = stored_rows(influx)
        assert ing.metrics.dead_letters.labels(reason="occupied_exceeds_capacity")._value.get() == 0
    assert sorted(r for r in rows if r[0] == missing) == [
        (missing, t0 + 40 + i, i, (10, 3, 0, 0, 0)) for i in range(5)
    ]
    assert len(rows) == 26
    assert [(r.reason, r.index, r.fingerprint) for r in store.read()] == before
    assert segment_lines(settings.dead_letter_dir) == (2, 6)


def test_unknown_reason_is_one_sentence_and_the_default_dir_is_the_ingesters(
    tmp_path: Path,
) -> None:
    """A mistyped reason is refused in one sentence that lists the known ones (exit 2), not
    answered with an empty list; without ``--dir`` the ingester's PANTAU_DEAD_LETTER_DIR is
    read."""
    with DeadLetterStore(directory=tmp_path / "dead") as store:
        store.append(
            [
                Refusal(
                    topic=KARIADI,
                    payload=b"{",
                    received_at=1_795_000_000_000,
                    gateway="gw-kariadi",
                    problems=(Problem(RejectReason.INVALID_JSON, "truncated"),),
                )
            ]
        )
    env = {"PANTAU_DEAD_LETTER_DIR": str(tmp_path / "dead")}
    typo = CliRunner().invoke(app, ["dead-letters", "--reason", "invalid-json"], env=env)
    assert typo.exit_code == 2
    assert typo.stdout == ""
    assert typo.stderr.startswith("--reason 'invalid-json' is not a known RejectReason (known:")
    assert len(typo.stderr.strip().splitlines()) == 1
    listed = CliRunner().invoke(app, ["dead-letters"], env=env)
    assert listed.exit_code == 0
    assert listed.stdout.splitlines() == [
        f"2026-11-18T11:06:40+00:00 invalid_json gw-kariadi {KARIADI}: truncated"
    ]
    assert listed.stderr.startswith("1 dead letter(s) in 1 message(s), oldest first; 0 older")


def test_a_message_that_kills_the_process_is_quarantined_after_3_attempts(
    mosquitto: Mosquitto, influxdb: InfluxDB, city: Registry, tmp_path: Path
) -> None:
    """A message that makes ``pantau ingest run`` exit below Python (the test hook) is
    redelivered after each restart; the guard counts attempts durably, and on the 4th
    delivery (after 3 deaths) dead-letters it as poison without processing it. The good
    batches sent before, after and around it are all stored."""
    marker = "boom-7f3a"
    t0 = now_ms() - 60_000
    good = [
        batch(i, [bed(s, t0 + 10 * i + k, i) for k, s in enumerate(KARIADI_BEDS)]) for i in range(3)
    ]
    poison = batch(99, [bed("bed-kariadi-icu", t0 + 900, 99)]).replace(
        b'"v":1', b'"v":1,"x":"' + marker.encode() + b'"'
    )
    dead_dir = tmp_path / "dead"
    port = free_port()
    member = "pantau-ingest-crashloop"
    mosquitto.add_user(member, f"{member}-pw", role="pantau-ingest")
    env = {
        **os.environ,
        "PANTAU_MQTT_URL": mosquitto.url,
        "PANTAU_INFLUX_URL": influxdb.url,
        "PANTAU_DEAD_LETTER_DIR": str(dead_dir),
        "PANTAU_FLUSH_INTERVAL_S": "0.05",
        # The broker binds each account to one client id: a member account of its own.
        "PANTAU_MQTT_USERNAME": member,
        "PANTAU_MQTT_PASSWORD": f"{member}-pw",
        "PANTAU_MQTT_CLIENT_ID": member,
        "PANTAU_METRICS_PORT": str(port),
        "PANTAU_TEST_CRASH_MARKER": marker,
    }
    log = tmp_path / "ingest.log"
    store = DeadLetterStore(directory=dead_dir)

    def start() -> subprocess.Popen[bytes]:
        with log.open("ab") as fh:
            return subprocess.Popen(
                [str(Path(sys.executable).with_name("pantau")), "ingest", "run"],
                env=env,
                stdout=fh,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
            )

    proc = start()
    wait_for(lambda: metric(port, "pantau_ingest_subscribed") == 1.0, "first start subscribed")
    exits: list[int] = []
    with (
        publisher(mosquitto, "gw-kariadi") as gw,
        InfluxHTTP(url=influxdb.url, database="pantau") as influx,
    ):
        try:
            publish(gw, KARIADI, good[0])
            wait_for(lambda: raw_count(influx) == 5, "the first good batch stored")
            publish(gw, KARIADI, poison)
            publish(gw, KARIADI, good[1])
            while not store.read(reason="poison"):
                wait_for(
                    lambda p=proc: p.poll() is not None or store.read(reason="poison"),
                    "a death or the quarantine",
                    timeout=60,
                )
                if proc.poll() is not None:
                    exits.append(proc.returncode)
                    assert len(exits) <= 3, log.read_text()
                    proc = start()
            wait_for(lambda: raw_count(influx) == 10, "the good batch sent with the poison stored")
            publish(gw, KARIADI, good[2])
            wait_for(lambda: raw_count(influx) == 15, "the batch sent after the quarantine stored")
            alive = proc.poll() is None
            rows = stored_rows(influx)
        finally:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(20)
    poisoned = store.read(reason="poison")
    assert exits == [CRASH_EXIT_CODE] * 3
    assert alive
    assert [(r.reason, r.index, r.detail) for r in poisoned] == [
        ("poison", None, "the ingester died processing it 3 times")
    ]
    assert store.payloads({poisoned[0].fingerprint}) == {poisoned[0].fingerprint: (KARIADI, poison)}
    assert len(rows) == 15

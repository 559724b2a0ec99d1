"""What ``pantau demo`` shows a newcomer: the live view fits 80x24 with every table (no ``...``,
no ``None``), the banner's ``mosquitto_pub`` line, and the last log lines of the part that died.

The live view is rendered from ``tests/data/demo_api_snapshot.json``: the API's answers
recorded from a running ``pantau demo`` (demo city, demo scenario, ~30 s in) with
``pantau.demo_view.fetch``. tests/e2e also renders it from the live pipeline.
"""

from __future__ import annotations

import copy
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from city import DEMO_CITY, load_registry
from pantau.demo import DEMO_SCENARIO
from pantau.demo_view import (
    TAIL_LINES,
    Snapshot,
    first_dead,
    mosquitto_pub_example,
    render,
)
from pantau.services import InfluxDB
from pantau.stack import Child, LocalStack

SNAPSHOT = Path(__file__).resolve().parents[1] / "data" / "demo_api_snapshot.json"


def _recorded() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(SNAPSHOT.read_text(encoding="utf-8"))
    return doc


def screen(snapshot: Snapshot) -> list[str]:
    """The view as an 80x24 terminal shows it, one string per line."""
    console = Console(width=80, height=24, record=True, color_system=None, file=io.StringIO())
    console.print(render(snapshot, city_name="Kota Semarang", clock="19:31:20"))
    return console.export_text().rstrip("\n").split("\n")


def test_the_recorded_city_fits_80x24_with_beds_kecamatan_crowds_and_queues() -> None:
    lines = screen(Snapshot(**_recorded()))
    assert len(lines) == 15
    assert max(len(line) for line in lines) <= 80
    text = "\n".join(lines)
    assert "None" not in text
    assert "..." not in text
    assert lines[0] == "Pantau — Kota Semarang — 19:31:20"
    assert lines[3].startswith("ICU              70    48    22  68.6 % ")
    assert lines[3].endswith("Semarang Tengah        46    14  69.6 %")
    # Crowds and queues are on screen, most pressing first, one line each.
    assert lines[11].startswith("Pasar Johar           599  1500  39.9 % ")
    assert lines[11].endswith("Mal Pelayanan Pu…       63      6  16 s")
    assert lines[14].startswith("Kawasan Kota Lam…      83  1200   6.9 %")


def test_before_the_first_reading_every_table_says_it_is_waiting_and_no_none() -> None:
    text = "\n".join(screen(Snapshot()))
    assert "None" not in text
    assert text.count("— waiting for the first readings") == 4


def test_rows_without_readings_show_dashes_not_none() -> None:
    """The API lists every site with nulls until its first reading arrives."""
    doc = _recorded()
    for answer in [*doc["beds"].values(), doc["kecamatan"]]:
        for row in answer["items"]:
            for key in ("capacity", "occupied", "free", "bor", "band"):
                row[key] = None
    for part in ("crowd", "queues"):
        for row in doc["conditions"][part]["items"]:
            for key in ("occupancy", "capacity", "ratio", "waiting", "counters_open", "wait_s"):
                if key in row:
                    row[key] = None
    lines = screen(Snapshot(**doc))
    text = "\n".join(lines)
    assert "None" not in text
    assert "waiting for the first readings" not in text
    assert lines[3].split() == ["ICU", "—", "—", "—", "—", "Semarang", "Tengah", "—", "—", "—"]


def test_a_big_city_still_fits_and_says_how_many_rows_are_left_out() -> None:
    doc = _recorded()
    kec = doc["kecamatan"]["items"][0]
    doc["kecamatan"]["items"] = [
        {**copy.deepcopy(kec), "name": f"Kecamatan {i:02d}", "bor": float(i)} for i in range(20)
    ]
    crowd = doc["conditions"]["crowd"]["items"][0]
    doc["conditions"]["crowd"]["items"] = [
        {**copy.deepcopy(crowd), "site_name": f"Pasar {i:02d}", "ratio": i / 10} for i in range(12)
    ]
    queue = doc["conditions"]["queues"]["items"][0]
    doc["conditions"]["queues"]["items"] = [
        {**copy.deepcopy(queue), "site_name": f"Kantor {i}", "wait_s": 60.0 * i} for i in range(9)
    ]
    lines = screen(Snapshot(**doc))
    text = "\n".join(lines)
    assert len(lines) == 20
    assert max(len(line) for line in lines) <= 80
    assert "+13 more: /v1/beds/summary" in text
    assert "+7 more: /v1/conditions" in text
    assert "+5 more: /v1/conditions" in text
    assert "Kecamatan 19" in lines[3]  # the highest BOR first
    assert "Kecamatan 13" in text  # 7 shown
    assert "Kecamatan 12" not in text


def test_the_banner_example_is_docs_protocol_single_reading_aimed_at_the_demo() -> None:
    lines = mosquitto_pub_example(
        load_registry(DEMO_CITY),
        host="127.0.0.1",
        port=41555,
        device_access=Path("/tmp/pantau-demo-x/device-access.env"),
    )
    assert lines == [
        ". /tmp/pantau-demo-x/device-access.env",
        "mosquitto_pub -h 127.0.0.1 -p 41555 -V mqttv5 -i kiosk-candisari -u kiosk-candisari"
        ' -P "$KIOSK_CANDISARI_PASSWORD" -q 1 -t pantau/v1/kec-candisari/kiosk-candisari/reading'
        """ -m '{"v":1,"sensor":"q-candisari","kind":"queue","seq":1,"""
        """"values":{"issued":12,"served":9,"counters_open":2}}'""",
    ]


def _exited(log: Path, code: int, lines: int) -> subprocess.Popen[bytes]:
    """A real process that writes ``lines`` numbered log lines and exits with ``code``."""
    script = f"for i in range({lines}): print(f'line {{i}}')\nraise SystemExit({code})"
    with log.open("ab") as out:
        proc = subprocess.Popen([sys.executable, "-c", script], stdout=out)
    proc.wait()
    return proc


@pytest.fixture
def stack(tmp_path: Path) -> LocalStack:
    """A stack object that was never started: only its parts' processes are filled in."""
    return LocalStack(city_file=DEMO_CITY, scenario_file=DEMO_SCENARIO, workdir=tmp_path)


def test_a_dead_part_is_named_with_its_own_last_15_log_lines(
    stack: LocalStack, tmp_path: Path
) -> None:
    influx = InfluxDB(workdir=tmp_path / "influxdb")
    influx.workdir.mkdir()
    # InfluxDB runs (a live process), and writes a long log that must not be shown.
    influx.log_path.write_text("".join(f"influx {i}\n" for i in range(204)))
    influx.proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    stack.influxdb = influx
    try:
        ingest_log = tmp_path / "ingest.log"
        ingest = _exited(ingest_log, 3, lines=40)
        stack.children.append(Child(name="ingest", proc=ingest, log_path=ingest_log))
        dead = first_dead(stack)
    finally:
        influx.proc.kill()
        influx.proc.wait()
    assert dead is not None
    assert (dead.name, dead.code, dead.log_path) == ("ingest", 3, ingest_log)
    report = dead.report().splitlines()
    assert report[0] == f"ingest stopped (exit status 3). The last lines of its log, {ingest_log}:"
    assert report[1:] == [f"line {i}" for i in range(40 - TAIL_LINES, 40)]
    assert "influx" not in dead.report()


def test_a_dead_server_is_shown_before_the_parts_that_failed_because_of_it(
    stack: LocalStack, tmp_path: Path
) -> None:
    influx = InfluxDB(workdir=tmp_path / "influxdb")
    influx.workdir.mkdir()
    influx.proc = _exited(influx.log_path, -9 % 256, lines=3)
    stack.influxdb = influx
    ingest_log = tmp_path / "ingest.log"
    stack.children.append(
        Child(name="ingest", proc=_exited(ingest_log, 1, lines=2), log_path=ingest_log)
    )
    dead = first_dead(stack)
    assert dead is not None
    assert (dead.name, dead.tail) == ("influxdb", "line 0\nline 1\nline 2")


def test_nothing_is_reported_while_every_part_runs(stack: LocalStack) -> None:
    assert first_dead(stack) is None

"""The whole pipeline on real parts: the simulator's sensors on PTYs -> edge agents -> Mosquitto
-> ingester -> InfluxDB -> API. What the API reports equals what the sensors really counted,
at ward, RW, kelurahan, kecamatan, city and province level."""

from __future__ import annotations

import io
import os
import re
import shlex
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from rich.console import Console

from city import DEMO_CITY, Level, Registry, load_registry
from cloud.influx import InfluxHTTP
from contract import BED_GROUPS, SensorKind
from contract.beds import BorBand
from pantau.demo_view import fetch, mosquitto_pub_example, render
from pantau.stack import LocalStack
from tests.e2e.conftest import OUTSIDE_GATEWAY, PROTOCOL, ground_truth
from tests.grafana_support import (
    EMPTY_WHEN_HEALTHY,
    alert_queries,
    dashboard_queries,
    grafana_to_influxql,
)

pytestmark = pytest.mark.e2e


def eventually(check: Callable[[], None], timeout: float = 60.0) -> None:
    """Run ``check`` until it stops failing; the pipeline is asynchronous end to end."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.25)
        else:
            return


def _get(stack: LocalStack, path: str, **params: str) -> Any:
    resp = httpx.get(f"{stack.api_url}{path}", params=params, timeout=5)
    assert resp.status_code == 200, resp.text
    return resp.json()


def _truth_of(stack: LocalStack, kind: SensorKind) -> dict[str, dict[str, Any]]:
    sensors: dict[str, dict[str, Any]] = ground_truth(stack)["sensors"]
    return {sid: s for sid, s in sensors.items() if s["kind"] == kind.value}


def test_every_sensor_of_the_city_reported(city_run: LocalStack) -> None:
    """The scenario drove every serial sensor; the ground truth has each one's last frame."""
    truth = ground_truth(city_run)["sensors"]
    serial = {s.id for s in city_run.registry if not city_run.registry.gateways[s.gateway].direct}
    assert serial <= set(truth)


def test_each_ward_equals_its_sensor(city_run: LocalStack) -> None:
    """Per hospital ward and bed type: capacity, occupied, free and COVID counts are exact."""
    beds = _truth_of(city_run, SensorKind.BED)

    def check() -> None:
        items = {w["sensor"]: w for w in _get(city_run, "/v1/beds")["items"]}
        for sid, truth in beds.items():
            ward, v = items[sid], truth["values"]
            got = {k: ward[k] for k in ("capacity", "occupied", "suspect", "confirmed", "waiting")}
            assert got == v, sid
            assert ward["free"] == v["capacity"] - v["occupied"]
            assert ward["observed_at_ms"] == truth["ts"], sid
            assert ward["stale"] is False

    eventually(check)


def _expected_rollups(
    registry: Registry, beds: dict[str, dict[str, Any]]
) -> dict[tuple[str, str], dict[str, int]]:
    """A slow, obvious reference: add every ward to each region above its site."""
    totals: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for sid, truth in beds.items():
        site = registry.sensors[sid].site
        for region in registry.regions_of(site):
            for key in ("capacity", "occupied", "suspect", "confirmed", "waiting"):
                totals[(region.level.value, region.code)][key] += truth["values"][key]
    return {k: dict(v) for k, v in totals.items()}


@pytest.mark.parametrize(
    "level", [Level.RW, Level.KELURAHAN, Level.KECAMATAN, Level.KOTA, Level.PROVINSI]
)
def test_bor_rollups_equal_ground_truth(city_run: LocalStack, level: Level) -> None:
    """Hospitals plus isolation centres, all bed types, summed up the hierarchy."""
    expected = {
        code: v
        for (lvl, code), v in _expected_rollups(
            city_run.registry, _truth_of(city_run, SensorKind.BED)
        ).items()
        if lvl == level.value
    }
    assert expected, f"the demo city has bed sites at {level.value} level"

    def check() -> None:
        rows = {
            r["code"]: r for r in _get(city_run, "/v1/beds/summary", level=level.value)["items"]
        }
        for code, v in expected.items():
            row = rows[code]
            assert (row["capacity"], row["occupied"], row["free"]) == (
                v["capacity"],
                v["occupied"],
                v["capacity"] - v["occupied"],
            ), (level, code)
            assert (row["suspect"], row["confirmed"], row["waiting"]) == (
                v["suspect"],
                v["confirmed"],
                v["waiting"],
            )
            assert row["bor"] == pytest.approx(v["occupied"] * 100 / v["capacity"])

    eventually(check)


def test_city_free_icu_beds_by_group(city_run: LocalStack) -> None:
    """'How many ICU beds are free in the city?' sums exactly the ICU bed type codes."""
    icu = {
        sid: t
        for sid, t in _truth_of(city_run, SensorKind.BED).items()
        if city_run.registry.sensors[sid].bed_type in BED_GROUPS["icu"]
    }
    free = sum(t["values"]["capacity"] - t["values"]["occupied"] for t in icu.values())

    def check() -> None:
        (row,) = _get(city_run, "/v1/beds/summary", level="kota", group="icu")["items"]
        assert row["free"] == free

    eventually(check)


def test_crowds_and_queues_equal_ground_truth(city_run: LocalStack) -> None:
    """Crowd occupancy is summed over a site's gates; queue length is issued minus served."""
    reg = city_run.registry
    crowd: dict[str, int] = defaultdict(int)
    for sid, t in _truth_of(city_run, SensorKind.CROWD).items():
        crowd[reg.sensors[sid].site] += t["values"]["occupancy"]
    queue: dict[str, int] = defaultdict(int)
    for sid, t in _truth_of(city_run, SensorKind.QUEUE).items():
        queue[reg.sensors[sid].site] += t["values"]["issued"] - t["values"]["served"]

    def check() -> None:
        cond = _get(city_run, "/v1/conditions")
        got_crowd = {c["site"]: c for c in cond["crowd"]["items"]}
        for site, occupancy in crowd.items():
            assert got_crowd[site]["occupancy"] == occupancy, site
            capacity = reg.sites[site].capacity
            assert capacity is not None
            assert got_crowd[site]["ratio"] == pytest.approx(occupancy / capacity)
        got_queue = {q["site"]: q["waiting"] for q in cond["queues"]["items"]}
        for site, waiting in queue.items():
            assert got_queue[site] == waiting, site

    eventually(check)


def test_names_with_dots_commas_and_quotes_survive_every_hop(city_run: LocalStack) -> None:
    def check() -> None:
        wards = {w["sensor"]: w for w in _get(city_run, "/v1/beds")["items"]}
        assert wards["bed-iso-kauman"]["site_name"] == 'Rumah Isolasi "Kauman Sehat" RW 05'
        assert wards["bed-iso-kauman"]["ward"] == 'Ruang "Sehat" = 1'
        assert wards["bed-iso-tegalsari"]["site_name"] == "Balai Warga Kel. Tegal Sari, RW 03"
        assert wards["bed-wongso-icu"]["site_name"] == "RSUD K.R.M.T. Wongsonegoro"
        assert wards["bed-kariadi-k3"]["ward"] == "Bangsal Kelas III, Lt. 2"

    eventually(check)


def _mosquitto_pub(stack: LocalStack, payload: str) -> None:
    """Publish as the demo's direct kiosk, exactly as docs/protocol.md shows."""
    assert stack.mosquitto is not None
    subprocess.run(
        [
            "mosquitto_pub",
            "-h",
            "127.0.0.1",
            "-p",
            str(stack.mosquitto.port),
            "-u",
            "kiosk-candisari",
            "-i",
            "kiosk-candisari",
            "-P",
            stack.passwords["kiosk-candisari"],
            "-q",
            "1",
            "-t",
            "pantau/v1/kec-candisari/kiosk-candisari/reading",
            "-m",
            payload,
        ],
        check=True,
        timeout=10,
    )


def test_documented_mosquitto_pub_reaches_the_api(city_run: LocalStack) -> None:
    """The single-reading example of docs/protocol.md, run as written after loading the demo's
    device-access.env, shows up in the API: 12 issued, 9 served, 2 counters open."""
    (command,) = re.findall(r"^mosquitto_pub .*$", PROTOCOL, re.MULTILINE)
    done = subprocess.run(
        ["bash", "-c", f". {shlex.quote(str(city_run.device_access_path))} && {command}"],
        check=False,
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert (done.returncode, done.stderr) == (0, "")

    def check() -> None:
        queues = {q["site"]: q for q in _get(city_run, "/v1/conditions/queues")["items"]}
        assert queues["kec-candisari"]["waiting"] == 12 - 9
        assert queues["kec-candisari"]["counters_open"] == 2

    eventually(check)


def test_every_grafana_panel_and_alert_query_returns_rows_from_the_pipeline(
    city_run: LocalStack,
) -> None:
    """The dashboards read what the real pipeline wrote: every panel and alert query runs on
    the InfluxDB the ingester fed and returns rows. One refused reading (served > issued) is
    sent first, as a faulty kiosk would, so the dead-letter panels have something to show."""
    _mosquitto_pub(
        city_run,
        '{"v":1,"sensor":"q-candisari","kind":"queue","seq":90002,'
        '"values":{"issued":1,"served":5,"counters_open":1}}',
    )
    # The stale-sensor count is empty while every sensor is fresh, as it is right after a run,
    # and a bed group's BOR rules have nothing to read in a city without beds of that group.
    types = {s.bed_type for s in city_run.registry.sensors.values() if s.bed_type is not None}
    absent = sorted(g for g, codes in BED_GROUPS.items() if not codes & types)
    assert absent == ["emergency"]
    skip = EMPTY_WHEN_HEALTHY | {f"alert pantau-bor-{g}-{b} A" for g in absent for b in BorBand}
    queries = [(n, q) for n, q in dashboard_queries() + alert_queries() if n not in skip]
    assert len(queries) == 39 + 17

    def check() -> None:
        with InfluxHTTP(url=city_run.influx) as influx:
            empty = [
                label
                for label, query in queries
                if not any(s.values for s in influx.query(grafana_to_influxql(query)))
            ]
        assert empty == [], empty

    eventually(check, timeout=30)


def test_the_outside_gateway_took_the_left_out_gateways_place(city_run: LocalStack) -> None:
    """The stack started no agent for the left-out gateway; the one attached from outside with
    only device-access.env delivered each of its sensors' last frames."""
    assert f"edge-{OUTSIDE_GATEWAY}" not in {c.name for c in city_run.children}
    truth = ground_truth(city_run)["sensors"]
    mine = [s.id for s in city_run.registry if s.gateway == OUTSIDE_GATEWAY]
    assert mine == ["bed-iso-kauman"]

    def check() -> None:
        ward = _get(city_run, "/v1/beds/iso-kauman-rw05")["items"][0]
        assert (ward["sensor"], ward["observed_at_ms"]) == (mine[0], truth[mine[0]]["ts"])
        assert ward["occupied"] == truth[mine[0]]["values"]["occupied"]

    eventually(check)


def test_the_demo_live_view_of_the_running_city_fits_80x24_without_none(
    city_run: LocalStack,
) -> None:
    """``pantau demo``'s live view drawn from this pipeline's API: every bed group, crowd
    site and queue site of the city on one 80x24 screen."""
    console = Console(width=80, height=24, record=True, color_system=None, file=io.StringIO())
    with httpx.Client(base_url=city_run.api_url, timeout=5) as api:
        console.print(render(fetch(api), city_name="Kota Semarang", clock="12:00:00"))
    lines = console.export_text().rstrip("\n").split("\n")
    text = "\n".join(lines)
    assert len(lines) <= 24
    assert max(len(line) for line in lines) <= 80
    assert ("None" in text, "..." in text, "waiting for" in text) == (False, False, False)
    assert [line.split()[0] for line in lines[3:7]] == ["ICU", "HCU", "isolation", "general"]
    assert text.count(" %") == 4 + 5 + 4  # beds by group, kecamatan with beds, crowd sites
    assert text.count(" s\n") + text.count(" min\n") == 3  # queue sites with a wait


def test_the_demo_banner_mosquitto_pub_lines_are_accepted_by_the_demo(
    city_run: LocalStack,
) -> None:
    """The two lines the demo prints (load device-access.env, then mosquitto_pub with
    ``-V mqttv5``, which reports an ACL refusal) run as printed; the broker accepts them."""
    assert city_run.mosquitto is not None
    lines = mosquitto_pub_example(
        city_run.registry,
        host=city_run.mosquitto.host,
        port=city_run.mosquitto.port,
        device_access=city_run.device_access_path,
    )
    done = subprocess.run(
        ["bash", "-c", " && ".join(lines)],
        check=False,
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert (len(lines), done.returncode, done.stderr) == (2, 0, "")


def test_the_documented_gateway_add_gives_a_new_device_an_account_on_the_running_demo(
    city_run: LocalStack, tmp_path: Path
) -> None:
    """docs/protocol.md's "new gateway identity" lines, run as written after loading
    device-access.env: the device lands in the demo's own copy of the city file (never the
    file the demo started from), and the mosquitto_pub line printed for it is accepted. Last
    in this module: the demo's registry file has one device more afterwards."""
    block = re.search(r"<!-- demo: add a device -->\n```sh\n(.*?)\n```", PROTOCOL, re.DOTALL)
    assert block is not None
    env = {
        "DEMO_DIR": str(city_run.dir),
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
    }
    added = subprocess.run(
        ["bash", "-c", block[1]],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert added.returncode == 0, added.stderr
    (line,) = added.stdout.splitlines()
    assert line.startswith("mosquitto_pub ")
    assert city_run.city_file == city_run.dir / "city.yaml"
    assert load_registry(city_run.city_file).gateways["kiosk-baru"].site == "kec-candisari"
    assert "kiosk-baru" not in load_registry(DEMO_CITY).gateways
    sent = subprocess.run(
        ["bash", "-c", line],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert (sent.returncode, sent.stderr) == (0, "")

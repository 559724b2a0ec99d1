"""The public bed board (/board) in Debian's headless Chromium, driven by Playwright, over the
real pipeline: scripted bed devices (firmware-sim) -> Mosquitto -> ingester -> InfluxDB -> API.
The API requires keys, as in production; the page has none and needs none (it reads the public
/v1/beds/free). The page shows exactly the numbers the API returns, marks a silent hospital
stale, and changes by itself (over /v1/stream) when the simulator admits a patient."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from city import Registry
from cloud.api import ApiSettings, create_app
from cloud.api.auth_keys import KeyStore
from cloud.api.auth_roles import Role
from contract import Batch, Channel, Reading, SensorKind, encode, topics
from firmware_sim.scripted import BedEvent, ScriptedDevice
from pantau.services import InfluxDB, Mosquitto
from tests.api_live_support import serving
from tests.ingest_support import Message as GatewayMessage
from tests.ingest_support import (
    ingester_thread,
    now_ms,
    publishing,
    settings_for,
    wait_for,
)

pytestmark = pytest.mark.integration

CHROMIUM = "/usr/bin/chromium"
GROUPS = ("icu", "hcu", "isolation")
#: A hospital whose wards last reported 30 minutes ago: past the 900 s stale limit.
SILENT_SITE = "rs-telogorejo"
ADMIT_AT = "bed-kariadi-icu"
BED_FIELDS = ("capacity", "occupied", "suspect", "confirmed", "waiting")


def devices(city: Registry) -> dict[str, ScriptedDevice]:
    """One scripted device per bed sensor of the city, with known beds and occupancy; the
    Kariadi ICU admits one patient at its second step."""
    out = {}
    for i, sensor in enumerate(s for s in city if s.kind is SensorKind.BED):
        capacity = sensor.beds or 10
        events = [BedEvent(admit=1)] if sensor.id == ADMIT_AT else []
        out[sensor.id] = ScriptedDevice(
            kind=SensorKind.BED,
            events=events,
            initial={"capacity": capacity, "occupied": (3 * i + 1) % capacity},
        )
    return out


def batches(city: Registry, values: dict[str, tuple[int, ...]], seq: int) -> list[GatewayMessage]:
    """One JSON batch per gateway holding ``values``' sensors."""
    ts = now_ms()
    by_gateway: dict[str, list[Reading]] = {}
    for sensor_id, vals in values.items():
        sensor = city.sensors[sensor_id]
        stamp = ts - 30 * 60_000 if sensor.site == SILENT_SITE else ts
        reading = Reading(
            sensor=sensor_id,
            kind=SensorKind.BED,
            ts=stamp,
            seq=seq,
            values=dict(zip(BED_FIELDS, vals, strict=True)),
        )
        by_gateway.setdefault(sensor.gateway, []).append(reading)
    out = []
    for gw, readings in by_gateway.items():
        site = city.sensors[readings[0].sensor].site
        payload = encode(Batch(gw=gw, seq=seq, sent=ts, readings=readings))
        out.append(GatewayMessage(gw, topics.build(site, gw, Channel.READINGS), payload, ()))
    return out


NONE = "\u2013"  # what the board shows where the API has no numbers (an en dash)


def shown(count: dict[str, Any] | None) -> str:
    """What a board cell must show for a count from the API."""
    return (
        NONE if count is None or count["free"] is None else f"{count['free']}|{count['capacity']}"
    )


def api_cells(api: str) -> dict[str, str]:
    """What each board cell must show, from the public ``/v1/beds/free`` (no key): ``free``
    (and ``of capacity``) per kecamatan and per place for each bed group; NONE where the API
    has no numbers."""
    resp = httpx.get(f"{api}/v1/beds/free", timeout=10)
    assert resp.status_code == 200, resp.text
    cells = {}
    for kec in resp.json()["items"]:
        for group in GROUPS:
            cells[f"kecamatan:{kec['code']}:{group}"] = shown(kec["groups"][group])
            for place in kec["places"]:
                cells[f"site:{place['id']}:{group}"] = shown(place["groups"][group])
    return cells


def summary_cells(api: str, admin_key: str) -> dict[str, str]:
    """The same cells from ``/v1/beds/summary`` per group: public at kecamatan level, per site
    only with a health officer's (here an admin's) key. The board's data must equal them."""
    cells = {}
    for level, headers in (
        ("kecamatan", {}),
        ("site", {"Authorization": f"Bearer {admin_key}"}),
    ):
        for group in GROUPS:
            resp = httpx.get(
                f"{api}/v1/beds/summary",
                params={"level": level, "group": group},
                headers=headers,
                timeout=10,
            )
            assert resp.status_code == 200, resp.text
            for row in resp.json()["items"]:
                cells[f"{level}:{row['code']}:{group}"] = shown(row)
    return cells


def assert_same_as_summaries(cells: dict[str, str], summary: dict[str, str]) -> None:
    """One formula: every figure of /v1/beds/free is the summary's for the same place and
    group; where the summary has no row (no ward of the group), the board data has none."""
    assert {k: v for k, v in cells.items() if k in summary} == summary
    assert {v for k, v in cells.items() if k not in summary} == {NONE}


def page_cells(page: Page) -> dict[str, str]:
    """What each board cell shows: ``free|capacity`` read from the visible text."""
    got: dict[str, str] = page.eval_on_selector_all(
        "td[data-cell]",
        """tds => Object.fromEntries(tds.map(td => {
            const b = td.querySelector("b"), small = td.querySelector("small");
            const shown = b ? b.textContent + "|" + small.textContent.split(" ").pop()
                            : td.textContent;
            return [td.dataset.cell, shown];
        }))""",
    )
    return got


def assert_page_shows(page: dict[str, str], api: dict[str, str]) -> None:
    """The page shows every number the API has, in its cell, and NONE in the other cells
    (a hospital without, say, an HCU, where the API lists no row)."""
    assert page == api
    # 8 hospitals and isolation centres plus 5 kecamatan totals, 3 groups: 39 cells; 28 of
    # them have beds of the group (every ICU, HCU and isolation ward of the demo city).
    assert (len(page), len([v for v in api.values() if v != NONE])) == (39, 28)


@pytest.fixture
def browser() -> Iterator[Browser]:
    """Debian's Chromium, headless (Playwright never downloads a browser here)."""
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def pipeline(
    mosquitto: Mosquitto, influxdb: InfluxDB, city: Registry, tmp_path: Path
) -> Iterator[dict[str, Any]]:
    """Ingester and API on the test broker and InfluxDB, and gateway publishers. The API has
    a key file, so anonymous requests (the page's) have the public role only; the test's own
    detail reads use an admin key."""
    keys_db = tmp_path / "api-keys.sqlite3"
    with KeyStore(path=keys_db) as store:
        _, admin_key = store.create(name="board test", role=Role.ADMIN, regions=())
    api_settings = ApiSettings(
        influx_url=influxdb.url,
        mqtt_url=mosquitto.url,
        mqtt_password=mosquitto.users["pantau-api"],
        api_keys_db=keys_db,
        # Every page load and refetch of the test comes from 127.0.0.1: the whole city's
        # citizens behind one address. The default (120 a minute) is for one client.
        api_anonymous_rate_per_min=6000,
    )
    gateways = sorted({s.gateway for s in city if s.kind is SensorKind.BED})
    # Gateways first: adding their accounts makes the broker reload (SIGHUP), which would
    # drop the services' connections.
    with (
        publishing(mosquitto, gateways) as pub,
        ingester_thread(settings_for(mosquitto, influxdb, tmp_path), city),
        serving(create_app(api_settings, registry=city)) as api,
    ):
        yield {"api": api, "pub": pub, "admin_key": admin_key}


def test_the_board_shows_the_apis_numbers_and_follows_an_admission(
    pipeline: dict[str, Any], browser: Browser, city: Registry, tmp_path: Path
) -> None:
    api, pub, admin_key = pipeline["api"], pipeline["pub"], pipeline["admin_key"]
    # Production-like: per-site detail needs a key; the board's own route does not.
    assert httpx.get(f"{api}/v1/beds/summary?level=site", timeout=10).status_code == 401
    devs = devices(city)
    for msg in batches(city, {k: d.values() for k, d in devs.items()}, seq=1):
        pub.publish(msg)

    def kota_sensors() -> bool:
        body = httpx.get(
            f"{api}/v1/beds/summary",
            headers={"Authorization": f"Bearer {admin_key}"},
            timeout=10,
        ).json()
        return bool(body["items"]) and body["items"][0]["sensors"] == len(devs)

    wait_for(kota_sensors, f"the API to count {len(devs)} bed sensors")

    page = browser.new_page(viewport={"width": 360, "height": 780})
    page.goto(f"{api}/board")
    page.wait_for_selector("body[data-live=open][data-renders='1']")
    before = api_cells(api)
    assert_same_as_summaries(before, summary_cells(api, admin_key))
    assert_page_shows(page_cells(page), before)
    assert page.inner_text("h1") == "Tempat tidur kosong sekarang"
    assert "data lama" in page.inner_text(f"tr[data-site={SILENT_SITE}]")
    stale_rows = page.eval_on_selector_all("tr.stale", "rows => rows.map(r => r.dataset.site)")
    assert stale_rows == [SILENT_SITE]
    # The page is as wide as the phone: nothing scrolls sideways.
    assert page.evaluate("document.documentElement.scrollWidth") == 360

    site_cell = "site:rs-kariadi:icu"
    free, capacity = (int(x) for x in before[site_cell].split("|"))
    kec = city.kecamatan_of_kelurahan[city.sites["rs-kariadi"].kelurahan].code
    kec_free = int(before[f"kecamatan:{kec}:icu"].split("|")[0])
    kariadi = devs[ADMIT_AT]
    kariadi.step(0.0)  # the simulator admits one patient to the Kariadi ICU
    (msg,) = batches(city, {ADMIT_AT: kariadi.values()}, seq=2)
    pub.publish(msg)

    page.wait_for_function(
        f"document.querySelector('td[data-cell=\"{site_cell}\"] b').textContent === "
        f"'{free - 1}' && document.querySelector('td[data-cell=\"kecamatan:{kec}:icu\"] b')"
        f".textContent === '{kec_free - 1}'"
    )
    after = api_cells(api)
    assert_same_as_summaries(after, summary_cells(api, admin_key))
    assert after[site_cell] == f"{free - 1}|{capacity}"
    assert_page_shows(page_cells(page), after)
    assert {k for k in before if before[k] != after[k]} == {site_cell, f"kecamatan:{kec}:icu"}
    shot = os.environ.get("PANTAU_BOARD_SCREENSHOT") or str(tmp_path / "board.png")
    page.screenshot(path=shot, full_page=True)

    page.goto(f"{api}/board?lang=en")
    page.wait_for_selector("body[data-live=open][data-renders='1']")
    assert page.inner_text("h1") == "Free beds now"
    assert "stale" in page.inner_text(f"tr[data-site={SILENT_SITE}]")
    assert_page_shows(page_cells(page), after)

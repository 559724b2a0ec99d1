"""docs/api.md tells the truth: every ``curl`` line and the Python example run as written
against a real ``pantau api run`` over a real InfluxDB holding the schema's points, every
response shown has exactly the real response's shape, every route is documented, and every list
is in the documented envelope (``items`` + ``count``)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from city import DEMO_CITY, Registry, load_registry
from cloud.api import ApiSettings, create_app
from cloud.influx import InfluxHTTP
from pantau.paths import ROOT
from pantau.services import InfluxDB
from tests.api_access_support import api_process
from tests.api_beds_support import NOW_MS, STATES, bed_lines, rollup_lines
from tests.api_conditions_support import FRESH_MS, gate, kiosk, raw_lines

pytestmark = pytest.mark.integration

API_DOC = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
_CURL = re.compile(r"^curl .*$", re.MULTILINE)
_SHOWN = re.compile(r"<!-- api: GET (\S+) -->\n```json\n(.*?)\n```", re.DOTALL)
_PYTHON = re.compile(r"<!-- api: python -->\n```python\n(.*?)\n```", re.DOTALL)
_LISTS = (
    "/v1/beds",
    "/v1/beds/rs-kariadi",
    "/v1/beds/summary",
    "/v1/conditions/crowd",
    "/v1/conditions/queues",
)


@pytest.fixture(scope="module")
def api_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``pantau api run`` as a process, over an InfluxDB holding beds, rollups, a crowd site
    and a queue site in exactly the schema's format."""
    city = load_registry(DEMO_CITY)
    tmp = tmp_path_factory.mktemp("api-doc")
    with InfluxDB(workdir=tmp / "influxdb") as db:
        _write(db, city)
        with api_process(tmp, PANTAU_INFLUX_URL=db.url) as url:
            yield url


def _write(db: InfluxDB, city: Registry) -> None:
    """Beds and rollups, and raw crowd and queue readings: the docs' crowd and queue examples
    come from the API's memory, seeded from these (3 tickets served in a minute, 42 waiting:
    840 s)."""
    with InfluxHTTP(url=db.url) as influx:
        influx.ensure_database()
        influx.write(bed_lines(city, STATES))
        influx.write(rollup_lines(city, STATES, flush_ms=NOW_MS - 5_000))
        influx.write(
            raw_lines(
                {
                    "crowd-johar-utara": gate(700, FRESH_MS - 2_000),
                    "crowd-johar-selatan": gate(560, FRESH_MS),
                    "q-mpp": kiosk((FRESH_MS - 60_000, 307, 265), (FRESH_MS, 310, 268)),
                }
            )
        )


def _shell(line: str, api_url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PANTAU_API": api_url}
    return subprocess.run(
        ["bash", "-c", line], check=False, env=env, capture_output=True, text=True, timeout=30
    )


def test_the_doc_has_its_examples() -> None:
    assert len(_CURL.findall(API_DOC)) == 20
    assert [path for path, _ in _SHOWN.findall(API_DOC)] == [
        "/v1/beds/rs-nope",
        "/v1/beds/rs-kariadi",
        "/v1/beds/summary?level=kecamatan&group=icu",
        "/v1/conditions/queues",
    ]
    assert len(_PYTHON.findall(API_DOC)) == 1


@pytest.mark.parametrize("line", _CURL.findall(API_DOC))
def test_each_curl_example_runs_and_answers_json(api_url: str, line: str) -> None:
    done = _shell(line, api_url)
    assert done.returncode == 0, done.stderr
    body = orjson.loads(done.stdout)
    assert isinstance(body, dict)


def _shape(doc: Any) -> Any:
    """Keys all the way down (a list: the shape of its first item), values left out."""
    if isinstance(doc, dict):
        return {k: _shape(v) for k, v in doc.items()}
    if isinstance(doc, list):
        return [_shape(doc[0])] if doc else []
    return None


@pytest.mark.parametrize(("path", "text"), _SHOWN.findall(API_DOC), ids=lambda v: v[:40])
def test_each_shown_response_has_the_real_shape(api_url: str, path: str, text: str) -> None:
    shown = orjson.loads(text)
    real = httpx.get(f"{api_url}{path}", timeout=10).json()
    assert _shape(shown) == _shape(real)
    if "count" in shown:
        assert shown["count"] == real["count"] == len(real["items"])
    if "detail" in shown:
        assert shown == real


def test_the_python_example_runs_and_prints_ward_lines(api_url: str, tmp_path: Path) -> None:
    (code,) = _PYTHON.findall(API_DOC)
    script = tmp_path / "example.py"
    script.write_text(code)
    done = subprocess.run(
        [sys.executable, str(script)],
        check=False,
        env={**os.environ, "PANTAU_API": api_url},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert re.fullmatch(r"6 ICU wards, as of \S+Z", lines[0])
    assert len(lines) == 7
    assert re.fullmatch(
        r"RSUP Dr\. Kariadi, ICU Lt\. 3: 6 free, 3 waiting \(observed \S+Z\)", lines[1]
    )
    assert "6 ICU wards, as of" in API_DOC
    assert "RSUP Dr. Kariadi, ICU Lt. 3: 6 free, 3 waiting (observed" in API_DOC


@pytest.mark.parametrize("path", _LISTS)
def test_every_list_is_items_with_its_count(api_url: str, path: str) -> None:
    body = httpx.get(f"{api_url}{path}", timeout=10).json()
    assert body["count"] == len(body["items"]) > 0
    assert body["stale_after_s"] == 900.0
    assert isinstance(body["generated_at"], str)


def test_conditions_holds_the_crowd_and_queue_lists_in_the_envelope(api_url: str) -> None:
    both = httpx.get(f"{api_url}/v1/conditions", timeout=10).json()
    crowd_list = httpx.get(f"{api_url}/v1/conditions/crowd", timeout=10).json()
    queue_list = httpx.get(f"{api_url}/v1/conditions/queues", timeout=10).json()
    for name, alone in (("crowd", crowd_list), ("queues", queue_list)):
        assert both[name]["count"] == alone["count"] == len(alone["items"])
        assert [s["site"] for s in both[name]["items"]] == [s["site"] for s in alone["items"]]
    assert (crowd_list["count"], queue_list["count"]) == (4, 3)


def test_every_route_is_documented() -> None:
    paths = create_app(ApiSettings()).openapi()["paths"]
    # apinow added 12: beds history, hospitals (3), siranap (2), freshness, gateways (2),
    # crowds (2), queues; apiaccess 1: keys; apilive 1: stream; api10 1: beds/free
    assert len(paths) == 8 + 12 + 1 + 1 + 1
    for path in paths:
        assert f"`GET {path}`" in API_DOC, path

"""The API's error bodies leak nothing: a failing InfluxDB gives a 503 whose body is a one-line
reason and a request id (no URL credentials, no InfluxQL, no InfluxDB error text), the cause is
logged under that id, and a 4xx quotes at most 64 characters of a 60 KB input (about the
longest URL an HTTP client sends)."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from cloud.api import ApiSettings, create_app
from pantau.services import InfluxDB

pytestmark = pytest.mark.integration

STORAGE_UNAVAILABLE = "the time-series store is unavailable; try again shortly"
#: A password that must never appear in a response or a log line.
WRONG_PASSWORD = "not-the-password-7f3Kq9"  # noqa: S105 - a test value
ADMIN_PASSWORD = "admin-password-Zx81mQ0p"  # noqa: S105 - a test value


@pytest.fixture
def influxdb_with_auth(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[InfluxDB]:
    """A real InfluxDB 1.x with authentication on (influxd reads INFLUXDB_* overrides from its
    environment) and one admin account."""
    monkeypatch.setenv("INFLUXDB_HTTP_AUTH_ENABLED", "true")
    with InfluxDB(workdir=tmp_path / "influxdb") as server:
        created = httpx.post(
            f"{server.url}/query",
            data={"q": f"CREATE USER admin WITH PASSWORD '{ADMIN_PASSWORD}' WITH ALL PRIVILEGES"},
            timeout=10,
        )
        assert created.status_code == 200, created.text
        yield server


def test_a_503_names_no_url_credentials_query_or_influxdb_error_and_logs_them_under_its_id(
    influxdb_with_auth: InfluxDB, caplog: pytest.LogCaptureFixture
) -> None:
    """InfluxDB refuses the API's credentials (401 'authorization failed'): the client sees a
    one-line reason and a request id, equal to the X-Request-ID header; the log line with that
    id has InfluxDB's reason and the query, and no password."""
    host = influxdb_with_auth.url.removeprefix("http://")
    settings = ApiSettings(influx_url=f"http://reader:{WRONG_PASSWORD}@{host}")
    caplog.set_level(logging.INFO)  # httpx logs every request URL at INFO
    with TestClient(create_app(settings)) as client:
        resp = client.get("/v1/beds")
    assert resp.status_code == 503
    body = resp.json()
    assert list(body) == ["detail", "request_id"]
    assert body["detail"] == STORAGE_UNAVAILABLE
    assert re.fullmatch(r"[0-9a-f]{32}", body["request_id"])
    assert resp.headers["x-request-id"] == body["request_id"]
    assert resp.headers["retry-after"] == "5"
    for leak in (WRONG_PASSWORD, "reader:", host, "SELECT", "authorization failed"):
        assert leak not in resp.text
    logged = [r.getMessage() for r in caplog.records if body["request_id"] in r.getMessage()]
    assert len(logged) == 1
    assert "authorization failed" in logged[0]
    assert "SELECT * FROM" in logged[0]
    assert all(WRONG_PASSWORD not in r.getMessage() for r in caplog.records)
    assert any("HTTP Request: GET http://127.0.0.1" in r.getMessage() for r in caplog.records)


def test_credentials_in_the_influxdb_url_authenticate_and_are_never_logged(
    influxdb_with_auth: InfluxDB, caplog: pytest.LogCaptureFixture
) -> None:
    host = influxdb_with_auth.url.removeprefix("http://")
    settings = ApiSettings(influx_url=f"http://admin:{ADMIN_PASSWORD}@{host}")
    caplog.set_level(logging.INFO)
    with TestClient(create_app(settings)) as client:
        resp = client.get("/v1/beds")
    assert resp.status_code == 200
    assert len(resp.json()["items"]) == 21
    assert any(f"GET http://{host}/query" in r.getMessage() for r in caplog.records)
    assert all(ADMIN_PASSWORD not in r.getMessage() for r in caplog.records)


def test_a_stopped_influxdb_is_a_503_without_its_url(influxdb: InfluxDB) -> None:
    """The old body was 'InfluxDB at http://user:pass@host:port is unavailable (...)'."""
    host = influxdb.url.removeprefix("http://")
    settings = ApiSettings(influx_url=f"http://reader:{WRONG_PASSWORD}@{host}", influx_timeout_s=2)
    with TestClient(create_app(settings)) as client:
        influxdb.stop()
        # History reads InfluxDB per request (current values answer from memory).
        resp = client.get("/v1/beds/history")
    assert resp.status_code == 503
    assert resp.json() == {
        "detail": STORAGE_UNAVAILABLE,
        "request_id": resp.headers["x-request-id"],
    }
    assert WRONG_PASSWORD not in resp.text
    assert host not in resp.text


def test_a_well_formed_incoming_request_id_is_kept_and_a_bad_one_replaced(
    influxdb: InfluxDB,
) -> None:
    with TestClient(create_app(ApiSettings(influx_url=influxdb.url))) as client:
        kept = client.get("/healthz", headers={"X-Request-ID": "lb-2024.07.01:abc"})
        replaced = client.get("/healthz", headers={"X-Request-ID": "x\r\nforged: 1" + "a" * 100})
    assert kept.headers["x-request-id"] == "lb-2024.07.01:abc"
    assert re.fullmatch(r"[0-9a-f]{32}", replaced.headers["x-request-id"])


def test_a_4xx_quotes_at_most_64_characters_of_a_60_kb_input(influxdb: InfluxDB) -> None:
    huge = "x" * 60_000
    cut = f"'{'x' * 63}... (60000 characters)"
    with TestClient(create_app(ApiSettings(influx_url=influxdb.url))) as client:
        invalid = client.get("/v1/beds/summary", params={"level": huge})
        unknown = client.get("/v1/beds", params={"bed_type": huge})
        no_site = client.get(f"/v1/beds/{huge}")
    assert invalid.status_code == 422
    assert invalid.json()["detail"].endswith(f"(got {cut})")
    assert (unknown.status_code, no_site.status_code) == (422, 404)
    assert unknown.json()["detail"].startswith(f"unknown bed type {cut}; use")
    assert no_site.json()["detail"] == f"no site {cut} in Kota Semarang"
    for resp in (invalid, unknown, no_site):
        assert len(resp.content) < 4000


def test_a_bug_is_a_500_with_a_request_id_and_the_traceback_only_in_the_log(
    influxdb: InfluxDB, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(ApiSettings(influx_url=influxdb.url))

    def broken() -> None:
        raise KeyError(WRONG_PASSWORD)

    app.add_api_route("/v1/broken", broken)
    with TestClient(app, raise_server_exceptions=False) as client:
        resp = client.get("/v1/broken")
    rid = resp.headers["x-request-id"]
    assert (resp.status_code, resp.json()) == (
        500,
        {"detail": "internal error; quote the request id when reporting it", "request_id": rid},
    )
    assert WRONG_PASSWORD not in resp.text
    failed = [r for r in caplog.records if r.getMessage() == f"request {rid} /v1/broken failed"]
    assert len(failed) == 1
    assert failed[0].exc_info is not None

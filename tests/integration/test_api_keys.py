"""A key's life through the real commands: ``pantau api key create`` prints it once, the running
API accepts it, ``revoke`` makes the next request 401 without a restart; per-key and per-address
rate limits answer 429 with Retry-After; CORS answers only the configured origins."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from city import DEMO_CITY, load_registry
from pantau.cli import app as pantau_cli
from pantau.services import InfluxDB
from tests.api_access_support import RunningApi, feed, running_api

pytestmark = pytest.mark.integration

ORIGIN = "https://dinkes.semarangkota.go.id"


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApi]:
    tmp = tmp_path_factory.mktemp("api-keys")
    with InfluxDB(workdir=tmp / "influxdb") as db:
        feed(db, load_registry(DEMO_CITY))
        env = {"PANTAU_API_ANONYMOUS_RATE_PER_MIN": "6", "PANTAU_CORS_ORIGINS": f'["{ORIGIN}"]'}
        with running_api(tmp, db, **env) as running:
            yield running


@dataclass(frozen=True)
class Done:
    returncode: int
    stdout: str
    stderr: str


def _pantau(keys_db: Path, *args: str) -> Done:
    """``pantau api key ...`` in this process (the API it talks to through the file is a real
    process); only PANTAU_API_KEYS_DB set."""
    env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("PANTAU_")}
    env["PANTAU_API_KEYS_DB"] = str(keys_db)
    result = CliRunner().invoke(pantau_cli, ["api", "key", *args], env=env)
    return Done(result.exit_code, result.stdout, result.stderr)


def _get(api: RunningApi, path: str, key: str | None = None, **headers: str) -> httpx.Response:
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    return httpx.get(f"{api.url}{path}", headers=headers, timeout=10)


def test_a_created_key_works_at_once_and_a_revoked_one_is_refused_at_once(
    api: RunningApi,
) -> None:
    made = _pantau(
        api.keys_db, "create", "--name", "Dinkes, Kota Semarang", "--role", "health_officer",
        "--region", "33.74.07",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    assert made.stdout.count("\n") == 1  # the key alone on stdout
    assert "shown once" in made.stderr
    assert _get(api, "/v1/beds/rs-kariadi", key).status_code == 200
    assert _get(api, "/v1/beds/rs-elisabeth", key).status_code == 403

    listed = _pantau(api.keys_db, "list", "--json")
    assert listed.returncode == 0, listed.stderr
    (record,) = [k for k in json.loads(listed.stdout) if k["name"] == "Dinkes, Kota Semarang"]
    assert (record["role"], record["regions"], record["revoked_at"]) == (
        "health_officer",
        ["33.74.07"],
        None,
    )
    assert key not in listed.stdout
    assert key[-20:] not in _pantau(api.keys_db, "list").stdout

    gone = _pantau(api.keys_db, "revoke", record["id"])
    assert gone.returncode == 0, gone.stderr
    # A refused key counts against its address's anonymous limit: a fresh address here.
    refused = _get(api, "/v1/beds/rs-kariadi", key, **{"X-Forwarded-For": "203.0.113.1"})
    assert (refused.status_code, refused.json()) == (401, {"detail": "unknown or revoked API key"})


def test_the_key_commands_refuse_bad_requests_with_one_line(api: RunningApi) -> None:
    for args, says in (
        (("create", "--name", "x", "--role", "ops"), "needs at least one --region"),
        (("create", "--name", "x", "--role", "ops", "--region", "33.99"), "unknown region"),
        (("create", "--name", "x", "--role", "admin", "--region", "33.74"), "every region"),
        (("revoke", "ffffffffffff"), "no key 'ffffffffffff'"),
    ):
        done = _pantau(api.keys_db, *args)
        assert done.returncode in (1, 2), args
        assert done.stdout == ""
        assert says in done.stderr, done.stderr
        assert done.stderr.count("\n") == 1


def test_a_key_over_its_rate_gets_429_with_retry_after(api: RunningApi) -> None:
    made = _pantau(api.keys_db, "create", "--name", "kiosk", "--role", "public",
                   "--rate-per-min", "6")  # fmt: skip
    key = made.stdout.strip()
    # 6 a minute: a burst of one, then a token every 10 s.
    assert _get(api, "/v1/regions", key).status_code == 200
    over = _get(api, "/v1/regions", key)
    assert over.status_code == 429
    assert over.headers["retry-after"] == "10"
    assert over.json()["detail"].startswith("key ")
    assert "limited to 6 requests a minute; retry in 10 s" in over.json()["detail"]


def test_anonymous_callers_are_limited_per_address(api: RunningApi) -> None:
    # uvicorn takes the client address from X-Forwarded-For sent by a local proxy.
    first = _get(api, "/v1/regions", **{"X-Forwarded-For": "203.0.113.7"})
    second = _get(api, "/v1/regions", **{"X-Forwarded-For": "203.0.113.7"})
    other = _get(api, "/v1/regions", **{"X-Forwarded-For": "203.0.113.8"})
    assert (first.status_code, second.status_code, other.status_code) == (200, 429, 200)
    assert second.headers["retry-after"] == "10"
    assert "address 203.0.113.7 is limited to 6 requests a minute" in second.json()["detail"]


def test_cors_answers_the_configured_origin_only(api: RunningApi) -> None:
    preflight = {
        "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "authorization",
    }
    ok = httpx.options(f"{api.url}/v1/beds/summary", headers={"Origin": ORIGIN, **preflight})
    assert ok.status_code == 200
    assert ok.headers["access-control-allow-origin"] == ORIGIN
    assert "authorization" in ok.headers["access-control-allow-headers"].lower()
    other = httpx.options(
        f"{api.url}/v1/beds/summary", headers={"Origin": "https://evil.example", **preflight}
    )
    assert other.status_code == 400
    assert "access-control-allow-origin" not in other.headers
    # A simple request from the origin gets the header too, and may read Retry-After.
    got = _get(api, "/v1/regions", Origin=ORIGIN, **{"X-Forwarded-For": "203.0.113.9"})
    assert got.headers["access-control-allow-origin"] == ORIGIN
    assert "retry-after" in got.headers["access-control-expose-headers"].lower()

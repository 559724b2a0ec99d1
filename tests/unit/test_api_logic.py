"""Pure parts of the read API: InfluxQL quoting, time formatting, staleness, parameter parsing,
crowd status, settings validation, and an app factory that does no I/O."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi import HTTPException
from fastapi.testclient import TestClient
from pydantic import ValidationError

from cloud.api import ApiSettings, create_app
from cloud.api.deps import bed_type_codes, parse_bed_type
from cloud.api.models import BedGroup
from cloud.api.models_sites import CrowdStatus
from cloud.api.now_sites import crowd_status
from cloud.api.queries import is_stale, iso_ms
from cloud.influx import latest_query, literal, where_clause
from contract.beds import BED_GROUPS


def test_string_literals_escape_quotes_and_backslashes() -> None:
    assert literal("Rumah Isolasi 'Kauman'") == r"'Rumah Isolasi \'Kauman\''"
    assert literal("a\\b") == r"'a\\b'"


def test_where_clause_ands_tags_and_ors_choices() -> None:
    clause = where_clause({"level": "kota", "bed_type": ["6", "7"], "site": None})
    assert clause == """ WHERE "level" = 'kota' AND ("bed_type" = '6' OR "bed_type" = '7')"""
    assert where_clause({"site": None}) == ""


def test_an_empty_choice_matches_nothing() -> None:
    assert where_clause({"bed_type": []}) == """ WHERE "bed_type" = '' AND "bed_type" != ''"""


def test_latest_query_groups_and_takes_the_newest_point() -> None:
    assert latest_query("bed", group_by=["sensor"], conditions={"site": "rs-kariadi"}) == (
        """SELECT * FROM "bed" WHERE "site" = 'rs-kariadi' """
        """GROUP BY "sensor" ORDER BY time DESC LIMIT 1"""
    )


def test_times_are_iso_8601_utc_with_milliseconds() -> None:
    assert iso_ms(1_719_802_800_007) == "2024-07-01T03:00:00.007Z"
    assert iso_ms(1_719_802_799_999) == "2024-07-01T02:59:59.999Z"
    assert iso_ms(None) is None


def test_staleness_is_strictly_older_than_the_limit() -> None:
    now = 1_000_000
    assert is_stale(now - 900_000, now=now, stale_after_s=900) is False
    assert is_stale(now - 900_001, now=now, stale_after_s=900) is True
    assert is_stale(None, now=now, stale_after_s=900) is True


def test_bed_groups_match_the_contract() -> None:
    assert {g.value for g in BedGroup} == set(BED_GROUPS)


def test_bed_type_parsing() -> None:
    assert parse_bed_type("26", allow_all=False) == 26
    assert parse_bed_type("all", allow_all=True) is None
    assert parse_bed_type(None, allow_all=False) is None
    with pytest.raises(HTTPException) as info:
        parse_bed_type("13", allow_all=True)
    assert info.value.status_code == 422
    assert 'use "all" or a SIRANAP code: 1 (VVIP / Super VIP)' in str(info.value.detail)
    assert bed_type_codes(None, BedGroup.HCU, allow_all=True) == [7]
    assert bed_type_codes("12", None, allow_all=False) == [12]
    assert bed_type_codes(None, None, allow_all=True) is None
    with pytest.raises(HTTPException) as both:
        bed_type_codes("7", BedGroup.HCU, allow_all=True)
    assert both.value.status_code == 400


@pytest.mark.parametrize(
    ("ratio", "status"),
    [
        (None, None),
        (0.0, CrowdStatus.NORMAL),
        (0.7999, CrowdStatus.NORMAL),
        (0.8, CrowdStatus.HIGH),
        (0.9999, CrowdStatus.HIGH),
        (1.0, CrowdStatus.OVER),
        (1.5, CrowdStatus.OVER),
    ],
)
def test_crowd_status_thresholds(ratio: float | None, status: CrowdStatus | None) -> None:
    assert crowd_status(ratio) is status


def test_settings_read_pantau_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PANTAU_INFLUX_URL", "http://influx:8086")
    monkeypatch.setenv("PANTAU_STALE_AFTER_S", "120")
    monkeypatch.setenv("PANTAU_API_PORT", "9000")
    settings = ApiSettings()
    assert (settings.influx_url, settings.stale_after_s, settings.api_port) == (
        "http://influx:8086",
        120.0,
        9000,
    )
    assert (settings.mode, settings.influx_db, settings.mqtt_username) == (
        "development",
        "pantau",
        "pantau-api",
    )


def test_production_refuses_missing_or_default_influxdb_credentials() -> None:
    shipped, chosen = "changeme", "Tq9-long-and-chosen"
    with pytest.raises(ValidationError, match="PANTAU_INFLUX_TOKEN"):
        ApiSettings(mode="production")
    with pytest.raises(ValidationError, match="PANTAU_INFLUX_PASSWORD is a well-known or default"):
        ApiSettings.model_validate(
            {"mode": "production", "influx_username": "reader", "influx_password": shipped}
        )
    ok = ApiSettings.model_validate(
        {"mode": "production", "influx_username": "reader", "influx_password": chosen}
    )
    assert ok.mode == "production"
    assert ApiSettings.model_validate({"mode": "production", "influx_token": chosen}).mode == (
        "production"
    )


def test_create_app_does_no_io_and_serves_openapi_without_a_lifespan() -> None:
    # A city file that does not exist: only the lifespan reads it.
    app = create_app(ApiSettings(city_file=Path("/nonexistent/city.yaml")))
    spec = TestClient(app).get("/openapi.json").json()
    summary = spec["paths"]["/v1/beds/summary"]["get"]
    assert {p["name"] for p in summary["parameters"]} == {"level", "bed_type", "group", "facility"}
    # 401/403/429: the access rule (cloud/api/auth.py) adds them to every declared route.
    assert set(summary["responses"]) == {"200", "400", "401", "403", "404", "422", "429", "503"}

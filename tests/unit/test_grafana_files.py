"""The Grafana provisioning files hang together: every dashboard parses, every panel and alert
uses the one provisioned datasource, and panel ids are unique (Grafana silently drops repeats)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from grafana_client.client import GrafanaClientError

from contract.beds import BOR_CRITICAL, BOR_HIGH
from contract.errors import ConfigError
from pantau.grafana_push import dashboard_payloads, datasource_payloads, expand_env, push
from pantau.paths import GRAFANA_DIR

PROVISIONING = GRAFANA_DIR / "provisioning"
DASHBOARD_FILES = sorted((GRAFANA_DIR / "dashboards").glob("*.json"))
ALERT_FILES = sorted((PROVISIONING / "alerting").glob("*.yaml"))
DATASOURCE_UID = "pantau-influxdb"


def _yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _datasource_uids() -> set[str]:
    uids: set[str] = set()
    for path in (PROVISIONING / "datasources").glob("*.yaml"):
        uids |= {ds["uid"] for ds in _yaml(path)["datasources"]}
    return uids


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """All panels, including those nested in collapsed rows."""
    out: list[dict[str, Any]] = []
    for panel in dashboard["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))
    return out


def _alert_rules() -> list[dict[str, Any]]:
    return [rule for path in ALERT_FILES for g in _yaml(path)["groups"] for rule in g["rules"]]


def test_the_datasource_is_influxql_on_the_pantau_database_with_url_from_env() -> None:
    (ds,) = _yaml(PROVISIONING / "datasources" / "pantau.yaml")["datasources"]
    assert ds["uid"] == DATASOURCE_UID
    assert ds["type"] == "influxdb"
    assert ds["jsonData"]["version"] == "InfluxQL"
    assert ds["jsonData"]["dbName"] == "pantau"
    assert ds["url"] == "${PANTAU_INFLUX_URL}"
    assert ds["secureJsonData"]["password"] == "${PANTAU_INFLUX_PASSWORD}"  # noqa: S105


def test_the_dashboard_provider_reads_the_folder_compose_mounts() -> None:
    (provider,) = _yaml(PROVISIONING / "dashboards" / "pantau.yaml")["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"


def test_there_is_a_city_now_dashboard() -> None:
    assert [p.name for p in DASHBOARD_FILES] == ["city-now.json"]
    dashboard = json.loads(DASHBOARD_FILES[0].read_text(encoding="utf-8"))
    assert dashboard["title"] == "City now"
    assert dashboard["uid"] == "pantau-city-now"


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda p: p.name)
def test_every_panel_queries_the_provisioned_datasource_with_raw_influxql(path: Path) -> None:
    dashboard = json.loads(path.read_text(encoding="utf-8"))
    uids = _datasource_uids()
    panels = _panels(dashboard)
    assert len(panels) == 9
    for panel in panels:
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] in uids, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] in uids, panel["title"]
            assert target["rawQuery"] is True, panel["title"]
            assert target["query"].startswith("SELECT "), panel["title"]
            # Without the time filter a panel would scan the database's whole history.
            assert "$timeFilter" in target["query"], panel["title"]
    for variable in dashboard["templating"]["list"]:
        assert variable["datasource"]["uid"] in uids


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda p: p.name)
def test_panel_ids_are_unique(path: Path) -> None:
    ids = [p["id"] for p in _panels(json.loads(path.read_text(encoding="utf-8")))]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda p: p.name)
def test_template_variables_used_in_queries_are_defined(path: Path) -> None:
    dashboard = json.loads(path.read_text(encoding="utf-8"))
    defined = {v["name"] for v in dashboard["templating"]["list"]}
    # Grafana's own macros, and $tag_<key> in aliases (the series' tag value).
    builtin = {"timeFilter", "__interval"}
    for panel in _panels(dashboard):
        for target in panel.get("targets", []):
            text = target["query"] + " " + target.get("alias", "")
            used = {v for v in re.findall(r"\$(\w+)", text) if not v.startswith("tag_")}
            assert used <= defined | builtin, (panel["title"], used - defined - builtin)


def test_alert_rules_cover_the_policy_and_use_the_datasource() -> None:
    rules = _alert_rules()
    assert {r["uid"] for r in rules} == {
        "pantau-city-bor-critical",
        "pantau-kecamatan-bor-high",
        "pantau-crowd-over-capacity",
        "pantau-gateway-offline",
        "pantau-dead-letters-rising",
    }
    uids = _datasource_uids() | {"__expr__"}
    for rule in rules:
        refs = {q["refId"]: q for q in rule["data"]}
        assert rule["condition"] in refs
        assert refs["A"]["datasourceUid"] == DATASOURCE_UID
        assert {q["datasourceUid"] for q in rule["data"]} <= uids
        assert refs["A"]["model"]["rawQuery"] is True
        assert "$timeFilter" in refs["A"]["model"]["query"]


def test_alert_thresholds_follow_the_bor_bands() -> None:
    conditions = {
        r["uid"]: next(q for q in r["data"] if q["refId"] == r["condition"])["model"]["expression"]
        for r in _alert_rules()
    }
    assert conditions["pantau-city-bor-critical"] == f"$B >= {BOR_CRITICAL:g}"
    assert conditions["pantau-kecamatan-bor-high"] == f"$B >= {BOR_HIGH:g}"
    assert conditions["pantau-crowd-over-capacity"] == "$B >= 1.0"


def test_alert_uids_are_unique_and_short_enough_for_grafana() -> None:
    uids = [r["uid"] for r in _alert_rules()]
    assert len(uids) == len(set(uids))
    assert all(len(u) <= 40 for u in uids)


# --- pantau grafana push: payloads built from the same files ---------------------------------

ENV = {
    "PANTAU_INFLUX_URL": "http://influxdb:8086",
    "PANTAU_INFLUX_USERNAME": "pantau-reader",
    "PANTAU_INFLUX_PASSWORD": "pa$$word",
}


def test_expand_env_follows_grafana_rules() -> None:
    env = {"A": "1", "B_2": "two"}
    assert expand_env("${A}/$B_2/$$A/$MISSING.", env) == "1/two/$A/."


def test_datasource_payload_is_the_provisioned_one_with_env_expanded() -> None:
    (ds,) = datasource_payloads(GRAFANA_DIR, ENV)
    assert ds["uid"] == DATASOURCE_UID
    assert ds["url"] == "http://influxdb:8086"
    assert ds["user"] == "pantau-reader"
    # Values come from the environment verbatim: a "$" inside a password is not re-expanded.
    assert ds["secureJsonData"] == {"password": "pa$$word"}
    assert ds["jsonData"]["dbName"] == "pantau"
    assert "editable" not in ds


def test_a_datasource_without_url_is_refused() -> None:
    with pytest.raises(ConfigError, match="no url"):
        datasource_payloads(GRAFANA_DIR, {})


def test_dashboard_payloads_overwrite_by_uid_into_the_pantau_folder() -> None:
    (body,) = dashboard_payloads(GRAFANA_DIR)
    assert body["overwrite"] is True
    assert body["folderUid"] == "pantau"
    assert body["dashboard"]["uid"] == "pantau-city-now"
    assert "id" not in body["dashboard"]
    assert len(body["dashboard"]["panels"]) == 9


def _http_error(status: int) -> GrafanaClientError:
    return GrafanaClientError(status, {"message": "x"}, f"HTTP {status}")  # type: ignore[no-untyped-call]


class _Recorder:
    """A pure fake of the three grafana_client elements: records calls, knows some uids."""

    def __init__(self, existing: set[str]) -> None:
        self.existing = existing
        self.calls: list[tuple[str, str]] = []
        self.datasource = self
        self.dashboard = self
        self.folder = self

    def _lookup(self, uid: str) -> dict[str, str]:
        if uid not in self.existing:
            raise _http_error(404)
        return {"uid": uid}

    def get_datasource_by_uid(self, uid: str) -> dict[str, str]:
        return self._lookup(uid)

    def create_datasource(self, ds: dict[str, Any]) -> None:
        self.calls.append(("create_datasource", ds["uid"]))

    def update_datasource_by_uid(self, uid: str, ds: dict[str, Any]) -> None:
        self.calls.append(("update_datasource", uid))

    def get_folder(self, uid: str) -> dict[str, str]:
        return self._lookup(uid)

    def create_folder(self, title: str, uid: str | None = None) -> None:
        self.calls.append(("create_folder", f"{uid}:{title}"))

    def update_dashboard(self, body: dict[str, Any]) -> None:
        self.calls.append(("update_dashboard", body["dashboard"]["uid"]))


def test_push_creates_what_is_missing() -> None:
    grafana = _Recorder(existing=set())
    result = push(
        grafana,
        datasources=datasource_payloads(GRAFANA_DIR, ENV),
        dashboards=dashboard_payloads(GRAFANA_DIR),
    )
    assert grafana.calls == [
        ("create_datasource", DATASOURCE_UID),
        ("create_folder", "pantau:Pantau"),
        ("update_dashboard", "pantau-city-now"),
    ]
    assert result.created == (DATASOURCE_UID,)
    assert result.updated == ()


def test_push_updates_what_exists() -> None:
    grafana = _Recorder(existing={DATASOURCE_UID, "pantau"})
    result = push(
        grafana,
        datasources=datasource_payloads(GRAFANA_DIR, ENV),
        dashboards=dashboard_payloads(GRAFANA_DIR),
    )
    assert grafana.calls == [
        ("update_datasource", DATASOURCE_UID),
        ("update_dashboard", "pantau-city-now"),
    ]
    assert result.updated == (DATASOURCE_UID,)


def test_push_does_not_hide_other_errors() -> None:
    class Forbidden(_Recorder):
        def get_datasource_by_uid(self, uid: str) -> dict[str, str]:
            raise _http_error(403)

    grafana = Forbidden(existing=set())
    with pytest.raises(GrafanaClientError):
        push(grafana, datasources=datasource_payloads(GRAFANA_DIR, ENV), dashboards=[])
    assert grafana.calls == []

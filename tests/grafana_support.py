"""The queries Grafana would run, read from the provisioned files (shared by the integration
and end-to-end tests)."""

from __future__ import annotations

import json
from typing import Any

import yaml

from pantau.paths import GRAFANA_DIR

ALERTS_FILE = GRAFANA_DIR / "provisioning" / "alerting" / "pantau-alerts.yaml"
#: Alert queries whose healthy answer is no rows (they count only what is wrong): none since
#: the silent-sensor rule counts readings per bucket (ADR 0028).
EMPTY_WHEN_HEALTHY: set[str] = set()


def grafana_to_influxql(query: str) -> str:
    """What Grafana sends for a raw query, with the dashboard at "last hour" and All selected
    for every variable."""
    query = query.replace("$timeFilter", "time > now() - 1h")
    query = query.replace("$__interval", "1m")
    for variable in (
        "kecamatan",
        "site",
        "bed_type",
        # hidden place variables (ADR 0028): with everything chosen, every sensor
        "ward_sensor",
        "gate_sensor",
        "bed_site",
    ):
        query = query.replace(f"${variable}", ".*")
    return query


def dashboards() -> dict[str, dict[str, Any]]:
    """Every provisioned dashboard by file stem."""
    return {
        path.stem: json.loads(path.read_text(encoding="utf-8"))
        for path in sorted((GRAFANA_DIR / "dashboards").glob("*.json"))
    }


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """All panels, including those nested in collapsed rows."""
    out: list[dict[str, Any]] = []
    for panel in dashboard["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))
    return out


def dashboard_queries() -> list[tuple[str, str]]:
    """(label, raw InfluxQL) of every panel target of every provisioned dashboard."""
    out: list[tuple[str, str]] = []
    for stem, dashboard in dashboards().items():
        for panel in panels(dashboard):
            for target in panel.get("targets", []):
                out.append((f"{stem}: {panel['title']} {target['refId']}", target["query"]))
    return out


def alert_rules() -> list[dict[str, Any]]:
    """Every provisioned alert rule."""
    doc = yaml.safe_load(ALERTS_FILE.read_text(encoding="utf-8"))
    return [rule for group in doc["groups"] for rule in group["rules"]]


def alert_queries() -> list[tuple[str, str]]:
    """(label, raw InfluxQL) of every provisioned alert rule's InfluxDB query."""
    return [
        (f"alert {rule['uid']} {q['refId']}", q["model"]["query"])
        for rule in alert_rules()
        for q in rule["data"]
        if q["datasourceUid"] != "__expr__"
    ]

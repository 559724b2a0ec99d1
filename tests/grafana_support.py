"""The queries Grafana would run, read from the provisioning files (shared by the
integration and end-to-end tests)."""

from __future__ import annotations

import json

import yaml

from pantau.paths import GRAFANA_DIR


def grafana_to_influxql(query: str) -> str:
    """What Grafana sends for a raw query, with the dashboard at "last hour" and All selected."""
    query = query.replace("$timeFilter", "time > now() - 1h")
    query = query.replace("$__interval", "1m")
    return query.replace("$kecamatan", ".*")


def dashboard_queries() -> list[tuple[str, str]]:
    """(label, raw InfluxQL) of every panel target of every provisioned dashboard."""
    out: list[tuple[str, str]] = []
    for path in sorted((GRAFANA_DIR / "dashboards").glob("*.json")):
        dashboard = json.loads(path.read_text(encoding="utf-8"))
        for panel in dashboard["panels"]:
            for target in panel.get("targets", []):
                out.append((f"{path.stem}: {panel['title']} {target['refId']}", target["query"]))
    return out


def alert_queries() -> list[tuple[str, str]]:
    """(label, raw InfluxQL) of every provisioned alert rule's InfluxDB query."""
    out: list[tuple[str, str]] = []
    for path in sorted((GRAFANA_DIR / "provisioning" / "alerting").glob("*.yaml")):
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
            for rule in group["rules"]:
                for q in rule["data"]:
                    if q["datasourceUid"] != "__expr__":
                        out.append((f"alert {rule['uid']} {q['refId']}", q["model"]["query"]))
    return out

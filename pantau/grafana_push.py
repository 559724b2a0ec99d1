"""Push Pantau's datasource, dashboards and alert rules to a Grafana that already runs (no file
mounts).

The files in ``grafana/`` stay the single source: the payloads are built from the same
provisioning YAML and dashboard JSON that docker-compose mounts, so a pushed Grafana and a
provisioned one show the same thing. Objects are created or updated by uid, so pushing twice is
harmless; alert rules go one rule group at a time (``PUT .../rule-groups/<group>``, which
creates, updates and removes rules so the group equals the file). Wired into the CLI as
``pantau grafana push --url URL --token TOKEN``; ``pantau grafana build`` regenerates the files
from pantau/grafana/ (the boards and rules as code).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Protocol

import typer
import yaml

from contract.errors import ConfigError
from pantau.paths import GRAFANA_DIR

log = logging.getLogger(__name__)

#: Grafana's env expansion in provisioning files: ``$$`` is a literal ``$``; ``${NAME}`` and
#: ``$NAME`` are replaced (unset names become empty, as Grafana does).
_ENV_REF = re.compile(r"\$\$|\$\{(\w+)\}|\$(\w+)")
#: Dashboards land in this folder, the same one the file provider uses.
FOLDER_UID = "pantau"
FOLDER_TITLE = "Pantau"


def expand_env(text: str, env: Mapping[str, str]) -> str:
    """Expand environment references exactly as Grafana does in provisioning files."""

    def one(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        return env.get(match.group(1) or match.group(2), "")

    return _ENV_REF.sub(one, text)


def _expand_tree(value: Any, env: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        return expand_env(value, env)
    if isinstance(value, dict):
        return {k: _expand_tree(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand_tree(v, env) for v in value]
    return value


def datasource_payloads(grafana_dir: Path, env: Mapping[str, str]) -> list[dict[str, Any]]:
    """Bodies for ``POST /api/datasources`` from ``provisioning/datasources/*.yaml``, with
    ``${VAR}`` expanded from ``env``. Refuses a datasource whose URL expands to nothing."""
    payloads: list[dict[str, Any]] = []
    for path in sorted((grafana_dir / "provisioning" / "datasources").glob("*.yaml")):
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        for raw in doc.get("datasources", []):
            ds = _expand_tree(raw, env)
            if not ds.get("url"):
                raise ConfigError(f"{path}: datasource {ds.get('uid')!r} has no url ({raw['url']})")
            # Provisioning-only keys that the HTTP API does not take.
            for key in ("orgId", "version", "editable"):
                ds.pop(key, None)
            payloads.append(ds)
    return payloads


def dashboard_payloads(grafana_dir: Path, *, folder_uid: str = FOLDER_UID) -> list[dict[str, Any]]:
    """Bodies for ``POST /api/dashboards/db``: every ``dashboards/*.json``, matched by uid and
    overwriting what is there (the files, not the UI, are the source)."""
    payloads: list[dict[str, Any]] = []
    for path in sorted((grafana_dir / "dashboards").glob("*.json")):
        dashboard = json.loads(path.read_text(encoding="utf-8"))
        if not dashboard.get("uid"):
            raise ConfigError(f"{path}: a dashboard needs a uid to be updated in place")
        # A numeric id belongs to one Grafana instance; the uid is what identifies it anywhere.
        dashboard.pop("id", None)
        payloads.append(
            {
                "dashboard": dashboard,
                "folderUid": folder_uid,
                "overwrite": True,
                "message": f"pantau grafana push ({path.name})",
            }
        )
    return payloads


_DURATION = re.compile(r"(\d+)([smh])")
_SECONDS = {"s": 1, "m": 60, "h": 3600}


def _seconds(duration: str) -> int:
    match = _DURATION.fullmatch(duration)
    if match is None:
        raise ConfigError(f"rule group interval {duration!r} is not like 30s, 1m or 1h")
    return int(match.group(1)) * _SECONDS[match.group(2)]


def alert_group_payloads(
    grafana_dir: Path, *, folder_uid: str = FOLDER_UID
) -> list[dict[str, Any]]:
    """Bodies for ``PUT /api/v1/provisioning/folder/<folder>/rule-groups/<group>``, one per
    group of ``provisioning/alerting/*.yaml``: the same rules Grafana would provision from the
    file, in the API's shape (folder uid, group name and org on every rule)."""
    payloads: list[dict[str, Any]] = []
    for path in sorted((grafana_dir / "provisioning" / "alerting").glob("*.yaml")):
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        for group in doc.get("groups", []):
            rules = [
                {**rule, "folderUID": folder_uid, "ruleGroup": group["name"], "orgID": 1}
                for rule in group["rules"]
            ]
            payloads.append(
                {
                    "title": group["name"],
                    "folderUid": folder_uid,
                    "interval": _seconds(group["interval"]),
                    "rules": rules,
                }
            )
    return payloads


class GrafanaLike(Protocol):
    """The part of ``grafana_client.GrafanaApi`` this module uses."""

    @property
    def datasource(self) -> Any: ...

    @property
    def dashboard(self) -> Any: ...

    @property
    def folder(self) -> Any: ...

    @property
    def alertingprovisioning(self) -> Any: ...


@dataclass(frozen=True, slots=True)
class PushResult:
    """What a push did, by uid."""

    created: tuple[str, ...]
    updated: tuple[str, ...]
    dashboards: tuple[str, ...]
    alert_groups: tuple[str, ...] = ()


def _not_found(exc: Exception) -> bool:
    return getattr(exc, "status_code", None) == 404


def push(
    api: GrafanaLike,
    *,
    datasources: list[dict[str, Any]],
    dashboards: list[dict[str, Any]],
    alert_groups: Sequence[dict[str, Any]] = (),
    folder_uid: str = FOLDER_UID,
    folder_title: str = FOLDER_TITLE,
) -> PushResult:
    """Create or update each datasource by uid, make sure the folder exists, then upload the
    dashboards and put each alert rule group. Errors other than "not found" propagate: a
    half-pushed Grafana must be loud."""
    from grafana_client.client import GrafanaClientError  # noqa: PLC0415 - optional at import

    created: list[str] = []
    updated: list[str] = []
    for ds in datasources:
        uid = ds["uid"]
        try:
            api.datasource.get_datasource_by_uid(uid)
        except GrafanaClientError as exc:
            if not _not_found(exc):
                raise
            api.datasource.create_datasource(ds)
            created.append(uid)
        else:
            api.datasource.update_datasource_by_uid(uid, ds)
            updated.append(uid)
    try:
        api.folder.get_folder(folder_uid)
    except GrafanaClientError as exc:
        if not _not_found(exc):
            raise
        api.folder.create_folder(folder_title, uid=folder_uid)
    pushed: list[str] = []
    for body in dashboards:
        api.dashboard.update_dashboard(body)
        pushed.append(body["dashboard"]["uid"])
    groups: list[str] = []
    for group in alert_groups:
        api.alertingprovisioning.update_rule_group(folder_uid, group["title"], group)
        groups.append(group["title"])
    log.info(
        "grafana: datasources created %s updated %s; dashboards %s; alert groups %s",
        created,
        updated,
        pushed,
        groups,
    )
    return PushResult(
        created=tuple(created),
        updated=tuple(updated),
        dashboards=tuple(pushed),
        alert_groups=tuple(groups),
    )


app = typer.Typer(
    help="Grafana: build Pantau's boards and alert rules, push them to a Grafana.",
    no_args_is_help=True,
)


@app.command("push")
def push_command(
    url: Annotated[str, typer.Option(help="Grafana base URL, e.g. https://grafana.example.go.id")],
    token: Annotated[
        str, typer.Option(envvar="GRAFANA_TOKEN", help="service account token (Editor or Admin)")
    ],
    influx_url: Annotated[
        str, typer.Option(envvar="PANTAU_INFLUX_URL", help="InfluxDB URL as Grafana reaches it")
    ],
    influx_username: Annotated[str, typer.Option(envvar="PANTAU_INFLUX_USERNAME")] = "",
    influx_password: Annotated[str, typer.Option(envvar="PANTAU_INFLUX_PASSWORD")] = "",
    grafana_dir: Annotated[Path, typer.Option(help="folder with provisioning/, dashboards/")] = (
        GRAFANA_DIR
    ),
) -> None:
    """Create or update the Pantau datasource, dashboards and alert rules in a running Grafana."""
    from grafana_client.api import GrafanaApi  # noqa: PLC0415 - keeps `pantau --help` fast

    env = {
        "PANTAU_INFLUX_URL": influx_url,
        "PANTAU_INFLUX_USERNAME": influx_username,
        "PANTAU_INFLUX_PASSWORD": influx_password,
    }
    api = GrafanaApi.from_url(url, credential=token)
    result = push(
        api,
        datasources=datasource_payloads(grafana_dir, env),
        dashboards=dashboard_payloads(grafana_dir),
        alert_groups=alert_group_payloads(grafana_dir),
    )
    typer.echo(
        f"datasources created: {', '.join(result.created) or '-'}; "
        f"updated: {', '.join(result.updated) or '-'}; "
        f"dashboards: {', '.join(result.dashboards)}; "
        f"alert groups: {', '.join(result.alert_groups)}"
    )


@app.command("build")
def build_command(
    check: Annotated[bool, typer.Option(help="only report files that differ; exit 1 if any")] = (
        False
    ),
) -> None:
    """Regenerate grafana/dashboards/*.json and the alert rules from pantau/grafana/."""
    # The builders need the grafana-foundation-sdk (dev extra); push does not.
    from pantau.grafana import stale_files, write_files  # noqa: PLC0415

    if check:
        stale = stale_files(GRAFANA_DIR)
        for rel in stale:
            typer.echo(f"stale: grafana/{rel}")
        raise typer.Exit(1 if stale else 0)
    for rel in write_files(GRAFANA_DIR):
        typer.echo(f"wrote grafana/{rel}")

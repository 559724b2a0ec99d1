"""``pantau demo``: the demo city flowing end to end, with a live view of the city."""

from __future__ import annotations

import logging
import signal
import time
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table

from city import DEMO_CITY, load_registry
from contract.errors import ConfigError
from firmware_sim.scenario import load_scenario
from pantau.paths import ROOT
from pantau.stack import LocalStack, StackError

DEMO_SCENARIO = ROOT / "firmware-sim" / "scenarios" / "demo.yaml"
BAND_STYLE = {"normal": "green", "high": "yellow", "critical": "bold red"}
GROUPS = ("icu", "hcu", "isolation", "general")

console = Console()


def demo(
    city: Annotated[Path, typer.Option(help="city registry file")] = DEMO_CITY,
    scenario: Annotated[Path, typer.Option(help="firmware simulator scenario")] = DEMO_SCENARIO,
    duration: Annotated[
        float | None, typer.Option(help="stop after this many seconds (non-interactive)")
    ] = None,
    api_port: Annotated[int, typer.Option(help="API port (0: a free one)")] = 0,
    influx_url: Annotated[
        str | None, typer.Option(help="use this InfluxDB instead of starting one")
    ] = None,
    workdir: Annotated[
        Path | None, typer.Option(help="keep data and logs here (default: temp, removed)")
    ] = None,
    without: Annotated[
        list[str] | None,
        typer.Option(
            help="leave this gateway's simulated agent (or this direct device) out, so yours"
            " can take its place; repeatable. Credentials: device-access.env in the data dir"
        ),
    ] = None,
) -> None:
    """Run a whole demo city: simulated sensors on pseudo-terminals, one edge agent per
    gateway, Mosquitto, the ingester, InfluxDB and the API, with a live view of the city.
    Ctrl-C stops every process and removes the temporary data."""
    logging.basicConfig(level=logging.WARNING)
    try:
        # Checked before anything starts: one line and status 2, not a traceback from a child.
        load_registry(city)
        load_scenario(scenario)
    except ConfigError as exc:
        typer.echo(f"pantau demo: {exc}", err=True)
        raise typer.Exit(2) from None
    stop = _stop_on_signals()
    stack = LocalStack(
        city_file=city,
        scenario_file=scenario,
        workdir=workdir,
        api_port=api_port,
        influx_url=influx_url,
        keep_workdir=workdir is not None,
        without=frozenset(without or ()),
    )
    with console.status("starting Mosquitto, InfluxDB, ingester, API, simulator, gateways..."):
        try:
            stack.start()
        except (StackError, OSError) as exc:
            stack.stop()
            console.print(f"[red]demo failed to start:[/] {exc}")
            raise typer.Exit(1) from None
    deadline = None if duration is None else time.monotonic() + duration
    failed = None
    try:
        console.print(
            f"[bold]Pantau demo[/] — {stack.registry.city.name}\n"
            f"  API        {stack.api_url}  (docs: {stack.api_url}/docs)\n"
            f"  MQTT       {stack.mqtt_url}\n"
            f"  InfluxDB   {stack.influx}  (database pantau)\n"
            f"  data, logs {stack.dir}\n"
            f"  devices    {stack.device_access_path}  (passwords, addresses: docs/protocol.md)\n"
            + "".join(
                f"  left out   {gw}: attach yours (see that file)\n" for gw in sorted(stack.without)
            )
            + "Ctrl-C to stop."
        )
        with (
            httpx.Client(base_url=stack.api_url, timeout=2.0) as api,
            Live(console=console, refresh_per_second=1, transient=False) as live,
        ):
            while not stop and (deadline is None or time.monotonic() < deadline):
                stack.check_alive()
                live.update(_view(api, stack.registry.city.name))
                time.sleep(1.0)
    except StackError as exc:
        failed = exc
    except OSError:
        # The terminal went away under the live view (SIGHUP): stop quietly below.
        if signal.SIGHUP not in stop:
            raise
    finally:
        _stop_stack(stack, hung_up=signal.SIGHUP in stop)
    if signal.SIGHUP in stop:
        return  # nobody is left to read a message
    if failed is not None:
        console.print(f"[red]a part of the demo died:[/] {failed}")
        raise typer.Exit(1)
    console.print("stopped; temporary data removed." if workdir is None else "stopped.")


def _stop_on_signals() -> list[int]:
    """A list that becomes non-empty on SIGINT/SIGTERM/SIGHUP, so the loop ends and cleanup
    runs. SIGHUP is a closed terminal (an SSH drop, a closed tmux window): the children live in
    sessions of their own and would not hear of it, so it must stop them like SIGTERM."""
    received: list[int] = []

    def handler(signum: int, frame: FrameType | None) -> None:
        received.append(signum)

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, handler)
    return received


def _stop_stack(stack: LocalStack, *, hung_up: bool) -> None:
    """Stop every process and remove the temp data; without a terminal, without a spinner
    (writing to a hung-up terminal fails, and must not skip the cleanup)."""
    if hung_up:
        stack.stop()
        return
    with console.status("stopping every process..."):
        stack.stop()


def _get(api: httpx.Client, path: str, **params: str) -> Any:
    try:
        resp = api.get(path, params=params)
    except httpx.HTTPError:
        return None
    return resp.json() if resp.status_code == 200 else None


def _items(doc: Any) -> list[dict[str, Any]]:
    if isinstance(doc, list):
        return doc
    if isinstance(doc, dict):
        for key in ("items", "regions", "data"):
            if isinstance(doc.get(key), list):
                return list(doc[key])
    return []


def _pct(value: Any) -> str:
    return "—" if value is None else f"{value:5.1f} %"


def _view(api: httpx.Client, city_name: str) -> Group:
    beds = Table(title=f"Free beds in {city_name}", expand=True)
    for col in ("type", "capacity", "occupied", "free", "BOR"):
        beds.add_column(col, justify="right" if col != "type" else "left")
    for group in GROUPS:
        rows = _items(_get(api, "/v1/beds/summary", level="kota", group=group))
        for row in rows:
            band = row.get("band") or "normal"
            beds.add_row(
                group.upper() if group in ("icu", "hcu") else group,
                str(row.get("capacity", "—")),
                str(row.get("occupied", "—")),
                f"[bold]{row.get('free', '—')}[/]",
                f"[{BAND_STYLE.get(band, '')}]{_pct(row.get('bor'))}[/]",
            )
    kec = Table(title="BOR by kecamatan (hospitals + isolation centres)", expand=True)
    for col in ("kecamatan", "beds", "free", "BOR"):
        kec.add_column(col, justify="right" if col != "kecamatan" else "left")
    for row in _items(_get(api, "/v1/beds/summary", level="kecamatan")):
        band = row.get("band") or "normal"
        kec.add_row(
            str(row.get("name")),
            str(row.get("capacity")),
            str(row.get("free")),
            f"[{BAND_STYLE.get(band, '')}]{_pct(row.get('bor'))}[/]",
        )
    conditions = _get(api, "/v1/conditions") or {}
    crowd = Table(title="Crowds vs health-protocol capacity", expand=True)
    for col in ("site", "people", "capacity", "load"):
        crowd.add_column(col, justify="right" if col != "site" else "left")
    for row in _items(conditions.get("crowd")):
        ratio = row.get("ratio")
        style = "green" if ratio is None or ratio < 0.8 else ("yellow" if ratio < 1 else "bold red")
        crowd.add_row(
            str(row.get("site_name", row.get("site"))),
            str(row.get("occupancy")),
            str(row.get("capacity")),
            f"[{style}]{_pct(None if ratio is None else ratio * 100)}[/]",
        )
    queues = Table(title="Queues", expand=True)
    for col in ("site", "waiting", "counters", "est. wait"):
        queues.add_column(col, justify="right" if col != "site" else "left")
    # /v1/queues: the wait in the simulated queue's own time (the scenario's speedup), in
    # whole minutes rounded up, so a queue that exists never shows "0 min".
    for row in _items(_get(api, "/v1/queues")):
        minutes = row.get("wait_min")
        queues.add_row(
            str(row.get("site_name", row.get("site"))),
            str(row.get("waiting")),
            str(row.get("counters_open")),
            "—" if minutes is None else f"{minutes} min",
        )
    stamp = time.strftime("%H:%M:%S")
    return Group(Panel(Group(beds, kec), title=f"Pantau — {stamp}"), crowd, queues)

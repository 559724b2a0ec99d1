"""``pantau demo``: the demo city flowing end to end, with a live view of the city."""

from __future__ import annotations

import logging
import signal
import time
from pathlib import Path
from types import FrameType
from typing import Annotated

import httpx
import typer
from rich.console import Console
from rich.live import Live

from city import DEMO_CITY, load_registry
from contract.errors import ConfigError
from contract.mqtturl import BrokerUrl
from firmware_sim.scenario import load_scenario
from pantau.demo_view import fetch, first_dead, mosquitto_pub_example, render
from pantau.paths import ROOT
from pantau.services import ServiceError
from pantau.stack import LocalStack, StackError

DEMO_SCENARIO = ROOT / "firmware-sim" / "scenarios" / "demo.yaml"

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
        except (StackError, ServiceError, OSError) as exc:
            stack.stop()
            console.print("demo failed to start:", style="red")
            console.print(str(exc), markup=False, highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None
    deadline = None if duration is None else time.monotonic() + duration
    dead = None
    try:
        _banner(stack)
        with (
            httpx.Client(base_url=stack.api_url, timeout=2.0) as api,
            Live(console=console, refresh_per_second=1, transient=False) as live,
        ):
            while not stop and (deadline is None or time.monotonic() < deadline):
                dead = first_dead(stack)
                if dead is not None:
                    break
                live.update(render(fetch(api), city_name=stack.registry.city.name, clock=_clock()))
                time.sleep(1.0)
    except OSError:
        # The terminal went away under the live view (SIGHUP): stop quietly below.
        if signal.SIGHUP not in stop:
            raise
    finally:
        _stop_stack(stack, hung_up=signal.SIGHUP in stop)
    if signal.SIGHUP in stop:
        return  # nobody is left to read a message
    if dead is not None:
        # Plain text (no markup, no wrapping): a log line may hold brackets, and a path or a
        # traceback line is copied from here.
        console.print("a part of the demo died:", style="red")
        console.print(dead.report(), markup=False, highlight=False, soft_wrap=True)
        if workdir is None:
            console.print("(the temporary data dir is removed; keep it with --workdir DIR)")
        raise typer.Exit(1)
    if not console.is_terminal:
        console.print()  # the live view's last frame ends without a newline off a terminal
    console.print("stopped; temporary data removed." if workdir is None else "stopped.")


def _clock() -> str:
    return time.strftime("%H:%M:%S")


def _banner(stack: LocalStack) -> None:
    """Where everything is, and docs/protocol.md's ``mosquitto_pub`` example aimed at this
    demo (printed unwrapped, so it can be copied whole)."""
    console.print(
        f"[bold]Pantau demo[/] — {stack.registry.city.name}\n"
        f"  API        {stack.api_url}  (docs: {stack.api_url}/docs)\n"
        f"  bed board  {stack.api_url}/board  (public, live)\n"
        f"  MQTT       {stack.mqtt_url}\n"
        f"  InfluxDB   {stack.influx}  (database pantau)\n"
        f"  data, logs {stack.dir}\n"
        f"  passwords  {stack.device_access_path}\n"
        + "".join(
            f"  left out   {gw}: attach yours (see that file)\n" for gw in sorted(stack.without)
        ),
        soft_wrap=True,
    )
    broker = BrokerUrl.parse(stack.mqtt_url)
    example = mosquitto_pub_example(
        stack.registry, host=broker.host, port=broker.port, device_access=stack.device_access_path
    )
    if example:
        console.print('Send a reading yourself (docs/protocol.md, "Single reading"):')
        for line in example:
            console.print(f"  {line}", markup=False, highlight=False, soft_wrap=True)
    console.print("Ctrl-C to stop.")


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

"""``pantau fwsim``: run simulated sensor firmware on pseudo-terminals for gateways to read."""

from __future__ import annotations

import json
import logging
import signal
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer

from city import load_registry
from contract.errors import ConfigFileError, PantauError
from firmware_sim.models import MODELS
from firmware_sim.pty_bus import PtyBus
from firmware_sim.scenario import FAULT_HELP, load_scenario
from firmware_sim.simulation import Simulation, Transport

app = typer.Typer(no_args_is_help=True, help="Firmware simulator: sensors on serial lines.")


@app.command()
def models() -> None:
    """List the device models, one per sensor kind."""
    for info in MODELS.values():
        summary = " ".join(info.description.split())
        typer.echo(f"{info.kind.value:6} {info.name:12} {summary}")


@app.command()
def faults() -> None:
    """List the fault types a scenario's ``faults:`` can inject, with their fields."""
    for fault, text in FAULT_HELP.items():
        typer.echo(f"{fault.value:13} {text}")
    typer.echo(
        "\nevery rule: {type, sensors?, probability=1, from_step=0, steps?} + its field;"
        " examples: firmware-sim/scenarios/faults.yaml"
    )


def _read_passwords(path: Path) -> dict[str, str]:
    """``{gateway id: password}`` from a JSON file; every way it can be wrong is one
    :class:`ConfigFileError` naming the file (and never a password)."""
    source = str(path)
    try:
        doc = json.loads(path.read_bytes().decode("utf-8"))
    except OSError as exc:
        raise ConfigFileError(source, "", f"cannot read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigFileError(source, "", "not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno}, column {exc.colno}"
        raise ConfigFileError(source, where, f"not valid JSON: {exc.msg}") from None
    if not isinstance(doc, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in doc.items()
    ):
        raise ConfigFileError(source, "", "must be a JSON object {gateway id: password}")
    return doc


@app.command()
def run(
    city: Annotated[Path, typer.Option(help="city registry YAML")],
    scenario: Annotated[Path, typer.Option(help="scenario YAML (firmware-sim/scenarios/)")],
    transport: Annotated[str, typer.Option(help="pty or socket")] = "pty",
    gateway: Annotated[
        list[str] | None, typer.Option(help="only this gateway (repeatable)")
    ] = None,
    port_map: Annotated[
        Path | None, typer.Option(help="write {gateway: {port: url}} JSON here once ready")
    ] = None,
    truth: Annotated[Path | None, typer.Option(help="write the ground truth JSON here")] = None,
    mqtt_url: Annotated[
        str | None, typer.Option(help="broker for direct devices (mqtt://host:port)")
    ] = None,
    mqtt_passwords: Annotated[
        Path | None, typer.Option(help="JSON file {direct gateway id: password}")
    ] = None,
    start_delay: Annotated[
        float | None, typer.Option(help="seconds before the first reading")
    ] = None,
    bind: Annotated[
        str, typer.Option(help="socket transport: address to listen on (0.0.0.0 for all)")
    ] = "127.0.0.1",
    base_port: Annotated[
        int,
        typer.Option(
            help="socket transport: first TCP port; lines take consecutive ports in order of"
            " gateway, then port label (0 = free ports)"
        ),
    ] = 0,
    link: Annotated[
        Path | None,
        typer.Option(
            help="pty transport: keep a stable symlink DIR/<gateway>.<port> to each line's PTY"
            " (it follows the line across unplug/replug faults); attach gateways there",
            file_okay=False,
        ),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Open one line per gateway port, print where a gateway should attach, and emit the
    scenario's readings. Ctrl-C/SIGTERM (or the end of a finite scenario) writes the ground
    truth and exits 0. A bad city, scenario or passwords file: one line, exit 2."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if transport not in ("pty", "socket"):
        typer.echo(f"--transport must be pty or socket, not {transport!r}", err=True)
        raise typer.Exit(2)
    try:
        registry = load_registry(city)
        plan = load_scenario(scenario)
        passwords = _read_passwords(mqtt_passwords) if mqtt_passwords is not None else {}
        kind: Transport = "socket" if transport == "socket" else "pty"
        sim = Simulation(
            registry=registry,
            scenario=plan,
            transport=kind,
            gateways=gateway or None,
            start_delay_s=start_delay,
            mqtt_url=mqtt_url,
            mqtt_passwords=passwords,
            truth_path=truth,
            bind=bind,
            base_port=base_port,
            link_dir=link,
        )
        ports = sim.start()
    except (PantauError, OSError, ValueError) as exc:
        typer.echo(f"fwsim: {exc}", err=True)
        raise typer.Exit(2) from None

    def on_signal(signum: int, frame: FrameType | None) -> None:
        sim.stop()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    for gw_id, lines in ports.items():
        for label, url in lines.items():
            bus = sim.buses.get((gw_id, label))
            pty = f"  -> {bus.path}" if isinstance(bus, PtyBus) and bus.link is not None else ""
            typer.echo(f"{gw_id:24} {label:8} {url}{pty}")
    if port_map is not None:
        tmp = port_map.with_name(f".{port_map.name}.tmp")
        tmp.write_text(json.dumps(ports, indent=2, sort_keys=True) + "\n")
        tmp.replace(port_map)  # atomic: whoever polls for the file never reads half of it
    steps = plan.total_steps
    typer.echo(
        f"scenario {plan.name}: {'until stopped' if steps is None else f'{steps} readings'}"
        f" per sensor every {plan.interval_s:g} s (speedup {plan.speedup:g}x)"
    )
    sim.run()
    done = sim.ground_truth()
    typer.echo(
        f"stopped after {sim.steps_done} steps: {done['frames_written']} valid frames written,"
        f" {done['frames_invalid']} invalid, {done['frames_unsent']} unsent"
    )

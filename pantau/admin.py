"""Operator tooling: validate a city file; broker identities are in :mod:`pantau.broker_cli`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from city import DEMO_CITY, load_registry
from contract.errors import RegistryError
from pantau.broker_cli import broker_app
from pantau.certs import certs_command

city_app = typer.Typer(help="Inspect and validate city registry files.", no_args_is_help=True)
__all__ = ["broker_app", "city_app"]
console = Console()
# In its own module (cryptography, file layout); a sub-command of `pantau broker` all the same.
broker_app.command("certs")(certs_command)


@city_app.command("check")
def city_check(path: Annotated[Path, typer.Argument()] = DEMO_CITY) -> None:
    """Validate a registry file; exit 2 with one line naming the file, place and problem if it
    is wrong."""
    try:
        reg = load_registry(path)
    except RegistryError as exc:
        # typer.echo, not rich: rich would wrap a long message into several lines.
        typer.echo(f"invalid: {exc}", err=True)
        raise typer.Exit(2) from None
    console.print(
        f"[green]ok[/] {reg.city.name}: {len(reg.city.kecamatan)} kecamatan, "
        f"{len(reg.kelurahan)} kelurahan, {len(reg.sites)} sites, "
        f"{len(reg.gateways)} gateways, {len(reg.sensors)} sensors"
    )

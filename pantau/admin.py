"""Operator tooling: validate a city file, manage broker credentials."""

from __future__ import annotations

import secrets
import subprocess
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from city import DEMO_CITY, load_registry
from contract.errors import RegistryError
from pantau.services import SERVICE_USERS, require_binary

city_app = typer.Typer(help="Inspect and validate city registry files.", no_args_is_help=True)
broker_app = typer.Typer(help="Broker credentials (mosquitto password file).", no_args_is_help=True)
console = Console()


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


@broker_app.command("passwd")
def broker_passwd(
    passwd_file: Annotated[Path, typer.Argument(help="mosquitto password file to create/update")],
    city_file: Annotated[Path, typer.Option("--city")] = DEMO_CITY,
    user: Annotated[list[str] | None, typer.Option(help="only these users")] = None,
) -> None:
    """Give every gateway of the city (and the service accounts) a fresh random password.

    Prints ``user password`` lines once; store them in the gateways' settings and your vault."""
    reg = load_registry(city_file)
    users = user or [*SERVICE_USERS, *reg.gateways]
    tool = require_binary("mosquitto_passwd")
    for name in users:
        password = secrets.token_urlsafe(18)
        args = [tool, "-b", str(passwd_file), name, password]
        if not passwd_file.exists():
            args.insert(1, "-c")
        subprocess.run(args, check=True)
        typer.echo(f"{name} {password}")

"""``pantau api key create|list|revoke``: the API key file (PANTAU_API_KEYS_DB, or ``--db``).

A key is printed once, alone on stdout, when it is created (``KEY=$(pantau api key create
...)``); only its SHA-256 is stored, so a lost key is revoked and replaced, never recovered.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from city import load_registry
from cloud.api.auth_keys import ApiKey, KeyStore
from cloud.api.auth_roles import RegionIndex, Role
from cloud.api.config import ApiSettings
from contract.errors import ConfigError
from contract.secrets import settings_or_config_error

app = typer.Typer(no_args_is_help=True, help="API keys: create (shown once), list, revoke.")

DbOption = Annotated[
    Path | None, typer.Option("--db", help="key file (default: PANTAU_API_KEYS_DB)")
]


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"pantau api key: {message}", err=True)
    return typer.Exit(code)


def _settings() -> ApiSettings:
    try:
        return settings_or_config_error(ApiSettings, what="API settings")
    except ConfigError as exc:
        raise _fail(str(exc)) from None


def _store(db: Path | None, settings: ApiSettings) -> KeyStore:
    path = db if db is not None else settings.api_keys_db
    if path is None:
        raise _fail("no key file: set PANTAU_API_KEYS_DB or pass --db")
    return KeyStore(path=path)


def _check_regions(role: Role, regions: list[str], settings: ApiSettings) -> None:
    """Restricted roles need regions the city has; public and admin keys take none."""
    if role in (Role.PUBLIC, Role.ADMIN) and regions:
        what = "only public data" if role is Role.PUBLIC else "every region"
        raise _fail(f"a {role.value} key reads {what}; drop --region")
    if role in (Role.HEALTH_OFFICER, Role.OPS) and not regions:
        raise _fail(
            f"a {role.value} key needs at least one --region (a kecamatan, kota or provinsi "
            "code; see GET /v1/regions)"
        )
    try:
        index = RegionIndex(registry=load_registry(settings.city_file))
    except ConfigError as exc:
        raise _fail(str(exc)) from None
    unknown = index.unknown(regions)
    if unknown:
        raise _fail(f"unknown region code(s) {', '.join(unknown)} (see GET /v1/regions)")


@app.command()
def create(
    name: Annotated[str, typer.Option(help="who holds the key, e.g. 'Dinkes Kota Semarang'")],
    role: Annotated[Role, typer.Option(help="what the key may read")],
    region: Annotated[
        list[str] | None,
        typer.Option(help="region code the key may read restricted data in (repeatable)"),
    ] = None,
    rate_per_min: Annotated[
        int | None,
        typer.Option(help="requests a minute (default: PANTAU_API_RATE_PER_MIN)", min=1),
    ] = None,
    db: DbOption = None,
) -> None:
    """Create a key and print it once on stdout (only its SHA-256 is stored)."""
    settings = _settings()
    regions = list(dict.fromkeys(region or []))
    if not name.strip():
        raise _fail("--name must not be empty")
    _check_regions(role, regions, settings)
    with _store(db, settings) as store:
        record, key = store.create(
            name=name.strip(), role=role, regions=tuple(regions), rate_per_min=rate_per_min
        )
    scope = ", ".join(record.regions) or ("every region" if role is Role.ADMIN else "public data")
    typer.echo(
        f"created key {record.id} for {record.name!r}: {role.value}, {scope}. "
        "It is shown once, below: store it now.",
        err=True,
    )
    typer.echo(key)


def _row(k: ApiKey) -> str:
    state = f"revoked {k.revoked_at}" if k.revoked_at else "active"
    regions = ",".join(k.regions) or "-"
    rate = str(k.rate_per_min) if k.rate_per_min else "default"
    return (
        f"{k.id}  {k.role.value:<14}  {regions:<20}  {rate:>7}  {k.created_at}  {state}  {k.name}"
    )


@app.command("list")
def list_keys(
    db: DbOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON array")] = False,
) -> None:
    """Every key (id, role, regions, rate, created, revoked, name); never a key itself."""
    with _store(db, _settings()) as store:
        records = store.records()
    if as_json:
        typer.echo(json.dumps([asdict(k) for k in records], ensure_ascii=False))
        return
    typer.echo(f"{'id':<12}  {'role':<14}  {'regions':<20}  {'rate':>7}  created  state  name")
    for k in records:
        typer.echo(_row(k))


@app.command()
def revoke(
    key_id: Annotated[str, typer.Argument(help="the key's id (from list)")], db: DbOption = None
) -> None:
    """Revoke a key: every API sharing the key file refuses it from its next request."""
    with _store(db, _settings()) as store:
        record = store.revoke(key_id)
    if record is None:
        raise _fail(f"no key {key_id!r}", code=1)
    typer.echo(f"revoked key {record.id} ({record.name}) at {record.revoked_at}")

"""``pantau broker ...``: create the broker's identities, then add, revoke and rotate them on the
running broker without a restart (docs/adr/0010-broker-identity.md).

Only ``init`` writes a file (before the broker's first start). Everything else talks to the
running broker as ``pantau-admin`` through ``$CONTROL``; its password comes from
``PANTAU_BROKER_ADMIN_PASSWORD`` or a prompt, never from the command line. Every name must be
a device of the city registry or a service account named explicitly."""

from __future__ import annotations

import os
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

from city import DEMO_CITY, Registry, load_registry
from contract import topics
from contract.errors import RegistryError, TopicError
from contract.mqtturl import BrokerUrl
from contract.status import GatewayStatus
from contract.topics import Channel, build
from pantau.broker_identity import (
    SERVICE_ACCOUNTS,
    device_account,
    device_role,
    identity_document,
    ingest_member,
    write_document,
)
from pantau.dynsec import BrokerControlError, DynsecControl, control_for

broker_app = typer.Typer(
    help="Broker identities: accounts bound to client ids, per-device topic rights.",
    no_args_is_help=True,
)
ADMIN_PASSWORD_ENV = "PANTAU_BROKER_ADMIN_PASSWORD"  # noqa: S105 - the variable's name

CityOpt = Annotated[Path, typer.Option("--city", help="the city registry")]
UrlOpt = Annotated[
    str,
    typer.Option(
        "--url",
        envvar="PANTAU_BROKER_URL",
        help="mqtt://host:port, or mqtts://host:port with PANTAU_MQTT_CA_FILE",
    ),
]


def new_password() -> str:
    """A fresh random broker password (18 random bytes, URL-safe text)."""
    return secrets.token_urlsafe(18)


def _registry(path: Path) -> Registry:
    try:
        return load_registry(path)
    except RegistryError as exc:
        typer.echo(f"invalid: {exc}", err=True)
        raise typer.Exit(2) from None


def _known(registry: Registry, names: list[str]) -> None:
    """Refuse, before any change, a name that is neither a device nor a service account."""
    unknown = [n for n in names if n not in registry.gateways and n not in SERVICE_ACCOUNTS]
    if unknown:
        typer.echo(f"unknown to the registry and not a service account: {', '.join(unknown)}")
        raise typer.Exit(2)


def admin_control(url: str) -> DynsecControl:
    """An admin session on the broker at ``url``; the password from the environment or a
    prompt, never the command line."""
    try:
        BrokerUrl.parse(url)
    except ValueError as exc:
        typer.echo(f"--url / PANTAU_BROKER_URL {exc}", err=True)
        raise typer.Exit(2) from None
    password = os.environ.get(ADMIN_PASSWORD_ENV) or typer.prompt(
        "pantau-admin password", hide_input=True
    )
    return control_for(url, password)


def _fail(exc: BrokerControlError) -> typer.Exit:
    typer.echo(f"broker refused: {exc}", err=True)
    return typer.Exit(1)


@broker_app.command("init")
def broker_init(
    identity_file: Annotated[Path, typer.Argument(help="dynamic-security.json to create")],
    city_file: CityOpt = DEMO_CITY,
    ingest_members: Annotated[int, typer.Option(min=1, help="ingester accounts")] = 1,
    force: Annotated[bool, typer.Option(help="replace an existing file")] = False,
) -> None:
    """Create the identity file for a broker's first start: the service accounts (and
    ``pantau-ingest-2..N`` for a scale-out group) and every device of the city, each with a
    fresh random password. Prints ``user client-id password`` lines once; keep them."""
    if identity_file.exists() and not force:
        typer.echo(f"{identity_file} exists (the broker's live state); use --force to replace it")
        raise typer.Exit(2)
    registry = _registry(city_file)
    accounts = [
        *SERVICE_ACCOUNTS.values(),
        *(ingest_member(n) for n in range(2, ingest_members + 1)),
    ]
    roles = []
    for gw in registry.gateways.values():
        accounts.append(device_account(gw.id))
        roles.append(device_role(gw.id, gw.site, kind="direct" if gw.direct else "gateway"))
    pairs = [(a, new_password()) for a in accounts]
    write_document(identity_file, identity_document(pairs, roles))
    for account, password in pairs:
        typer.echo(f"{account.username} {account.client_id} {password}")


@broker_app.command("add-device")
def broker_add_device(
    device: Annotated[list[str], typer.Argument(help="gateway or direct-device ids")],
    city_file: CityOpt = DEMO_CITY,
    url: UrlOpt = "mqtt://127.0.0.1:1883",
) -> None:
    """Give registry devices an account on the running broker (their own site's topics,
    client id = device id). Prints ``user password`` once."""
    registry = _registry(city_file)
    missing = [d for d in device if d not in registry.gateways]
    if missing:
        typer.echo(f"not in the registry (add it there first): {', '.join(missing)}")
        raise typer.Exit(2)
    try:
        with admin_control(url) as ctl:
            for dev in device:
                gw = registry.gateways[dev]
                password = new_password()
                ctl.add_device(dev, gw.site, password, kind="direct" if gw.direct else "gateway")
                typer.echo(f"{dev} {password}")
    except BrokerControlError as exc:
        raise _fail(exc) from None


@broker_app.command("passwd")
def broker_passwd(
    user: Annotated[list[str], typer.Option("--user", help="account to give a new password")],
    city_file: CityOpt = DEMO_CITY,
    url: UrlOpt = "mqtt://127.0.0.1:1883",
) -> None:
    """Give the named accounts fresh random passwords on the running broker (the old one stops
    at once and the device is disconnected). Service accounts change only when named."""
    _known(_registry(city_file), user)
    try:
        with admin_control(url) as ctl:
            for name in user:
                password = new_password()
                ctl.set_password(name, password)
                typer.echo(f"{name} {password}")
    except BrokerControlError as exc:
        raise _fail(exc) from None


@broker_app.command("revoke")
def broker_revoke(
    device: Annotated[list[str], typer.Argument(help="gateway or direct-device ids")],
    city_file: CityOpt = DEMO_CITY,
    url: UrlOpt = "mqtt://127.0.0.1:1883",
) -> None:
    """Delete devices' accounts: a connected device is cut off at once and refused afterwards;
    its retained status is cleared so dashboards see it gone."""
    registry = _registry(city_file)
    _known(registry, device)
    try:
        with admin_control(url) as ctl:
            for dev in device:
                if dev in SERVICE_ACCOUNTS:
                    typer.echo(f"{dev} is a service account, not a device")
                    raise typer.Exit(2)
                ctl.delete_device(dev)
                ctl.clear_retained(build(registry.gateways[dev].site, dev, Channel.STATUS))
                typer.echo(f"{dev} revoked")
    except BrokerControlError as exc:
        raise _fail(exc) from None


def _status_words(payload: bytes | None) -> str:
    if not payload:
        return "no status"
    try:
        status = GatewayStatus.model_validate_json(payload)
    except ValidationError:
        return "unreadable status"
    seen = datetime.fromtimestamp(status.ts / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    return f"{status.state} since {seen}"


@broker_app.command("list")
def broker_list(url: UrlOpt = "mqtt://127.0.0.1:1883") -> None:
    """Every account on the running broker: username, bound client id, roles, and for a
    device its last retained status (online/offline and when)."""
    try:
        with admin_control(url) as ctl:
            accounts, statuses = ctl.accounts_and_statuses()
    except BrokerControlError as exc:
        raise _fail(exc) from None
    by_device = {topics.parse(t).gateway: p for t, p in statuses.items() if _is_device(t)}
    for acc in sorted(accounts, key=lambda a: str(a.get("username"))):
        name = str(acc.get("username"))
        roles = ",".join(str(r.get("rolename")) for r in acc.get("roles", []))
        line = f"{name} client-id={acc.get('clientid', '-')} roles={roles}"
        if name not in SERVICE_ACCOUNTS and not name.startswith("pantau-ingest-"):
            line += f" {_status_words(by_device.get(name))}"
        typer.echo(line)


def _is_device(topic: str) -> bool:
    try:
        topics.parse(topic)
    except TopicError:
        return False
    return True

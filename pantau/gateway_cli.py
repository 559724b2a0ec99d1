"""``pantau gateway add|list|show|revoke|rotate``: a gateway's (or direct device's) whole life,
registry and broker together, with no restart (docs/adr/0017-gateway-lifecycle.md).

The registry file is edited in place, comments kept, validated before it is written and
replaced atomically (:mod:`pantau.registry_edit`); the running ingester and API pick the change
up themselves. The broker is changed through its dynamic security plugin as ``pantau-admin``
(:mod:`pantau.dynsec`), whose password comes from ``PANTAU_BROKER_ADMIN_PASSWORD`` or a
prompt. Every refusal is one sentence and exit status 2, before anything has changed; a broker
that refuses is exit status 1."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from city import Registry, load_registry
from contract import topics
from contract.errors import ConfigFileError, RegistryError, TopicError
from contract.topics import ID_PATTERN, Channel, build, is_valid_id
from contract.yamlfile import read_yaml
from pantau import rotation
from pantau.broker_cli import admin_control, new_password
from pantau.broker_identity import SERVICE_ACCOUNTS, DeviceKind
from pantau.dynsec import BrokerControlError
from pantau.gateway_view import (
    COLUMNS,
    age_words,
    edge_config,
    gateway_state,
    parse_status,
    publish_line,
    table,
)
from pantau.registry_edit import add_gateway, remove_gateway

gateway_app = typer.Typer(
    help="Gateways and direct devices: add, list, show, revoke, rotate their secret.",
    no_args_is_help=True,
)
#: Where ``rotate --commit`` reads the secret ``rotate`` issued (else it prompts).
SECRET_ENV = "PANTAU_GATEWAY_SECRET"  # noqa: S105 - the variable's name

CityOpt = Annotated[
    Path, typer.Option("--city", envvar="PANTAU_CITY_FILE", help="the city registry file")
]
UrlOpt = Annotated[
    str, typer.Option("--url", envvar="PANTAU_BROKER_URL", help="the broker, mqtt://host:port")
]
DeviceArg = Annotated[str, typer.Argument(help="gateway or direct-device id")]


def _refuse(sentence: str) -> typer.Exit:
    typer.echo(sentence, err=True)
    return typer.Exit(2)


def _broker_failed(exc: BrokerControlError) -> typer.Exit:
    typer.echo(f"broker refused: {exc}", err=True)
    return typer.Exit(1)


def _registry(path: Path) -> Registry:
    try:
        return load_registry(path)
    except RegistryError as exc:
        raise _refuse(f"invalid: {exc}") from None


def _known(registry: Registry, device: str) -> None:
    if device not in registry.gateways:
        raise _refuse(f"{device} is not a gateway or direct device of {registry.source}.")


def _sensors(path: Path | None, *, gateway: str, site: str) -> list[dict[str, Any]]:
    """The sensor entries of a ``--sensors`` file (a YAML list of registry sensor entries);
    ``site`` and ``gateway`` are filled in."""
    if path is None:
        return []
    try:
        doc = read_yaml(path, ConfigFileError)
    except ConfigFileError as exc:
        raise _refuse(f"invalid: {exc}") from None
    if not isinstance(doc, list) or not all(isinstance(s, dict) for s in doc):
        raise _refuse(f"{path} must be a YAML list of sensor entries (id, kind, ...).")
    return [{"id": s.get("id"), **s, "site": site, "gateway": gateway} for s in doc]


@gateway_app.command("add")
def gateway_add(
    device: DeviceArg,
    city_file: CityOpt,
    site: Annotated[str, typer.Option("--site", help="the registry site it serves")],
    direct: Annotated[
        bool, typer.Option("--direct", help="a device that publishes single readings itself")
    ] = False,
    sensors_file: Annotated[
        Path | None,
        typer.Option("--sensors", help="YAML list of its sensors (site and gateway filled in)"),
    ] = None,
    url: UrlOpt = "mqtt://127.0.0.1:1883",
    device_url: Annotated[
        str | None,
        typer.Option("--device-url", help="the broker URL the device uses (default: --url)"),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="write the edge config here (mode 0600)")
    ] = None,
) -> None:
    """Register a gateway (or, with --direct, a direct device) at its site, with its sensors,
    give it a broker account with its own topics only, and print its edge config (a direct
    device: the mosquitto_pub line). The secret is shown this once."""
    if not is_valid_id(device) or device.startswith("pantau-"):
        raise _refuse(f"{device!r} is not a device id: use {ID_PATTERN}, not starting pantau-.")
    registry = _registry(city_file)
    if device in registry.gateways:
        raise _refuse(f"{device} is already registered in {city_file}.")
    if site not in registry.sites:
        raise _refuse(f"{city_file} has no site {site!r}; add the site to it first.")
    entry: dict[str, Any] = {"id": device, "site": site}
    if direct:
        entry["direct"] = True
    sensors = _sensors(sensors_file, gateway=device, site=site)
    if out is not None:
        # Before anything changes: a secret issued into a file that cannot be written is lost.
        try:
            _write_private(out, "")
        except OSError as exc:
            raise _refuse(f"cannot write {out}: {exc.strerror}.") from None
    try:
        change = add_gateway(city_file, entry, sensors)
    except RegistryError as exc:
        raise _refuse(f"refused, {city_file} left unchanged: {exc}") from None
    password = new_password()
    kind: DeviceKind = "direct" if direct else "gateway"
    try:
        with admin_control(url) as ctl:
            if ctl.get_client(device) is not None:
                raise _refuse(
                    f"{device} already has a broker account but no registry entry; "
                    f"remove it first with `pantau gateway revoke {device}`."
                )
            ctl.add_device(device, site, password, kind=kind)
            try:
                change.apply()
            except RegistryError:
                ctl.delete_device(device)  # nothing half-done: no account without its entry
                raise
    except BrokerControlError as exc:
        raise _broker_failed(exc) from None
    except RegistryError as exc:
        typer.echo(f"not added: {exc}", err=True)
        raise typer.Exit(1) from None
    public = device_url or url
    what = (
        publish_line(change.registry, device, mqtt_url=public, password=password)
        if direct
        else edge_config(change.registry, device, mqtt_url=public, password=password)
    )
    typer.echo(
        f"{device} added at {site} with {len(sensors)} sensors: {city_file} and the broker.",
        err=True,
    )
    if out is not None:
        _write_private(out, what if what.endswith("\n") else what + "\n")
        typer.echo(f"written to {out} (mode 0600)", err=True)
    else:
        typer.echo(what.rstrip("\n"))


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by its owner only, whatever mode it had."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)


def _accounts(url: str) -> tuple[dict[str, dict[str, Any]], dict[str, bytes]]:
    try:
        with admin_control(url) as ctl:
            accounts, statuses = ctl.accounts_and_statuses()
    except BrokerControlError as exc:
        raise _broker_failed(exc) from None
    return {str(a.get("username")): a for a in accounts}, statuses


def _account_words(account: dict[str, Any] | None) -> str:
    if account is None:
        return "missing"
    since = rotation.pending_since(account.get("textdescription"))
    return f"rotation pending since {since}" if since else "ok"


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


@gateway_app.command("list")
def gateway_list(city_file: CityOpt, url: UrlOpt = "mqtt://127.0.0.1:1883") -> None:
    """Every gateway and direct device of the registry: link state and last seen from its
    retained status, spool depth, sensors, and its broker account."""
    registry = _registry(city_file)
    accounts, statuses = _accounts(url)
    now = _now_ms()
    rows = [COLUMNS]
    for gw in sorted(registry.gateways.values(), key=lambda g: g.id):
        status = statuses.get(build(gw.site, gw.id, Channel.STATUS))
        account = _account_words(accounts.get(gw.id))
        state = gateway_state(registry, gw.id, status=status, account=account, now_ms=now)
        rows.append(state.row())
    typer.echo(table(rows))
    services = set(SERVICE_ACCOUNTS)
    strays = sorted(
        name
        for name in accounts
        if name not in registry.gateways and name not in services and not name.startswith("pantau-")
    )
    if strays:
        typer.echo(f"broker accounts not in the registry: {', '.join(strays)}")


@gateway_app.command("show")
def gateway_show(
    device: DeviceArg, city_file: CityOpt, url: UrlOpt = "mqtt://127.0.0.1:1883"
) -> None:
    """One gateway in detail: its site, account, link, last seen, spool, and each sensor with
    when the gateway last heard it."""
    registry = _registry(city_file)
    _known(registry, device)
    accounts, statuses = _accounts(url)
    gw = registry.gateways[device]
    raw = statuses.get(build(gw.site, device, Channel.STATUS))
    now = _now_ms()
    state = gateway_state(
        registry, device, status=raw, account=_account_words(accounts.get(device)), now_ms=now
    )
    site = registry.sites[gw.site]
    lines = [
        f"{device} ({state.kind}) at {site.id}: {site.name}",
        f"account:   {state.account}",
        f"link:      {state.link}",
        f"last seen: {state.last_seen}",
        f"spool:     {state.spool} readings waiting",
        f"sensors:   {state.sensors}",
    ]
    parsed = parse_status(raw)
    heard = parsed.sensors_last_seen if not isinstance(parsed, str | None) else {}
    silent = set(parsed.sensors_silent) if not isinstance(parsed, str | None) else set()
    for sensor in registry.sensors_of(gateway=device):
        when = heard.get(sensor.id)
        seen = "never heard" if when is None else f"heard {_ago(now, when)}"
        flag = ", SILENT" if sensor.id in silent else ""
        lines.append(f"  {sensor.id}  {sensor.kind.value}  {sensor.port}  {seen}{flag}")
    typer.echo("\n".join(lines))


def _ago(now_ms: int, then_ms: int) -> str:
    return age_words((now_ms - then_ms) / 1000)


@gateway_app.command("revoke")
def gateway_revoke(
    device: DeviceArg,
    city_file: CityOpt,
    remove_sensors: Annotated[
        bool, typer.Option("--remove-sensors", help="remove its sensors from the registry too")
    ] = False,
    url: UrlOpt = "mqtt://127.0.0.1:1883",
) -> None:
    """Cut the device off at once, refuse it from now on, clear its retained status (so
    dashboards and alerts see it gone) and remove it from the registry file."""
    registry = _registry(city_file)
    if device not in registry.gateways:
        _revoke_stray(device, city_file, url)
        return
    attached = registry.sensors_of(gateway=device)
    if attached and not remove_sensors:
        raise _refuse(
            f"{device} still has {len(attached)} sensors in {city_file}; "
            "pass --remove-sensors to remove them with it."
        )
    try:
        change = remove_gateway(city_file, device, remove_sensors=remove_sensors)
    except RegistryError as exc:
        raise _refuse(f"refused, {city_file} left unchanged: {exc}") from None
    try:
        with admin_control(url) as ctl:
            ctl.delete_device(device)
            ctl.clear_retained(build(registry.gateways[device].site, device, Channel.STATUS))
    except BrokerControlError as exc:
        raise _broker_failed(exc) from None
    try:
        change.apply()
    except RegistryError as exc:
        typer.echo(f"revoked on the broker, but the registry was not changed: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(
        f"{device} revoked: cut off, refused from now on, status cleared; "
        f"removed from {city_file} with {len(attached)} sensors."
    )


def _revoke_stray(device: str, city_file: Path, url: str) -> None:
    """Revoke an account the registry does not know (left by a failed or manual add): its
    status topic is found among the retained ones, whatever site it names."""
    try:
        with admin_control(url) as ctl:
            if ctl.get_client(device) is None or device in SERVICE_ACCOUNTS:
                raise _refuse(f"{device} is neither in {city_file} nor a device's broker account.")
            ctl.delete_device(device)
            _accounts, statuses = ctl.accounts_and_statuses()
            for topic in statuses:
                if _gateway_of(topic) == device:
                    ctl.clear_retained(topic)
    except BrokerControlError as exc:
        raise _broker_failed(exc) from None
    typer.echo(
        f"{device} revoked: cut off, refused from now on, status cleared (not in {city_file})."
    )


def _gateway_of(topic: str) -> str | None:
    try:
        return topics.parse(topic).gateway
    except TopicError:
        return None


@gateway_app.command("rotate")
def gateway_rotate(
    device: DeviceArg,
    city_file: CityOpt,
    commit: Annotated[
        bool, typer.Option("--commit", help="step 2: switch the broker to the issued secret")
    ] = False,
    url: UrlOpt = "mqtt://127.0.0.1:1883",
) -> None:
    """Rotate a device's secret with no outage, in two steps. ``rotate`` issues a new secret
    (the broker still takes only the old one): install it on the gateway as
    PANTAU_MQTT_PASSWORD_NEXT. ``rotate --commit`` (the secret from PANTAU_GATEWAY_SECRET or a
    prompt) switches the broker: the gateway's old session ends, and its agent reconnects at
    once with the next secret. Readings meanwhile wait in its spool."""
    registry = _registry(city_file)
    _known(registry, device)
    secret = ""
    if commit:
        secret = os.environ.get(SECRET_ENV) or typer.prompt(
            f"the secret `rotate {device}` issued", hide_input=True
        )
    try:
        with admin_control(url) as ctl:
            account = ctl.get_client(device)
            if account is None:
                raise _refuse(f"{device} has no broker account; `pantau gateway add` it first.")
            pending = account.get("textdescription")
            if commit:
                _commit(device, pending, secret)
                ctl.set_password(device, secret)
                ctl.set_description(device, "")
            else:
                secret = new_password()
                ctl.set_description(device, rotation.pending_marker(secret))
    except BrokerControlError as exc:
        raise _broker_failed(exc) from None
    if commit:
        typer.echo(
            f"{device}: the broker now takes only the new secret. Its agent reconnects with "
            "PANTAU_MQTT_PASSWORD_NEXT; make that its PANTAU_MQTT_PASSWORD at the next visit."
        )
        return
    if (since := rotation.pending_since(pending)) is not None:
        typer.echo(f"(this replaces the rotation issued at {since})", err=True)
    typer.echo(
        f"New secret for {device}, shown once. The old one keeps working until "
        f"`pantau gateway rotate {device} --commit`. On the gateway, add to "
        "/etc/pantau/edge.env and restart the agent (its spool keeps every reading):",
        err=True,
    )
    typer.echo(f"PANTAU_MQTT_PASSWORD_NEXT={secret}")


def _commit(device: str, pending: str | None, secret: str) -> None:
    """Refuse a commit with nothing pending, or with a secret other than the one issued."""
    since = rotation.pending_since(pending)
    if since is None:
        raise _refuse(f"{device} has no rotation pending; run `pantau gateway rotate {device}`.")
    if not rotation.matches(pending, secret):
        raise _refuse(f"that is not the secret issued for {device} at {since}; nothing changed.")

"""``pantau migrate-broker``: the previous release's broker accounts into this release's
dynamic security file, keeping every password.

The release before (git 5ecc6cb) kept accounts in a ``mosquitto_passwd`` file
(``user:$7$<iterations>$<salt>$<hash>``, PBKDF2-SHA512) and rights in ``mosquitto/acl``. The
dynamic security plugin checks the very same PBKDF2-SHA512 (salt, hash, iterations), so each
hash is carried over as it is: no gateway needs a new secret. Rights are not carried over;
they are rebuilt from the registry and the service roles (pantau.broker_identity), as
``pantau broker init`` builds them. Accounts the passwd file lacks (service accounts that
did not exist then) get a fresh password, printed once; names in the passwd file that are
neither a service nor a registry device are left out and listed.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from city import DEMO_CITY, Registry, load_registry
from contract.errors import ConfigError, PantauError
from pantau.broker_identity import (
    SALT_BYTES,
    SERVICE_ACCOUNTS,
    Account,
    device_account,
    device_role,
    identity_document,
    ingest_member,
    write_document,
)

#: What mosquitto_passwd (2.0) writes: SHA-512 PBKDF2.
PBKDF2_SHA512 = "7"
HASH_BYTES = 64


class PasswdError(PantauError):
    """A password file that cannot be carried over."""


@dataclass(frozen=True, slots=True)
class PasswdHash:
    """One account of a mosquitto password file."""

    username: str
    iterations: int
    salt: bytes
    digest: bytes

    def client_fields(self) -> dict[str, Any]:
        """The plugin's ``password``/``salt``/``iterations`` for this hash."""
        return {
            "password": base64.b64encode(self.digest).decode(),
            "salt": base64.b64encode(self.salt).decode(),
            "iterations": self.iterations,
        }


def read_passwd(path: Path) -> tuple[dict[str, PasswdHash], list[str]]:
    """(username -> hash) of every PBKDF2-SHA512 line, and the names whose hash is of another
    kind (older mosquitto_passwd's salted SHA-512): those need a new password."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PasswdError(f"{path}: cannot read: {exc.strerror}") from None
    found: dict[str, PasswdHash] = {}
    other: list[str] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        username, sep, encoded = line.partition(":")
        if not sep:
            raise PasswdError(f"{path} line {number}: not 'user:hash'")
        fields = encoded.split("$")
        if len(fields) != 5 or fields[1] != PBKDF2_SHA512:
            other.append(username)
            continue
        try:
            entry = PasswdHash(
                username=username,
                iterations=int(fields[2]),
                salt=base64.b64decode(fields[3], validate=True),
                digest=base64.b64decode(fields[4], validate=True),
            )
        except (ValueError, binascii.Error):
            raise PasswdError(f"{path} line {number}: {username}: unreadable hash") from None
        if len(entry.salt) != SALT_BYTES or len(entry.digest) != HASH_BYTES:
            other.append(username)  # the plugin takes exactly these lengths
            continue
        found[username] = entry
    return found, other


@dataclass(slots=True)
class Carried:
    """What :func:`identity_from_passwd` made of a password file."""

    document: dict[str, Any]
    kept: list[str]
    #: (account, new password): accounts the file did not have
    fresh: list[tuple[Account, str]]
    #: names in the file that are not accounts of this registry
    left_out: list[str]


def identity_from_passwd(
    hashes: dict[str, PasswdHash], registry: Registry, *, ingest_members: int = 1
) -> Carried:
    """The identity document for ``registry``'s devices and the service accounts, with the
    hashes of ``hashes`` where it has the name, and fresh passwords elsewhere."""
    accounts = [
        *SERVICE_ACCOUNTS.values(),
        *(ingest_member(n) for n in range(2, ingest_members + 1)),
    ]
    roles = []
    for gw in registry.gateways.values():
        accounts.append(device_account(gw.id))
        roles.append(device_role(gw.id, gw.site, kind="direct" if gw.direct else "gateway"))
    fresh = [(a, secrets.token_urlsafe(18)) for a in accounts if a.username not in hashes]
    document = identity_document(fresh, roles)
    kept = [a for a in accounts if a.username in hashes]
    document["clients"] += [
        {
            "username": a.username,
            "clientid": a.client_id,
            "roles": [{"rolename": r, "priority": 0} for r in a.roles],
            **hashes[a.username].client_fields(),
        }
        for a in kept
    ]
    names = {a.username for a in accounts}
    return Carried(
        document=document,
        kept=[a.username for a in kept],
        fresh=fresh,
        left_out=sorted(set(hashes) - names),
    )


def migrate_broker(
    passwd_file: Annotated[Path, typer.Argument(help="The old release's mosquitto passwd file.")],
    identity_file: Annotated[Path, typer.Argument(help="dynamic-security.json to create.")],
    city: Annotated[Path, typer.Option(help="The registry (city file).")] = DEMO_CITY,
    ingest_members: Annotated[int, typer.Option(min=1, help="ingester accounts")] = 1,
    force: Annotated[bool, typer.Option(help="Replace an existing identity file.")] = False,
) -> None:
    """Create the broker's identity file from the previous release's password file: every
    device and service keeps its password; rights come from the registry. Prints the new
    accounts' passwords once (``user client-id password``)."""
    if identity_file.exists() and not force:
        typer.echo(f"{identity_file} exists (the broker's live state); use --force to replace it")
        raise typer.Exit(2)
    try:
        registry = load_registry(city)
        hashes, other = read_passwd(passwd_file)
    except (ConfigError, PasswdError) as exc:
        typer.echo(f"pantau migrate-broker: {exc}", err=True)
        raise typer.Exit(2) from None
    carried = identity_from_passwd(hashes, registry, ingest_members=ingest_members)
    write_document(identity_file, carried.document)
    typer.echo(f"kept the password of {len(carried.kept)} account(s): {', '.join(carried.kept)}")
    for account, password in carried.fresh:
        typer.echo(f"{account.username} {account.client_id} {password}")
    renewed = {a.username for a, _ in carried.fresh}
    left_out = sorted({*carried.left_out, *(n for n in other if n not in renewed)})
    if left_out:
        typer.echo(f"not in the registry, left out: {', '.join(left_out)}", err=True)
    if any(n in renewed for n in other):
        names = ", ".join(n for n in other if n in renewed)
        typer.echo(f"not a PBKDF2-SHA512 hash, given a new password above: {names}", err=True)

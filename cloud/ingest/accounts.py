"""InfluxDB's least-privilege accounts, made by ``pantau ingest init-db`` (docs/adr/0020).

With authentication on, three accounts and no others touch the database:

- ``pantau-admin`` (admin): only ``init-db`` uses it. On a server with no account yet it is
  created first: InfluxDB 1.x accepts exactly that one statement unauthenticated until an
  admin exists, which is how the first account of a fresh volume is made without the image's
  init script (that one passes the password on the ``influx`` command line).
- ``pantau-writer``: ALL (READ and WRITE) on the database and nothing else: the ingester writes,
  and reads back its own points to bootstrap state and check the schema at start. It cannot
  create or drop databases, retention policies, continuous queries, measurements or users.
- ``pantau-reader``: READ on the database: the API and Grafana.

Running ``init-db`` again is safe and is how a password is rotated: existing accounts get
their password set to the one given and exactly the privilege above (a ``GRANT`` in InfluxDB
1.x replaces the account's privilege on the database).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Self

from pydantic import SecretStr, model_validator

from cloud.influx import InfluxHTTP, QueryError, ident, literal
from cloud.ingest.migrations import migrate_influx
from cloud.ingest.schema import apply_schema, create_database
from cloud.ingest.settings import IngestSettings
from contract import StorageError
from contract.secrets import require_secret

ADMIN_USER = "pantau-admin"
WRITER_USER = "pantau-writer"
READER_USER = "pantau-reader"
#: Stands for a password in the statements ``init-db`` prints.
REDACTED = "'***'"


class Privilege(StrEnum):
    """What an account may do on the database (InfluxQL's GRANT words)."""

    READ = "READ"
    ALL = "ALL"


@dataclass(frozen=True, slots=True, kw_only=True)
class Account:
    """One non-admin InfluxDB account and the privilege it gets on the database."""

    name: str
    password: SecretStr = field(repr=False)
    privilege: Privilege


class InitDbSettings(IngestSettings):
    """``pantau ingest init-db``: the ingester's settings (its InfluxDB account must be the
    admin) plus the accounts to create. A password left unset skips that account."""

    influx_writer_username: str = WRITER_USER
    influx_writer_password: SecretStr | None = None
    influx_reader_username: str = READER_USER
    influx_reader_password: SecretStr | None = None

    @model_validator(mode="after")
    def _refuse_unsafe(self) -> Self:
        """Replaces the ingester's check (same name): init-db speaks only to InfluxDB, so it
        needs no MQTT password; in production its admin and the new accounts' passwords
        follow the one secret policy."""
        if self.mode == "production":
            if self.influx_token is None:
                require_secret(
                    self.influx_password,
                    setting="PANTAU_INFLUX_PASSWORD",
                    identities=(self.influx_username,),
                )
            for user, password, setting in (
                (self.influx_writer_username, self.influx_writer_password, "WRITER"),
                (self.influx_reader_username, self.influx_reader_password, "READER"),
            ):
                require_secret(
                    password, setting=f"PANTAU_INFLUX_{setting}_PASSWORD", identities=(user,)
                )
        return self

    @property
    def accounts(self) -> tuple[Account, ...]:
        """The writer and reader accounts whose password is set."""
        wanted = (
            (self.influx_writer_username, self.influx_writer_password, Privilege.ALL),
            (self.influx_reader_username, self.influx_reader_password, Privilege.READ),
        )
        return tuple(
            Account(name=name, password=password, privilege=privilege)
            for name, password, privilege in wanted
            if password is not None
        )


def _run(influx: InfluxHTTP, statement: str, shown: str) -> None:
    """Run a statement that holds a password; a failure names ``shown`` (the statement with
    the password replaced), never the statement itself."""
    try:
        influx.execute([statement])
    except QueryError as exc:
        raise StorageError(
            f"{shown}: InfluxDB status {exc.status}", status=exc.status, retryable=exc.retryable
        ) from None


def ensure_admin(influx: InfluxHTTP, *, name: str, password: SecretStr) -> str:
    """Make sure the admin account ``name`` exists with ``password``; ``influx`` must carry
    those credentials. On a server with no account yet this creates it; when it exists with
    that password, InfluxDB accepts the statement and changes nothing. Returns the statement
    as printable (password redacted)."""
    head = f"CREATE USER {ident(name)} WITH PASSWORD "
    tail = " WITH ALL PRIVILEGES"
    shown = head + REDACTED + tail
    _run(influx, head + literal(password.get_secret_value()) + tail, shown)
    return shown


def ensure_accounts(
    influx: InfluxHTTP, *, database: str, accounts: tuple[Account, ...]
) -> list[str]:
    """Create each account, or set its password if it exists; take admin away from it if it
    had it; give it exactly its privilege on ``database``. ``influx`` must be the admin.
    Returns the statements run, passwords redacted."""
    existing = {
        str(row["user"]): bool(row["admin"]) for s in influx.query("SHOW USERS") for row in s.rows()
    }
    ran: list[str] = []
    for account in accounts:
        user = ident(account.name)
        secret = literal(account.password.get_secret_value())
        if account.name in existing:
            head = f"SET PASSWORD FOR {user} = "
            _run(influx, head + secret, head + REDACTED)
            ran.append(head + REDACTED)
            if existing[account.name]:
                revoke = f"REVOKE ALL PRIVILEGES FROM {user}"
                influx.execute([revoke])
                ran.append(revoke)
        else:
            head = f"CREATE USER {user} WITH PASSWORD "
            _run(influx, head + secret, head + REDACTED)
            ran.append(head + REDACTED)
        grant = f"GRANT {account.privilege.value} ON {ident(database)} TO {user}"
        influx.execute([grant])
        ran.append(grant)
    return ran


def init_database(settings: InitDbSettings) -> tuple[list[str], str]:
    """What ``pantau ingest init-db`` does: with accounts to make, first the admin (the
    process's own InfluxDB account), then the database, its retention policies and continuous
    queries and its migrations, then the accounts. Returns the statements run (passwords
    redacted) and what the migrations did, in words. Raises
    :class:`StorageError` (InfluxDB unreachable or refusing)."""
    accounts = settings.accounts
    influx = InfluxHTTP(
        url=settings.influx_url,
        database=settings.influx_db,
        username=settings.influx_username,
        password=settings.influx_password,
        token=settings.influx_token,
    )
    ran: list[str] = []
    with influx:
        if accounts:
            if not settings.influx_username or settings.influx_password is None:
                raise StorageError(
                    "creating accounts needs the admin's PANTAU_INFLUX_USERNAME and"
                    " PANTAU_INFLUX_PASSWORD",
                    retryable=False,
                )
            password = settings.influx_password
            ran.append(ensure_admin(influx, name=settings.influx_username, password=password))
        # Not listed: init-db has always reported only the schema and account statements.
        create_database(influx, settings.influx_db)
        ran += apply_schema(influx, settings.storage_schema)
        migrated = migrate_influx(influx).describe()
        ran += ensure_accounts(influx, database=settings.influx_db, accounts=accounts)
    return ran, migrated

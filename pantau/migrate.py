"""``pantau migrate``: bring the ingester's stores to this release's versions, by hand.

The ingester runs the same migrations at every start (cloud/ingest/migrations); this command
is for an upgrade done step by step (docs/operations.md, "Upgrading"): stop the ingester,
back up, migrate, start the new release. ``--check`` only says where each store is.
"""

from __future__ import annotations

from typing import Annotated

import typer

from cloud.ingest.bootstrap import influx_of
from cloud.ingest.migrations import (
    DEAD_LETTER_VERSION,
    INFLUX_VERSION,
    MigrationError,
    dead_letter_version,
    influx_version,
    migrate_dead_letters,
    migrate_influx,
)
from cloud.ingest.settings import IngestSettings
from contract.errors import StorageError
from contract.secrets import settings_or_config_error


def migrate(
    check: Annotated[
        bool, typer.Option("--check", help="Only print each store's version; exit 1 if behind.")
    ] = False,
) -> None:
    """Apply the versioned migrations to the dead-letter store (PANTAU_DEAD_LETTER_DIR) and
    the InfluxDB database (PANTAU_INFLUX_*) the ingester's settings name. Idempotent."""
    settings = settings_or_config_error(IngestSettings, what="ingest settings")
    directory = settings.dead_letter_dir
    try:
        with influx_of(settings) as influx:
            if check:
                dead = dead_letter_version(directory) or DEAD_LETTER_VERSION
                influx.ensure_database()
                stored = influx_version(influx)
                typer.echo(
                    f"dead-letter store: version {dead} (this release: {DEAD_LETTER_VERSION})"
                )
                typer.echo(f"InfluxDB: version {stored} (this release: {INFLUX_VERSION})")
                behind = dead < DEAD_LETTER_VERSION or stored < INFLUX_VERSION
                raise typer.Exit(1 if behind else 0)
            typer.echo(migrate_dead_letters(directory, settings.dead_letter_max_bytes).describe())
            influx.ensure_database()
            typer.echo(migrate_influx(influx).describe())
    except MigrationError as exc:
        typer.echo(f"pantau migrate: {exc}", err=True)
        raise typer.Exit(2) from None
    except StorageError as exc:
        typer.echo(f"pantau migrate: InfluxDB: {exc}", err=True)
        raise typer.Exit(1) from None

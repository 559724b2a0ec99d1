"""``pantau backup ARCHIVE``: the platform's whole state in one ``tar.gz`` with a manifest.

Parts (docs/operations.md, "Backup and restore"): the InfluxDB database, the registry (city
file and drop-ins), the broker's identities and its persistence file (sessions, queued
messages, retained statuses), and the ingester's dead-letter store with its crash-loop guard.
Taken while the services run; see :mod:`pantau.backup_parts` for how each stays consistent.
"""

from __future__ import annotations

import logging
import os
import tarfile
import tempfile
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Annotated

import typer

from contract.secrets import settings_or_config_error
from pantau.backup_manifest import (
    FORMAT_VERSION,
    MANIFEST_NAME,
    PARTS,
    BackupError,
    Manifest,
    Part,
    PartName,
    entries_under,
)
from pantau.backup_parts import copy_file, copy_store, dump_influx, save_broker
from pantau.backup_settings import BackupSettings

log = logging.getLogger(__name__)

#: Archive folder of each part.
FOLDERS: dict[PartName, str] = {
    "influxdb": "influxdb",
    "registry": "registry",
    "broker": "broker",
    "dead_letters": "dead-letters",
}
IDENTITY_NAME = "dynamic-security.json"
PERSISTENCE_NAME = "mosquitto.db"
CITY_NAME = "city.yaml"
DROPINS = "dropins"


def pantau_version() -> str:
    """The installed package's version."""
    try:
        return version("pantau")
    except PackageNotFoundError:
        return "unknown"


def _take(name: PartName, stage: Path, settings: BackupSettings, broker_pid: int | None) -> Part:
    folder = stage / FOLDERS[name]
    folder.mkdir()
    note = ""
    if name == "influxdb":
        dump_influx(rpc=settings.influx_rpc, database=settings.influx_db, dest=folder)
        source = f"{settings.influx_rpc} database {settings.influx_db}"
    elif name == "registry":
        copy_file(settings.city_file, folder / CITY_NAME)
        source = str(settings.city_file)
        if settings.city_dropin_dir is not None and settings.city_dropin_dir.is_dir():
            copy_store(settings.city_dropin_dir, folder / DROPINS)
            source += f" + {settings.city_dropin_dir}"
    elif name == "broker":
        if broker_pid is not None:
            save_broker(
                pid=broker_pid,
                persistence_file=settings.broker_persistence_file,
                timeout_s=settings.broker_save_timeout_s,
            )
            note = f"persistence written on SIGUSR1 to pid {broker_pid} just before the copy"
        else:
            note = "persistence file as last written by the broker (autosave or shutdown)"
        copy_file(settings.broker_identity_file, folder / IDENTITY_NAME)
        if settings.broker_persistence_file.exists():
            copy_file(settings.broker_persistence_file, folder / PERSISTENCE_NAME)
        else:
            note = "no persistence file: the broker has not written one yet"
        source = f"{settings.broker_identity_file} + {settings.broker_persistence_file}"
    else:
        if not settings.dead_letter_dir.is_dir():
            raise BackupError(f"no dead-letter store at {settings.dead_letter_dir}")
        copy_store(settings.dead_letter_dir, folder)
        source = str(settings.dead_letter_dir)
    return Part(name=name, source=source, files=entries_under(stage, folder), note=note)


def make_backup(
    archive: Path,
    settings: BackupSettings,
    *,
    broker_pid: int | None = None,
    skip: frozenset[PartName] = frozenset(),
) -> Manifest:
    """Write the archive (through a temporary name, so a failed backup leaves no archive that
    looks whole) and return its manifest."""
    archive = archive.resolve()
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".pantau-backup-", dir=archive.parent) as tmp:
        stage = Path(tmp) / "stage"
        stage.mkdir()
        parts = [_take(name, stage, settings, broker_pid) for name in PARTS if name not in skip]
        manifest = Manifest(
            format_version=FORMAT_VERSION,
            created_at=datetime.now(UTC),
            pantau_version=pantau_version(),
            influx_db=settings.influx_db,
            parts=parts,
        )
        (stage / MANIFEST_NAME).write_text(manifest.model_dump_json(indent=2), encoding="utf-8")
        partial = Path(tmp) / archive.name
        with tarfile.open(partial, "w:gz") as tar:
            # The manifest first: restore reads it before anything else.
            tar.add(stage / MANIFEST_NAME, arcname=MANIFEST_NAME)
            for part in parts:
                for entry in part.files:
                    tar.add(stage / entry.path, arcname=entry.path)
        with partial.open("rb") as fh:
            os.fsync(fh.fileno())
        partial.replace(archive)
    return manifest


def parse_skip(values: list[str]) -> frozenset[PartName]:
    out: set[PartName] = set()
    for value in values:
        match = next((p for p in PARTS if p == value), None)
        if match is None:
            raise BackupError(f"--skip {value!r}: not a part (parts: {', '.join(PARTS)})")
        out.add(match)
    return frozenset(out)


def backup(
    archive: Annotated[Path, typer.Argument(help="The archive to write (.tar.gz).")],
    broker_pid: Annotated[
        int | None,
        typer.Option(
            help="Mosquitto's pid: SIGUSR1 makes it write sessions and retained messages now."
        ),
    ] = None,
    skip: Annotated[
        list[str] | None, typer.Option(help="Leave a part out (influxdb, registry, ...).")
    ] = None,
) -> None:
    """Back up InfluxDB, the registry, the broker's identities and persistence, and the
    dead-letter store into ARCHIVE, with a manifest of every file's SHA-256. Where each part
    is comes from PANTAU_* settings (docs/operations.md, "Backup and restore")."""
    settings = settings_or_config_error(BackupSettings, what="backup settings")
    try:
        manifest = make_backup(
            archive, settings, broker_pid=broker_pid, skip=parse_skip(skip or [])
        )
    except BackupError as exc:
        typer.echo(f"pantau backup: {exc}", err=True)
        raise typer.Exit(1) from None
    except OSError as exc:
        typer.echo(f"pantau backup: {exc.filename or ''}: {exc.strerror}", err=True)
        raise typer.Exit(1) from None
    for part in manifest.parts:
        typer.echo(f"{part.name}: {len(part.files)} file(s), {part.size} bytes from {part.source}")
        if part.note:
            typer.echo(f"  {part.note}")
    typer.echo(f"wrote {archive} ({archive.stat().st_size} bytes)")

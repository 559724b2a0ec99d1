"""``pantau restore ARCHIVE``: put a ``pantau backup`` archive back, after proving it whole.

Order: read the manifest (a newer format is refused), extract to a temporary folder, check
every file's size and SHA-256 against it, check the targets; only then InfluxDB (which refuses
a database that exists), then the files. Existing files are never overwritten silently:
without ``--replace`` an occupied target is an error before anything is touched; with it, the
old file or folder is moved aside to ``<name>.before-restore-<time>``.

The broker and the ingester must be stopped while their files are restored (Mosquitto writes
its persistence file when it exits, and would overwrite the restored one); InfluxDB must run.
"""

from __future__ import annotations

import logging
import tarfile
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from cloud.ingest.migrations import DEAD_LETTER_VERSION, dead_letter_version
from contract.secrets import settings_or_config_error
from pantau.backup import (
    CITY_NAME,
    DROPINS,
    FOLDERS,
    IDENTITY_NAME,
    PERSISTENCE_NAME,
    parse_skip,
)
from pantau.backup_manifest import (
    MANIFEST_NAME,
    BackupError,
    Manifest,
    PartName,
    parse_manifest,
    verify,
)
from pantau.backup_parts import occupied, put_in_place, restore_influx
from pantau.backup_settings import BackupSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Placement:
    """One file or folder of the archive and where it goes."""

    part: PartName
    src: Path
    dest: Path
    what: str


def _read(archive: Path, into: Path) -> Manifest:
    try:
        with tarfile.open(archive, "r:*") as tar:
            first = tar.next()
            if first is None or first.name != MANIFEST_NAME:
                raise BackupError(f"{archive}: no {MANIFEST_NAME} first: not a Pantau backup")
            handle = tar.extractfile(first)
            if handle is None:
                raise BackupError(f"{archive}: {MANIFEST_NAME} is not a file")
            manifest = parse_manifest(handle.read().decode("utf-8"))
            # "data": no absolute paths, no '..', no links out of the folder, no devices.
            tar.extractall(into, filter="data")
    except (tarfile.TarError, EOFError, UnicodeDecodeError) as exc:
        raise BackupError(f"{archive}: not a readable archive ({exc})") from None
    return manifest


def _placements(
    manifest: Manifest, root: Path, settings: BackupSettings, skip: frozenset[PartName]
) -> list[Placement]:
    out: list[Placement] = []
    for part in manifest.parts:
        if part.name in skip or part.name == "influxdb":
            continue
        folder = root / FOLDERS[part.name]
        if part.name == "registry":
            out.append(Placement(part.name, folder / CITY_NAME, settings.city_file, "city file"))
            if (folder / DROPINS).is_dir():
                if settings.city_dropin_dir is None:
                    raise BackupError(
                        "the archive has registry drop-ins: set PANTAU_CITY_DROPIN_DIR"
                    )
                out.append(
                    Placement(part.name, folder / DROPINS, settings.city_dropin_dir, "drop-ins")
                )
        elif part.name == "broker":
            out.append(
                Placement(
                    part.name, folder / IDENTITY_NAME, settings.broker_identity_file, "identities"
                )
            )
            if (folder / PERSISTENCE_NAME).is_file():
                out.append(
                    Placement(
                        part.name,
                        folder / PERSISTENCE_NAME,
                        settings.broker_persistence_file,
                        "sessions and retained messages",
                    )
                )
        else:
            out.append(Placement(part.name, folder, settings.dead_letter_dir, "dead letters"))
    return out


def restore_archive(
    archive: Path,
    settings: BackupSettings,
    *,
    replace: bool = False,
    skip: frozenset[PartName] = frozenset(),
    influx_newdb: str | None = None,
) -> list[str]:
    """Restore ``archive``; returns one line per thing restored. Raises :class:`BackupError`
    before touching anything if the archive is not whole or a target is occupied."""
    with tempfile.TemporaryDirectory(prefix="pantau-restore-") as tmp:
        root = Path(tmp)
        manifest = _read(archive, root)
        problems = verify(root, manifest)
        if problems:
            shown = "; ".join(problems[:5]) + (" ..." if len(problems) > 5 else "")
            raise BackupError(f"{archive} is damaged, nothing restored: {shown}")
        placements = _placements(manifest, root, settings, skip)
        taken = [p for p in placements if occupied(p.dest)]
        if taken and not replace:
            where = ", ".join(str(p.dest) for p in taken)
            raise BackupError(
                f"nothing restored: {where} already exist(s); stop the services and use "
                "--replace to move them aside"
            )
        done: list[str] = []
        influx = manifest.part("influxdb")
        if influx is not None and "influxdb" not in skip:
            db = influx_newdb or manifest.influx_db
            restore_influx(
                rpc=settings.influx_rpc,
                database=manifest.influx_db,
                src=root / FOLDERS["influxdb"],
                into=db,
            )
            done.append(f"InfluxDB: database {db} restored into {settings.influx_rpc}")
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        for place in placements:
            if occupied(place.dest):
                aside = place.dest.with_name(f"{place.dest.name}.before-restore-{stamp}")
                place.dest.replace(aside)
                done.append(f"{place.part}: moved the existing {place.dest} to {aside}")
            put_in_place(place.src, place.dest)
            done.append(f"{place.part}: {place.what} -> {place.dest}")
            if place.part == "dead_letters":
                found = dead_letter_version(place.dest)
                if found is not None and found < DEAD_LETTER_VERSION:
                    done.append(
                        f"dead_letters: store version {found}, older than this release's "
                        f"{DEAD_LETTER_VERSION}: the ingester (or pantau migrate) migrates it"
                    )
    created = manifest.created_at.strftime("%Y-%m-%d %H:%M:%S UTC")
    done.append(f"restored the backup of {created} (pantau {manifest.pantau_version})")
    return done


def restore(
    archive: Annotated[Path, typer.Argument(help="An archive written by pantau backup.")],
    replace: Annotated[
        bool, typer.Option(help="Move existing targets aside instead of refusing.")
    ] = False,
    skip: Annotated[
        list[str] | None, typer.Option(help="Leave a part out (influxdb, registry, ...).")
    ] = None,
    influx_newdb: Annotated[
        str | None, typer.Option(help="Restore the database under this name instead.")
    ] = None,
) -> None:
    """Restore ARCHIVE: checksums first, then InfluxDB (into the running server at
    PANTAU_INFLUX_RPC; the database must not exist), then the registry, the broker's files and
    the dead-letter store to the PANTAU_* paths. Stop the broker and the ingester first."""
    settings = settings_or_config_error(BackupSettings, what="backup settings")
    try:
        lines = restore_archive(
            archive,
            settings,
            replace=replace,
            skip=parse_skip(skip or []),
            influx_newdb=influx_newdb,
        )
    except BackupError as exc:
        typer.echo(f"pantau restore: {exc}", err=True)
        raise typer.Exit(1) from None
    except OSError as exc:
        typer.echo(f"pantau restore: {exc.filename or ''}: {exc.strerror}", err=True)
        raise typer.Exit(1) from None
    for line in lines:
        typer.echo(line)

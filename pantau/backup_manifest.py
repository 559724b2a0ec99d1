"""The manifest of a ``pantau backup`` archive: what is in it, where it came from, and the
checksum of every file, so ``pantau restore`` can prove the archive whole before it touches
anything."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from contract.errors import PantauError

#: Bumped when the archive's layout changes; restore refuses a newer one.
FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"

PartName = Literal["influxdb", "registry", "broker", "dead_letters"]
#: Every part, in the order a backup takes and a restore puts them back.
PARTS: tuple[PartName, ...] = ("influxdb", "registry", "broker", "dead_letters")


class BackupError(PantauError):
    """A backup could not be made, or an archive cannot be restored."""


class FileEntry(BaseModel):
    """One file of the archive: its path inside it (``part/...``), size and SHA-256."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    path: str
    size: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class Part(BaseModel):
    """One part of the platform's state."""

    model_config = ConfigDict(extra="forbid")

    name: PartName
    #: where it was taken from (a path, or host:port for InfluxDB)
    source: str
    files: list[FileEntry] = Field(default_factory=list)
    #: how it was taken, in words (e.g. whether the broker saved its state first)
    note: str = ""

    @property
    def size(self) -> int:
        """Bytes of the part's files."""
        return sum(f.size for f in self.files)


class Manifest(BaseModel):
    """``manifest.json``, the archive's first member."""

    model_config = ConfigDict(extra="forbid")

    format_version: int = Field(ge=1)
    created_at: datetime
    pantau_version: str
    #: the InfluxDB database the influxdb part holds
    influx_db: str
    parts: list[Part]

    def part(self, name: PartName) -> Part | None:
        """The part called ``name``, if the archive has it."""
        return next((p for p in self.parts if p.name == name), None)


def sha256_of(path: Path) -> str:
    """SHA-256 of a file, read in 1 MiB pieces (an InfluxDB shard can be gigabytes)."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1024 * 1024):
            h.update(chunk)
    return h.hexdigest()


def entries_under(root: Path, folder: Path) -> list[FileEntry]:
    """A :class:`FileEntry` for every file under ``folder``, paths relative to ``root``."""
    return [
        FileEntry(path=p.relative_to(root).as_posix(), size=p.stat().st_size, sha256=sha256_of(p))
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    ]


def parse_manifest(text: str) -> Manifest:
    """The manifest in ``text``. A newer format is refused before anything else is read:
    its fields may mean things this release does not know."""
    try:
        raw = json.loads(text)
        version = int(raw["format_version"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError):
        raise BackupError(f"{MANIFEST_NAME} is not a Pantau backup manifest") from None
    if version > FORMAT_VERSION:
        raise BackupError(
            f"this archive has backup format {version}, newer than this pantau reads "
            f"({FORMAT_VERSION}): restore it with the release that made it or a newer one"
        )
    try:
        return Manifest.model_validate(raw)
    except ValidationError as exc:
        where = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise BackupError(f"{MANIFEST_NAME} is not valid: {where}") from None


def verify(root: Path, manifest: Manifest) -> list[str]:
    """Problems of the files extracted into ``root`` against ``manifest``: missing, changed
    (size or SHA-256), or not listed. Empty when the archive is whole."""
    listed = {f.path: f for p in manifest.parts for f in p.files}
    present = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
    present.discard(MANIFEST_NAME)
    problems = [f"{name}: not listed in the manifest" for name in sorted(present - set(listed))]
    for name, entry in sorted(listed.items()):
        path = root / name
        if name not in present:
            problems.append(f"{name}: missing")
        elif path.stat().st_size != entry.size:
            problems.append(f"{name}: {path.stat().st_size} bytes, the manifest says {entry.size}")
        elif sha256_of(path) != entry.sha256:
            problems.append(f"{name}: SHA-256 differs from the manifest")
    return problems

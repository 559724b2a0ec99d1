"""Migrations of the dead-letter store (``PANTAU_DEAD_LETTER_DIR``).

Versions:

1. the layout of the release before (git ``5ecc6cb``): one JSON-lines file per UTC day,
   ``dead-letter-YYYY-MM-DD.jsonl``, one line per refused message or reading, each line with
   its own base64 payload, no index;
2. segments plus ``index.sqlite`` (:mod:`cloud.ingest.deadletter`): each payload stored once,
   bounded, counted rotation.

The version is the integer in ``STORE_VERSION`` in the directory. A store without that file is
version 1 if it holds day files, else version 2 (the layout that came before the marker).
"""

from __future__ import annotations

import base64
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson

from cloud.ingest.deadletter import DEFAULT_MAX_BYTES, DeadLetterStore, Problem, Refusal
from cloud.ingest.migrations.base import Applied, MigrationError, Step, run_steps
from contract.errors import RejectReason

log = logging.getLogger(__name__)

VERSION_FILE = "STORE_VERSION"
#: Day files of version 1.
V1_PREFIX = "dead-letter-"
#: Where step 2 moves the day files it has converted: kept for the operator to delete.
V1_MIGRATED = "migrated-v1"
STORE = "dead-letter store"
#: Refusals handed to the store per append (one fsync each).
_CHUNK = 1000


@dataclass(frozen=True, slots=True)
class DeadLetterDir:
    """The store's directory and the bound its store is opened with."""

    path: Path
    max_bytes: int = DEFAULT_MAX_BYTES


def _v1_files(directory: Path) -> list[Path]:
    if not directory.is_dir():
        return []
    return sorted(directory.glob(f"{V1_PREFIX}*.jsonl"))


def dead_letter_version(directory: Path) -> int | None:
    """The store's version; None if there is no store yet (nothing to migrate)."""
    marker = directory / VERSION_FILE
    try:
        text = marker.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        pass
    else:
        if not text.isdigit():
            raise MigrationError(STORE, f"{marker} does not hold a version number")
        return int(text)
    if _v1_files(directory):
        return 1
    if directory.is_dir() and any(directory.iterdir()):
        return 2
    return None


def _stamp(store: DeadLetterDir, version: int) -> None:
    """Write the marker atomically: a crash leaves the old one or the new one."""
    store.path.mkdir(parents=True, exist_ok=True)
    tmp = store.path / f".{VERSION_FILE}.tmp"
    tmp.write_text(f"{version}\n", encoding="ascii")
    with tmp.open("rb") as fh:
        os.fsync(fh.fileno())
    tmp.replace(store.path / VERSION_FILE)
    fd = os.open(store.path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _v1_refusals(path: Path) -> Iterator[Refusal]:
    """The messages of one day file: version 1 wrote all records of one message in one
    append, with one receive time, so consecutive lines of the same (topic, payload, time)
    are one message with several problems."""
    key: tuple[str, str, int] | None = None
    gateway: str | None = None
    problems: dict[Problem, None] = {}
    with path.open("rb") as fh:
        for number, line in enumerate(fh, 1):
            try:
                doc = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue  # a torn last line: version 1 skipped it too (never acknowledged)
            try:
                this = (str(doc["topic"]), str(doc["payload_b64"]), int(doc["received_at"]))
                problem = Problem(RejectReason(doc["reason"]), str(doc["detail"]), doc["index"])
            except (KeyError, TypeError, ValueError) as exc:
                raise MigrationError(
                    STORE, f"{path.name} line {number} is not a version-1 record: {exc}"
                ) from None
            if this != key and key is not None:
                yield _refusal(key, gateway, problems)
                problems = {}
            key, gateway = this, doc.get("gateway")
            problems[problem] = None
    if key is not None:
        yield _refusal(key, gateway, problems)


def _refusal(
    key: tuple[str, str, int], gateway: str | None, problems: dict[Problem, None]
) -> Refusal:
    topic, payload_b64, received_at = key
    return Refusal(
        topic=topic,
        payload=base64.b64decode(payload_b64),
        received_at=received_at,
        gateway=gateway,
        problems=tuple(problems),
    )


def _day_files_to_segments(store: DeadLetterDir) -> None:
    """Step 2. Re-running after a crash adds nothing twice: the store does not write a
    (payload, reason) it already holds, and converted files are moved out only at the end."""
    files = _v1_files(store.path)
    converted = 0
    with DeadLetterStore(directory=store.path, max_bytes=store.max_bytes) as target:
        for path in files:
            chunk: list[Refusal] = []
            for refusal in _v1_refusals(path):
                chunk.append(refusal)
                if len(chunk) >= _CHUNK:
                    converted += len(target.append(chunk).written)
                    chunk = []
            converted += len(target.append(chunk).written)
    done = store.path / V1_MIGRATED
    done.mkdir(exist_ok=True)
    for path in files:
        path.replace(done / path.name)
    log.info(
        "%s: %d message(s) from %d day file(s) now in segments; the day files are in %s/",
        STORE,
        converted,
        len(files),
        V1_MIGRATED,
    )


DEAD_LETTER_STEPS: tuple[Step[DeadLetterDir], ...] = (
    Step(version=2, name="day files to segments and index", apply=_day_files_to_segments),
)
#: The version this release writes.
DEAD_LETTER_VERSION = DEAD_LETTER_STEPS[-1].version


def migrate_dead_letters(directory: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> Applied:
    """Bring the store in ``directory`` to :data:`DEAD_LETTER_VERSION` (a new or empty one is
    only stamped). Run it before the store is opened for writing."""
    store = DeadLetterDir(path=directory, max_bytes=max_bytes)
    current = dead_letter_version(directory)
    if current is None:
        _stamp(store, DEAD_LETTER_VERSION)
        return Applied(store=STORE, before=DEAD_LETTER_VERSION, after=DEAD_LETTER_VERSION)
    applied = run_steps(
        store=STORE,
        target=store,
        current=current,
        steps=DEAD_LETTER_STEPS,
        latest=DEAD_LETTER_VERSION,
        stamp=_stamp,
    )
    if not (directory / VERSION_FILE).exists():
        _stamp(store, applied.after)  # a version-2 store from before the marker existed
    return applied

"""Taking each part of the platform's state into a staging folder, consistently while the
services run, and putting it back. Used by :mod:`pantau.backup` and :mod:`pantau.restore`.

* InfluxDB: ``influxd backup -portable`` / ``influxd restore -portable`` over its RPC port.
* The broker: SIGUSR1 makes Mosquitto (2.0) write its persistence file now (sessions, queued
  QoS 1 messages, retained messages); we wait for the file to be replaced. The identity file is
  rewritten by the dynamic security plugin on every change, atomically, so a copy is whole.
* SQLite files (the dead-letter index, the crash-loop guard) through SQLite's online backup,
  so a writer in WAL mode cannot tear them; the index is taken *before* the segments, so the
  segments can only be ahead of it, which the store re-indexes when it opens.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

from pantau.backup_manifest import BackupError
from pantau.services import require_binary

log = logging.getLogger(__name__)

#: SQLite's side files: their content is inside the online backup of the main file.
_SQLITE_SIDE = ("-wal", "-shm", "-journal")


def _influxd(args: list[str], what: str) -> str:
    argv = [require_binary("influxd"), *args]
    done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=3600)
    out = (done.stdout + done.stderr).strip()
    if done.returncode != 0:
        last = out.splitlines()[-1] if out else f"exit status {done.returncode}"
        raise BackupError(f"{what}: {last}")
    return out


def dump_influx(*, rpc: str, database: str, dest: Path) -> None:
    """``influxd backup -portable`` of ``database`` into ``dest`` (a new folder)."""
    _influxd(
        ["backup", "-portable", "-db", database, "-host", rpc, str(dest)],
        f"influxd backup of {database!r} from {rpc}",
    )
    if not any(dest.iterdir()):
        raise BackupError(f"influxd backup of {database!r} from {rpc} wrote nothing")


def restore_influx(*, rpc: str, database: str, src: Path, into: str | None = None) -> None:
    """``influxd restore -portable`` of ``database`` (as ``into`` if given) into the running
    server at ``rpc``. InfluxDB refuses if that database already exists."""
    args = ["restore", "-portable", "-db", database, "-host", rpc]
    if into is not None and into != database:
        args += ["-newdb", into]
    _influxd([*args, str(src)], f"influxd restore of {database!r} into {rpc}")


def _file_id(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_mtime_ns


def save_broker(*, pid: int, persistence_file: Path, timeout_s: float) -> None:
    """Ask the Mosquitto process ``pid`` to write its persistence file and wait until it has:
    it writes ``mosquitto.db.new`` and renames it over the old file, so the file's inode (or
    at least its mtime) changes."""
    before = _file_id(persistence_file)
    try:
        os.kill(pid, signal.SIGUSR1)
    except ProcessLookupError:
        raise BackupError(f"no broker process {pid} to save its state") from None
    deadline = time.monotonic() + timeout_s
    while _file_id(persistence_file) in (before, None):
        if time.monotonic() > deadline:
            raise BackupError(
                f"the broker (pid {pid}) did not write {persistence_file} within {timeout_s:g} s"
                " of SIGUSR1: is persistence on, and is that its persistence_location?"
            )
        time.sleep(0.02)


def snapshot_sqlite(src: Path, dest: Path) -> None:
    """A consistent copy of an SQLite file that may be written meanwhile."""
    source = sqlite3.connect(f"file:{src}?mode=ro", uri=True)
    try:
        target = sqlite3.connect(dest)
        try:
            source.backup(target)
        finally:
            target.close()
    finally:
        source.close()


def copy_store(src: Path, dest: Path) -> None:
    """Copy a folder that a service writes meanwhile: SQLite files first, by online backup,
    then the other files (append-only segments, markers), skipping SQLite's side files."""
    files = sorted(p for p in src.rglob("*") if p.is_file())
    sqlite = [p for p in files if p.suffix == ".sqlite"]
    for path in sqlite:
        target = dest / path.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        snapshot_sqlite(path, target)
    for path in files:
        if path in sqlite or path.name.endswith(_SQLITE_SIDE):
            continue
        target = dest / path.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            shutil.copy2(path, target)
        except FileNotFoundError:  # rotated away since we listed it: the index says so
            log.info("backup: %s went away while copying (rotation)", path.name)


def copy_file(src: Path, dest: Path) -> None:
    """Copy one file (``dest``'s folder is created)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(src, dest)


def put_in_place(src: Path, dest: Path) -> None:
    """Copy ``src`` (file or folder) to ``dest`` through a temporary name beside it, then
    rename: a crash leaves the temporary, never half a file under the real name."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.restoring")
    if tmp.is_dir():
        shutil.rmtree(tmp)
    else:
        tmp.unlink(missing_ok=True)
    if src.is_dir():
        shutil.copytree(src, tmp)
    else:
        shutil.copy2(src, tmp)
    tmp.replace(dest)


def occupied(path: Path) -> bool:
    """True if restoring to ``path`` would overwrite something: a file, or a non-empty
    folder."""
    if path.is_dir():
        return any(path.iterdir())
    return path.exists()

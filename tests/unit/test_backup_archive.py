"""The backup archive on its own (files only, InfluxDB left out with --skip): what goes in
comes back byte for byte; a damaged or newer archive, or an occupied target, is refused before
anything is touched; --replace moves the old files aside."""

from __future__ import annotations

import io
import json
import sqlite3
import tarfile
from pathlib import Path

import pytest

from cloud.ingest import DeadLetterStore
from cloud.ingest.migrations import migrate_dead_letters
from pantau.backup import make_backup
from pantau.backup_manifest import MANIFEST_NAME, BackupError
from pantau.backup_settings import BackupSettings
from pantau.restore import restore_archive
from tests.backup_support import pantau
from tests.upgrade_support import old_records, write_old_dead_letters

SKIP = frozenset({"influxdb"})


def _settings(root: Path) -> BackupSettings:
    return BackupSettings(
        city_file=root / "city.yaml",
        broker_identity_file=root / "mosquitto" / "dynamic-security.json",
        broker_persistence_file=root / "mosquitto" / "data" / "mosquitto.db",
        dead_letter_dir=root / "dead",
    )


def _platform(root: Path) -> BackupSettings:
    """A registry, broker files and a dead-letter store with a guard in WAL mode whose last
    commit is still only in its -wal file."""
    s = _settings(root)
    s.city_file.parent.mkdir(parents=True, exist_ok=True)
    s.city_file.write_text("city: {name: Kota Contoh}\n")
    s.broker_persistence_file.parent.mkdir(parents=True)
    s.broker_identity_file.write_text('{"clients": []}')
    s.broker_persistence_file.write_bytes(b"\x00\xb5\x00mosquitto db" * 50)
    write_old_dead_letters(s.dead_letter_dir, old_records(1_790_000_000_000))
    migrate_dead_letters(s.dead_letter_dir)
    return s


def _wal_guard(directory: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(directory / "guard.sqlite")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA wal_autocheckpoint=0")
    conn.execute("CREATE TABLE attempts (fp BLOB PRIMARY KEY, count INTEGER NOT NULL)")
    conn.execute("INSERT INTO attempts VALUES (x'01', 2)")
    conn.commit()
    return conn  # kept open: the commit stays in guard.sqlite-wal


def test_every_file_comes_back_byte_for_byte_and_sqlite_with_its_wal(tmp_path: Path) -> None:
    source = _platform(tmp_path / "a")
    guard = _wal_guard(source.dead_letter_dir)
    archive = tmp_path / "b.tar.gz"
    manifest = make_backup(archive, source, skip=SKIP)
    guard.close()
    assert [p.name for p in manifest.parts] == ["registry", "broker", "dead_letters"]
    names = {f.path for p in manifest.parts for f in p.files}
    assert not any(n.endswith(("-wal", "-shm")) for n in names)

    target = _settings(tmp_path / "restored")
    lines = restore_archive(archive, target, skip=SKIP)

    for attr in ("city_file", "broker_identity_file", "broker_persistence_file"):
        assert getattr(target, attr).read_bytes() == getattr(source, attr).read_bytes()
    old = DeadLetterStore(directory=source.dead_letter_dir).read()
    assert DeadLetterStore(directory=target.dead_letter_dir).read() == old
    assert len(old) == 4
    with sqlite3.connect(target.dead_letter_dir / "guard.sqlite") as conn:
        assert conn.execute("SELECT fp, count FROM attempts").fetchall() == [(b"\x01", 2)]
    assert lines[0] == f"registry: city file -> {target.city_file}"


def _rewrite(archive: Path, change: dict[str, bytes]) -> None:
    """Replace members of ``archive`` (same order), as damage or a newer release would."""
    with tarfile.open(archive) as tar:
        members = [(m, tar.extractfile(m)) for m in tar.getmembers()]
        data = {m.name: f.read() for m, f in members if f is not None}
    with tarfile.open(archive, "w:gz") as tar:
        for member, _ in members:
            body = change.get(member.name, data[member.name])
            member.size = len(body)
            tar.addfile(member, io.BytesIO(body))


def test_a_damaged_archive_is_refused_and_nothing_is_restored(tmp_path: Path) -> None:
    archive = tmp_path / "b.tar.gz"
    make_backup(archive, _platform(tmp_path / "a"), skip=SKIP)
    _rewrite(archive, {"broker/mosquitto.db": b"\x00\xb5\x00mosquitto dc" * 50})
    target = _settings(tmp_path / "restored")
    with pytest.raises(BackupError) as err:
        restore_archive(archive, target, skip=SKIP)
    assert str(err.value) == (
        f"{archive} is damaged, nothing restored: "
        "broker/mosquitto.db: SHA-256 differs from the manifest"
    )
    assert not (tmp_path / "restored").exists()


def test_an_archive_of_a_newer_format_is_refused_in_one_sentence(tmp_path: Path) -> None:
    archive = tmp_path / "b.tar.gz"
    make_backup(archive, _platform(tmp_path / "a"), skip=SKIP)
    with tarfile.open(archive) as tar:
        member = tar.extractfile(MANIFEST_NAME)
        assert member is not None
        doc = json.loads(member.read())
    _rewrite(archive, {MANIFEST_NAME: json.dumps({**doc, "format_version": 2}).encode()})
    target = _settings(tmp_path / "restored")
    env = {
        "PANTAU_CITY_FILE": str(target.city_file),
        "PANTAU_DEAD_LETTER_DIR": str(target.dead_letter_dir),
    }
    result = pantau(["restore", str(archive), "--skip", "influxdb"], env)
    assert result.exit_code == 1
    assert result.output == (
        "pantau restore: this archive has backup format 2, newer than this pantau reads (1): "
        "restore it with the release that made it or a newer one\n"
    )
    assert not (tmp_path / "restored").exists()


def test_existing_files_are_refused_unless_replace_moves_them_aside(tmp_path: Path) -> None:
    archive = tmp_path / "b.tar.gz"
    make_backup(archive, _platform(tmp_path / "a"), skip=SKIP)
    target = _settings(tmp_path / "live")
    target.city_file.parent.mkdir(parents=True)
    target.city_file.write_text("city: {name: the newer file}\n")
    with pytest.raises(BackupError) as err:
        restore_archive(archive, target, skip=SKIP)
    assert str(err.value) == (
        f"nothing restored: {target.city_file} already exist(s); stop the services and use "
        "--replace to move them aside"
    )
    assert target.city_file.read_text() == "city: {name: the newer file}\n"
    assert not target.dead_letter_dir.exists()

    restore_archive(archive, target, skip=SKIP, replace=True)
    (aside,) = target.city_file.parent.glob("city.yaml.before-restore-*")
    assert aside.read_text() == "city: {name: the newer file}\n"
    assert target.city_file.read_text() == "city: {name: Kota Contoh}\n"

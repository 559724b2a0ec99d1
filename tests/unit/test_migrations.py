"""Versioned migrations: the dead-letter store of the previous release (5ecc6cb: day files)
becomes today's segment store with every record and payload, once; a newer store is refused;
the step loop stamps after each step."""

from __future__ import annotations

from pathlib import Path

import pytest

from cloud.ingest import DeadLetterStore
from cloud.ingest.migrations import (
    DEAD_LETTER_VERSION,
    MigrationError,
    Step,
    dead_letter_version,
    migrate_dead_letters,
    run_steps,
)
from cloud.ingest.migrations.deadletters import V1_MIGRATED, VERSION_FILE
from tests.upgrade_support import old_records, write_old_dead_letters

T0 = 1_790_000_000_000  # 2026-09-21 UTC, mid-day


def test_the_previous_releases_day_files_become_segments_with_every_record(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "dead"
    files = write_old_dead_letters(directory, old_records(T0), torn_tail=b'{"received_at": 1')
    assert len(files) == 2
    assert dead_letter_version(directory) == 1

    applied = migrate_dead_letters(directory)

    assert (applied.before, applied.after) == (1, 2)
    assert (directory / VERSION_FILE).read_text() == "2\n"
    assert sorted(p.name for p in (directory / V1_MIGRATED).iterdir()) == [f.name for f in files]
    got = DeadLetterStore(directory=directory).read()
    assert [(r.received_at - T0, r.reason, r.index, r.gateway) for r in got] == [
        (0, "unknown_sensor", 0, "gw-kariadi"),
        (0, "unknown_sensor", 1, "gw-kariadi"),
        (5, "invalid_json", None, "gw-kariadi"),
        (86_400_000, "unknown_gateway", None, "gw-new"),
    ]
    # One message, one payload: the two unknown sensors share a fingerprint.
    assert got[0].fingerprint == got[1].fingerprint
    payloads = DeadLetterStore(directory=directory).payloads({r.fingerprint for r in got})
    assert payloads[got[2].fingerprint] == ("pantau/v1/rs-kariadi/gw-kariadi/readings", b"{")
    assert len(payloads) == 3


def test_migrating_twice_changes_nothing(tmp_path: Path) -> None:
    directory = tmp_path / "dead"
    write_old_dead_letters(directory, old_records(T0))
    migrate_dead_letters(directory)
    before = sorted((p.name, p.read_bytes()) for p in directory.glob("segment-*"))
    again = migrate_dead_letters(directory)
    assert (again.before, again.after, again.steps) == (2, 2, [])
    assert sorted((p.name, p.read_bytes()) for p in directory.glob("segment-*")) == before


def test_a_crash_after_converting_but_before_the_marker_converts_nothing_twice(
    tmp_path: Path,
) -> None:
    """The step re-runs (no marker yet); the store refuses (payload, reason) it holds."""
    directory = tmp_path / "dead"
    files = write_old_dead_letters(directory, old_records(T0))
    copies = [(f, f.read_bytes()) for f in files]
    migrate_dead_letters(directory)
    (directory / VERSION_FILE).unlink()  # as if the process died before stamping
    for path, data in copies:  # ... and before moving the day files out
        path.write_bytes(data)
    migrate_dead_letters(directory)
    assert len(DeadLetterStore(directory=directory).read()) == 4


def test_a_new_store_is_stamped_with_this_releases_version(tmp_path: Path) -> None:
    directory = tmp_path / "dead"
    applied = migrate_dead_letters(directory)
    assert applied.steps == []
    assert dead_letter_version(directory) == DEAD_LETTER_VERSION == 2


def test_a_store_newer_than_this_release_is_refused_untouched(tmp_path: Path) -> None:
    directory = tmp_path / "dead"
    directory.mkdir()
    (directory / VERSION_FILE).write_text("3\n")
    with pytest.raises(MigrationError, match="version 3, newer than this release knows \\(2\\)"):
        migrate_dead_letters(directory)
    assert sorted(p.name for p in directory.iterdir()) == [VERSION_FILE]


def test_steps_run_in_order_and_each_is_stamped_after_it_ran() -> None:
    log: list[str] = []
    steps = [
        Step(version=2, name="two", apply=lambda t: log.append("apply 2")),
        Step(version=3, name="three", apply=lambda t: log.append("apply 3")),
    ]
    applied = run_steps(
        store="s",
        target=None,
        current=1,
        steps=steps,
        latest=3,
        stamp=lambda t, v: log.append(f"stamp {v}"),
    )
    assert log == ["apply 2", "stamp 2", "apply 3", "stamp 3"]
    assert applied.describe() == "s: version 1 -> 3 (2: two; 3: three)"

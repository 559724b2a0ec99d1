"""Aggregates-only ingesters default to windows and a held budget twice the raw mode's
(8 / 32 MiB against 4 / 16, docs/adr/0031); a value that is set is kept in either mode."""

from __future__ import annotations

from pathlib import Path

import pytest

from cloud.ingest.settings import IngestSettings

MIB = 1024 * 1024


def test_aggregates_only_windows_default_to_8_mib_and_32_held(tmp_path: Path) -> None:
    s = IngestSettings(store_raw=False, dead_letter_dir=tmp_path)
    assert (s.window_max_bytes, s.held_max_bytes) == (8 * MIB, 32 * MIB)


def test_raw_mode_windows_stay_at_4_mib_and_16_held(tmp_path: Path) -> None:
    s = IngestSettings(store_raw=True, dead_letter_dir=tmp_path)
    assert (s.window_max_bytes, s.held_max_bytes) == (4 * MIB, 16 * MIB)


def test_a_budget_set_in_the_environment_is_kept_aggregates_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PANTAU_STORE_RAW", "false")
    monkeypatch.setenv("PANTAU_WINDOW_MAX_BYTES", str(MIB))
    s = IngestSettings(dead_letter_dir=tmp_path)
    assert (s.window_max_bytes, s.held_max_bytes) == (MIB, 32 * MIB)

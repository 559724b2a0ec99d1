"""Editing a city registry file in place (pantau.registry_edit): every comment and line the
change does not touch stays byte for byte, a change that would make the registry invalid is
refused with the file untouched, and the new file replaces the old one whole."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest

from city import DEMO_CITY, load_registry
from contract.errors import RegistryError
from pantau.registry_edit import add_gateway, flow_item, remove_gateway

NEW_BED = {
    "id": "bed-new-icu",
    "kind": "bed",
    "site": "rs-kariadi",
    "gateway": "gw-new",
    "ward": 'Ruang "Sehat" = 1, Lt. 2',
    "bed_type": 26,
    "beds": 4,
}


@pytest.fixture
def city_file(tmp_path: Path) -> Path:
    path = tmp_path / "semarang.yaml"
    shutil.copyfile(DEMO_CITY, path)
    path.chmod(0o640)
    return path


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def test_adding_a_gateway_keeps_every_line_and_adds_one_line_per_entry(city_file: Path) -> None:
    before = _lines(city_file)
    change = add_gateway(city_file, {"id": "gw-new", "site": "rs-kariadi"}, [NEW_BED])
    assert _lines(city_file) == before  # nothing written until applied
    change.apply()
    after = _lines(city_file)
    added = [line for line in after if line not in before]
    assert added == [
        "  - {id: gw-new, site: rs-kariadi}",
        added[1],  # the dated comment heading the new sensors
        "  - " + flow_item(NEW_BED),
    ]
    assert added[1].startswith("  # gw-new (pantau gateway add, ")
    assert [line for line in after if line not in added] == before  # comments included
    registry = load_registry(city_file)
    assert registry.gateways["gw-new"].site == "rs-kariadi"
    assert registry.sensors["bed-new-icu"].ward == 'Ruang "Sehat" = 1, Lt. 2'
    assert len(registry.sensors) == 31
    assert stat.S_IMODE(city_file.stat().st_mode) == 0o640
    assert sorted(p.name for p in city_file.parent.iterdir()) == ["semarang.yaml"]


def test_a_change_that_makes_the_registry_invalid_is_refused_and_the_file_untouched(
    city_file: Path,
) -> None:
    before = city_file.read_bytes()
    with pytest.raises(RegistryError) as err:
        add_gateway(city_file, {"id": "gw-new", "site": "rs-kariadi"}, [{**NEW_BED, "beds": 0}])
    assert err.value.path == str(city_file)
    assert err.value.location == "sensors[30].beds"
    with pytest.raises(RegistryError) as err:
        add_gateway(city_file, {"id": "gw-kariadi", "site": "rs-kariadi"}, [])
    assert (err.value.location, err.value.message) == (
        "gateways[14].id",
        "duplicate id 'gw-kariadi'",
    )
    with pytest.raises(RegistryError) as err:
        remove_gateway(city_file, "gw-mpp", remove_sensors=False)
    assert err.value.message == "no gateway 'gw-mpp'"
    assert city_file.read_bytes() == before
    assert sorted(p.name for p in city_file.parent.iterdir()) == ["semarang.yaml"]


def test_removing_a_gateway_with_its_sensors_removes_their_lines_and_orphaned_comments(
    city_file: Path,
) -> None:
    before = _lines(city_file)
    remove_gateway(city_file, "gw-wongsonegoro", remove_sensors=True).apply()
    removed = [line for line in before if line not in _lines(city_file)]
    assert len(removed) == 6
    assert removed[0] == "  - {id: gw-wongsonegoro, site: rsud-wongsonegoro}"
    assert removed[1] == "  # RSUD K.R.M.T. Wongsonegoro"  # headed only the removed sensors
    assert all("gateway: gw-wongsonegoro" in line for line in removed[2:])
    assert "  # crowd counters" in _lines(city_file)  # still heads surviving sensors
    registry = load_registry(city_file)
    assert "gw-wongsonegoro" not in registry.gateways
    assert len(registry.sensors) == 26


def test_an_added_gateway_can_be_removed_leaving_the_file_as_it_was(city_file: Path) -> None:
    before = city_file.read_bytes()
    add_gateway(city_file, {"id": "gw-new", "site": "rs-kariadi"}, [NEW_BED]).apply()
    remove_gateway(city_file, "gw-new", remove_sensors=True).apply()
    assert city_file.read_bytes() == before


def test_a_change_planned_before_someone_else_edited_the_file_is_refused(
    city_file: Path,
) -> None:
    change = add_gateway(city_file, {"id": "gw-new", "site": "rs-kariadi"}, [])
    with city_file.open("a", encoding="utf-8") as f:
        f.write("# someone else's edit\n")
    edited = city_file.read_bytes()
    with pytest.raises(RegistryError, match="changed by someone else meanwhile"):
        change.apply()
    assert city_file.read_bytes() == edited


def test_the_file_is_replaced_by_rename_so_a_reader_never_sees_half_of_it(
    city_file: Path,
) -> None:
    # A reader holding the old file keeps reading the old file whole: a new inode, not a
    # rewrite in place.
    with city_file.open("rb") as reader:
        old_inode = os.fstat(reader.fileno()).st_ino
        add_gateway(city_file, {"id": "gw-new", "site": "rs-kariadi"}, []).apply()
        assert reader.read() == DEMO_CITY.read_bytes()
    assert city_file.stat().st_ino != old_inode

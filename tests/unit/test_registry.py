"""The city registry: the demo city is complete, and a bad file is an error naming the place."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from city import DEMO_CITY, Level, Registry, SiteKind, load_registry
from contract import RegistryError, SensorKind


def test_demo_city_has_what_the_demo_promises(city: Registry) -> None:
    kinds = [s.kind for s in city.sites.values()]
    assert len(city.city.kecamatan) >= 4
    assert len(city.kelurahan) >= 8
    assert kinds.count(SiteKind.HOSPITAL) >= 5
    assert kinds.count(SiteKind.ISOLATION_CENTRE) >= 3
    assert kinds.count(SiteKind.MARKET) + kinds.count(SiteKind.PUBLIC_SPACE) >= 4
    assert sum(s.kind is SensorKind.QUEUE for s in city) >= 3
    wards = {s.bed_type for s in city if s.kind is SensorKind.BED}
    assert {7, 26, 28, 29} <= wards  # HCU, ICU, isolation with and without negative pressure


def test_regions_of_an_isolation_centre_start_at_its_rw(city: Registry) -> None:
    chain = city.regions_of("iso-tegalsari-rw03")
    assert [r.level for r in chain] == [
        Level.RW,
        Level.KELURAHAN,
        Level.KECAMATAN,
        Level.KOTA,
        Level.PROVINSI,
    ]
    assert chain[0].code == "33.74.08.1001.03"
    assert chain[1].name == "Kel. Tegal Sari"


def _doc() -> dict[str, Any]:
    return copy.deepcopy(yaml.safe_load(DEMO_CITY.read_text()))


def _error(doc: Any, tmp_path: Path) -> RegistryError:
    path = tmp_path / "city.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True))
    with pytest.raises(RegistryError) as err:
        load_registry(path)
    assert err.value.path == str(path)
    return err.value


def _mutate(doc: dict[str, Any], where: str, value: Any) -> dict[str, Any]:
    *parents, last = where.split("/")
    node: Any = doc
    for p in parents:
        node = node[int(p)] if p.isdigit() else node[p]
    node[int(last) if last.isdigit() else last] = value
    return doc


@pytest.mark.parametrize(
    ("where", "value", "location", "message"),
    [
        ("sensors/0/gateway", "gw-nowhere", "sensors[0].gateway", "no gateway 'gw-nowhere'"),
        ("sensors/0/bed_type", 13, "sensors[0].bed_type", "not a SIRANAP bed type"),
        ("sensors/0/beds", 0, "sensors[0].beds", "greater than 0"),
        ("sites/0/kelurahan", "33.74.99.9999", "sites[0].kelurahan", "no kelurahan"),
        ("sites/5/rw", "99", "sites[5].rw", "has no RW 99"),
        ("sites/8/capacity", None, "sites[8].capacity", "health-protocol capacity"),
        ("sites/0/name", "RS\nBaru", "sites[0].name", "String should match pattern"),
        ("sites/0/name", "RS Baru\\", "sites[0].name", "String should match pattern"),
        ("gateways/1/id", "gw-kariadi", "gateways[1].id", "duplicate id"),
        ("city/timezone", "Asia/Semarang", "city.timezone", "unknown time zone"),
        ("sensors/0/kind", "crowd", "sensors[0].kind", "no crowd sensors at a hospital"),
        ("sensors/0/ward", None, "sensors[0]", "needs ward, bed_type and beds"),
        ("sensors/22/ward", "Aula", "sensors[22]", "for bed sensors only"),
    ],
)
def test_bad_file_names_file_place_and_problem(
    tmp_path: Path, where: str, value: Any, location: str, message: str
) -> None:
    err = _error(_mutate(_doc(), where, value), tmp_path)
    assert err.location == location
    assert message in err.message


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("city:\n  code: [unclosed\n")
    with pytest.raises(RegistryError) as err:
        load_registry(path)
    assert err.value.location.startswith("line ")


def test_missing_file_is_a_registry_error(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="cannot read"):
        load_registry(tmp_path / "nope.yaml")


def test_names_with_punctuation_and_unicode_are_kept(tmp_path: Path) -> None:
    doc = _mutate(_doc(), "sites/0/name", 'RSUD "Dr. Adhyatma", MPH = Tugu — Semarang ✓')
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True))
    assert (
        load_registry(path).sites["rs-kariadi"].name
        == 'RSUD "Dr. Adhyatma", MPH = Tugu — Semarang ✓'
    )

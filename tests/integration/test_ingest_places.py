"""``sensor_place`` (cloud/ingest/places.py, ADR 0028): raw points carry only their sensor, and
this measurement says where every registry sensor is, exactly as the registry says, for the
queries that cannot join (Grafana). Against a real InfluxDB 1.x."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import pytest
import yaml

from city import DEMO_CITY, Registry
from cloud.influx import InfluxHTTP
from cloud.ingest.migrations import migrate_influx
from cloud.ingest.places import place_tags, publish_places, stored_places
from cloud.ingest.topology import CityIndex
from pantau.services import InfluxDB

pytestmark = pytest.mark.integration


def _as_set(places: list[dict[str, str]]) -> set[tuple[tuple[str, str], ...]]:
    return {tuple(sorted(p.items())) for p in places}


def _index(doc: dict[str, Any]) -> CityIndex:
    return CityIndex.from_registry(Registry.from_doc(doc))


@pytest.fixture
def influx(influxdb: InfluxDB) -> Iterator[InfluxHTTP]:
    with InfluxHTTP(url=influxdb.url, database="pantau") as client:
        client.ensure_database()
        migrate_influx(client)  # makes the pantau_meta policy, as the ingester's start does
        yield client


def test_sensor_place_says_where_each_registry_sensor_is_and_follows_a_changed_registry(
    influx: InfluxHTTP,
) -> None:
    doc: dict[str, Any] = yaml.safe_load(DEMO_CITY.read_text(encoding="utf-8"))
    first = _index(doc)
    assert publish_places(influx, first) == 0
    stored = stored_places(influx)
    assert len(stored) == first.n_sensors == 30
    assert _as_set(stored) == _as_set(place_tags(first))
    # names with quotes, '=', commas and dots survive as the registry spells them
    iso = next(p for p in stored if p["sensor"] == "bed-iso-kauman")
    assert (iso["ward"], iso["site_name"]) == (
        'Ruang "Sehat" = 1',
        'Rumah Isolasi "Kauman Sehat" RW 05',
    )

    # One ward renamed (its place moves) and one gateway's sensors removed.
    moved = next(s for s in doc["sensors"] if s["id"] == "bed-kariadi-icu")
    gone = [s["id"] for s in doc["sensors"] if s["gateway"] == "gw-johar"]
    changed = {
        **doc,
        "gateways": [g for g in doc["gateways"] if g["id"] != "gw-johar"],
        "sensors": [
            {**s, "ward": "ICU Lt. 4"} if s is moved else s
            for s in doc["sensors"]
            if s["gateway"] != "gw-johar"
        ],
    }
    second = _index(changed)
    assert publish_places(influx, second) == 1 + len(gone)
    stored = stored_places(influx)
    assert _as_set(stored) == _as_set(place_tags(second))
    assert [p["ward"] for p in stored if p["sensor"] == "bed-kariadi-icu"] == ["ICU Lt. 4"]
    assert not {p["sensor"] for p in stored} & set(gone)
    # Running again changes nothing: nothing is stale, and nothing is written.
    writes: list[int] = []
    write = influx.write_to_policy

    def counted(lines: Iterable[str], *, rp: str) -> None:
        kept = list(lines)
        writes.append(len(kept))
        write(kept, rp=rp)

    influx.write_to_policy = counted  # type: ignore[method-assign]
    assert publish_places(influx, second) == 0
    assert writes == []
    # A place lost from InfluxDB is written again, alone.
    influx.execute(['DROP SERIES FROM "sensor_place" WHERE "sensor" = \'bed-kariadi-icu\''])
    assert publish_places(influx, second) == 0
    assert writes == [1]
    assert _as_set(stored_places(influx)) == _as_set(place_tags(second))


def test_grafana_turns_a_kecamatan_into_its_bed_sensors_through_sensor_place(
    influx: InfluxHTTP,
) -> None:
    """The hidden variable's query (pantau/grafana/variables.py) lists exactly the registry's
    bed sensors of the kecamatan."""
    doc: dict[str, Any] = yaml.safe_load(DEMO_CITY.read_text(encoding="utf-8"))
    index = _index(doc)
    publish_places(influx, index)
    reg = index.registry
    want = {
        s.id
        for s in reg.doc.sensors
        if s.kind.value == "bed"
        and reg.kecamatan_of_kelurahan[reg.sites[s.site].kelurahan].code == "33.74.07"
    }
    q = (
        'SHOW TAG VALUES FROM "sensor_place" WITH KEY = "sensor" WHERE "kind" = \'bed\' '
        'AND "kecamatan" =~ /^33\\.74\\.07$/'
    )
    got = {row["value"] for series in influx.query(q) for row in series.rows()}
    assert got == want
    assert len(want) == 5

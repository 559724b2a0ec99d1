"""Whatever names and strings line protocol is given, InfluxDB gives back exactly."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cloud.influx import InfluxHTTP, format_line, series_key
from pantau.services import InfluxDB

pytestmark = pytest.mark.integration

tag_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\\\n\r"),
    min_size=1,
    max_size=25,
).filter(lambda s: s.strip() == s and s.strip())  # InfluxQL results trim nothing, but keep tidy
string_field = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    max_size=40,
)


@pytest.fixture
def client(influxdb: InfluxDB) -> Iterator[InfluxHTTP]:
    with InfluxHTTP(url=influxdb.url, database="roundtrip") as c:
        c.ensure_database()
        yield c


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(site_name=tag_text, ward=tag_text, note=string_field, value=st.integers(-(2**63), 2**63 - 1))
def test_names_and_strings_round_trip_exactly(
    client: InfluxHTTP, site_name: str, ward: str, note: str, value: int
) -> None:
    key = series_key("bed", {"site_name": site_name, "ward": ward, "sensor": "s-1"})
    client.write([format_line(key, {"occupied": value, "note": note}, 1_700_000_000_000)])
    site_q = site_name.replace("\\", "\\\\").replace("'", "\\'")
    ward_q = ward.replace("\\", "\\\\").replace("'", "\\'")
    rows = [
        r
        for s in client.query(
            "SELECT occupied, note, site_name, ward FROM bed"  # noqa: S608 - quoted above
            f" WHERE site_name = '{site_q}' AND ward = '{ward_q}'"
        )
        for r in s.rows()
    ]
    assert rows == [
        {
            "time": 1_700_000_000_000,
            "occupied": value,
            "note": note,
            "site_name": site_name,
            "ward": ward,
        }
    ]
    client.execute(["DROP SERIES FROM bed"])

"""InfluxDB layout step 2 (cloud/ingest/migrations/rawtags.py, ADR 0028) on a real InfluxDB 1.x:
version-1 raw points of several days and every kind end up on sensor-only series with their
times and device values, the derived fields left behind, copied in parts of a bounded number
of points; re-running the step after a crash duplicates nothing."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from cloud.influx import InfluxHTTP, format_line, series_key
from cloud.ingest import StorageSchema, apply_schema
from cloud.ingest.migrations.rawtags import copy_to_sensor_series, raw_by_sensor
from cloud.storage_schema import RAW_RP, Measurement
from pantau.services import InfluxDB
from tests.ingest_support import now_ms

pytestmark = pytest.mark.integration

DAY = 86_400_000
PLACE = {"site": "rs-x", "site_name": "RS X, Lt. 2", "kelurahan": "1", "kecamatan": "2"}


@pytest.fixture
def influx(influxdb: InfluxDB) -> Iterator[InfluxHTTP]:
    with InfluxHTTP(url=influxdb.url, database="pantau") as client:
        client.ensure_database()
        apply_schema(client, StorageSchema(database="pantau"))
        yield client


def _v1_lines(t0: int) -> list[str]:
    """Version-1 points on three days: beds with `free`, a crowd gate, a kiosk with `waiting`."""
    lines = []
    for day in range(3):
        ts = t0 - (2 - day) * DAY
        bed = {
            **PLACE,
            "sensor": "bed-x",
            "ward": 'ICU "A"',
            "bed_type": "26",
            "site_kind": "hospital",
        }
        lines.append(
            format_line(
                series_key("bed", bed),
                {"capacity": 10, "occupied": 4 + day, "free": 6 - day, "suspect": 0,
                 "confirmed": 1, "waiting": 0, "seq": day},
                ts,
            )
        )  # fmt: skip
        gate = {**PLACE, "sensor": "crowd-x", "gate": "Utara"}
        lines.append(
            format_line(
                series_key("crowd", gate),
                {"entries": 100 + day, "exits": 90, "occupancy": 10 + day, "seq": day},
                ts,
            )
        )
        kiosk = {**PLACE, "sensor": "q-x"}
        lines.append(
            format_line(
                series_key("queue", kiosk),
                {"issued": 20 + day, "served": 15, "waiting": 5 + day, "counters_open": 2,
                 "seq": day},
                ts,
            )
        )  # fmt: skip
    return lines


Points = dict[str, list[tuple[dict[str, str], list[dict[str, object]]]]]


def _everything(influx: InfluxHTTP) -> Points:
    """Every raw series with its points, null fields left out (field keys outlive the series
    that had them, so SELECT * still names ``free``)."""
    out: Points = {}
    for m in ("bed", "crowd", "queue"):
        out[m] = [
            (s.tags, [{c: v for c, v in zip(s.columns, row, strict=True) if v is not None}
                      for row in s.values])
            for s in influx.query(f"SELECT * FROM {m} GROUP BY *")  # noqa: S608
        ]  # fmt: skip
    return out


def test_version_1_raw_points_move_to_sensor_only_series_and_a_rerun_adds_nothing(
    influx: InfluxHTTP,
) -> None:
    t0 = now_ms() - now_ms() % 1000
    influx.write(_v1_lines(t0))

    # at most 2 points per SELECT INTO: the three days are copied in two parts
    assert copy_to_sensor_series(influx, RAW_RP, Measurement.BED, chunk_points=2) == 2
    raw_by_sensor(influx, chunk_points=2)
    after = _everything(influx)
    raw_by_sensor(influx)  # a crash before the version was stamped: the step runs again

    assert _everything(influx) == after
    days = [t0 - 2 * DAY, t0 - DAY, t0]
    assert after == {
        "bed": [({"sensor": "bed-x"}, [
            {"time": t, "capacity": 10, "occupied": 4 + d, "suspect": 0, "confirmed": 1,
             "waiting": 0, "seq": d}
            for d, t in enumerate(days)
        ])],
        "crowd": [({"sensor": "crowd-x"}, [
            {"time": t, "entries": 100 + d, "exits": 90, "occupancy": 10 + d, "seq": d}
            for d, t in enumerate(days)
        ])],
        "queue": [({"sensor": "q-x"}, [
            {"time": t, "issued": 20 + d, "served": 15, "counters_open": 2, "seq": d}
            for d, t in enumerate(days)
        ])],
    }  # fmt: skip
    tag_keys = {r["tagKey"] for s in influx.query("SHOW TAG KEYS") for r in s.rows()}
    assert tag_keys == {"sensor"}

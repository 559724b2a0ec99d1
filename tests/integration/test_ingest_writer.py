"""The writer stores what InfluxDB can store and hands back exactly what it refuses."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cloud.influx import InfluxHTTP
from cloud.ingest import DeadLetter, DeadLetterStore, PointWriter
from cloud.ingest.cli import app
from cloud.ingest.writer import PRECISION
from contract import RejectReason
from pantau.services import InfluxDB

pytestmark = pytest.mark.integration


def test_a_field_type_conflict_refuses_only_the_conflicting_lines(influxdb: InfluxDB) -> None:
    with InfluxHTTP(url=influxdb.url, database="w") as influx:
        influx.ensure_database()
        # occupied is now a float; same precision as PointWriter, so the same shard (InfluxDB
        # 1.x checks field types per shard)
        influx.write(["bed,sensor=a occupied=1.5 1700000000000"], precision=PRECISION)
        lines = [f"queue,sensor=q{i} issued={i}i 1700000000000" for i in range(7)]
        lines[2] = "bed,sensor=b occupied=3i 1700000000000"
        lines[5] = "bed,sensor=c occupied=4i 1700000000000"
        writer = PointWriter(influx=influx, stopping=threading.Event(), chunk_lines=4)
        refused = writer.write(lines)
        assert [r.line for r in refused] == [2, 5]
        assert all("conflict" in r.detail for r in refused)
        stored = [
            r for s in influx.query("SELECT issued FROM queue GROUP BY sensor") for r in s.rows()
        ]
        assert sorted(r["sensor"] for r in stored) == ["q0", "q1", "q3", "q4", "q6"]


def test_dead_letters_cli_lists_by_reason(tmp_path: Path) -> None:
    store = DeadLetterStore(directory=tmp_path)
    store.append(
        [
            DeadLetter.of(
                received_at=1_795_000_000_000,
                reason=r,
                detail="d",
                topic="t",
                gateway="gw-x",
                index=i,
                payload=b'{"v": 9}',
            )
            for i, r in enumerate([RejectReason.INVALID_JSON, RejectReason.NEGATIVE_COUNT])
        ]
    )
    result = CliRunner().invoke(
        app, ["dead-letters", "--dir", str(tmp_path), "--reason", "negative_count", "--payload"]
    )
    assert result.exit_code == 0, result.output
    out = result.stdout.splitlines()
    assert out == [
        "2026-11-18T11:06:40+00:00 negative_count gw-x t reading 1: d",
        '  {"v": 9}',
    ]

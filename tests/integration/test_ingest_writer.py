"""The writer stores what InfluxDB can store and hands back exactly what it refuses."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from cloud.influx import MAX_RETRY_AFTER_S, InfluxHTTP, retry_after_s
from cloud.ingest import DeadLetterStore, PointWriter, Problem, Refusal
from cloud.ingest.cli import app
from cloud.ingest.writer import PRECISION, PendingWrite
from contract import RejectReason, StorageError
from pantau.services import InfluxDB

pytestmark = pytest.mark.integration


def test_a_field_type_conflict_refuses_only_the_conflicting_lines_and_counts_the_rest(
    influxdb: InfluxDB,
) -> None:
    with InfluxHTTP(url=influxdb.url, database="w") as influx:
        influx.ensure_database()
        # occupied is now a float; same precision as PointWriter, so the same shard (InfluxDB
        # 1.x checks field types per shard)
        influx.write(["bed,sensor=a occupied=1.5 1700000000000"], precision=PRECISION)
        lines = [f"queue,sensor=q{i} issued={i}i 1700000000000" for i in range(7)]
        lines[2] = "bed,sensor=b occupied=3i 1700000000000"
        lines[5] = "bed,sensor=c occupied=4i 1700000000000"
        counted: list[int] = []
        writer = PointWriter(
            influx=influx, stopping=threading.Event(), chunk_lines=4, on_stored=counted.append
        )
        refused = writer.write(lines)
        assert [r.line for r in refused] == [2, 5]
        # each accepted request reports its own lines: the five good ones, each once
        assert sum(counted) == 5
        assert all("conflict" in r.detail for r in refused)
        stored = [
            r for s in influx.query("SELECT issued FROM queue GROUP BY sensor") for r in s.rows()
        ]
        assert sorted(r["sensor"] for r in stored) == ["q0", "q1", "q3", "q4", "q6"]


def test_dead_letters_cli_lists_by_reason(tmp_path: Path) -> None:
    with DeadLetterStore(directory=tmp_path) as store:
        store.append(
            [
                Refusal(
                    topic="t",
                    payload=b'{"v": 9}',
                    received_at=1_795_000_000_000,
                    gateway="gw-x",
                    problems=(
                        Problem(RejectReason.INVALID_JSON, "d", 0),
                        Problem(RejectReason.NEGATIVE_COUNT, "d", 1),
                    ),
                )
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


class _FaultProxy:
    """A real HTTP server in front of a real InfluxDB that answers the first requests to
    ``/write`` from a script of (status, headers) and forwards the rest."""

    def __init__(self, upstream: str, script: list[tuple[int, dict[str, str]]]) -> None:
        self.script = list(script)
        self.seen: list[tuple[float, int]] = []  # (monotonic time, status answered)
        self.bodies: list[bytes] = []
        lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                with lock:
                    fault = proxy.script.pop(0) if proxy.script else None
                if fault is not None:
                    status, headers = fault
                else:
                    resp = httpx.post(upstream + self.path, content=body, timeout=10)
                    status, headers = resp.status_code, {}
                    with lock:
                        proxy.bodies.append(body)
                with lock:
                    proxy.seen.append((time.monotonic(), status))
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> _FaultProxy:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def _count(influx: InfluxHTTP) -> int:
    got = influx.query("SELECT count(issued) FROM queue")
    return int(got[0].values[0][1]) if got else 0


def test_retries_only_the_explicit_list_and_honours_retry_after(influxdb: InfluxDB) -> None:
    """429 (waiting at least its Retry-After) and 5xx are retried until the write lands;
    the lines are then stored once each."""
    script = [(429, {"Retry-After": "1"}), (503, {}), (500, {})]
    with (
        InfluxHTTP(url=influxdb.url, database="w") as direct,
        _FaultProxy(influxdb.url, script) as proxy,
        InfluxHTTP(url=proxy.url, database="w") as influx,
    ):
        direct.ensure_database()
        writer = PointWriter(
            influx=influx, stopping=threading.Event(), backoff_base_s=0.01, backoff_cap_s=0.02
        )
        lines = [f"queue,sensor=q{i} issued={i}i 1700000000000000" for i in range(10)]
        assert writer.write(lines) == []
        assert [status for _, status in proxy.seen] == [429, 503, 500, 204]
        # the backoff alone would have waited at most 0.02 s; Retry-After asked for 1 s
        assert proxy.seen[1][0] - proxy.seen[0][0] >= 1.0
        assert _count(direct) == 10


@pytest.mark.parametrize("status", [401, 404, 413])
def test_other_failures_are_not_retried_and_not_dead_lettered(
    influxdb: InfluxDB, status: int
) -> None:
    """A failure outside the list (credentials, no database, too large) is raised after one
    try: the caller acknowledges nothing and dead-letters nothing."""
    with (
        _FaultProxy(influxdb.url, [(status, {})] * 5) as proxy,
        InfluxHTTP(url=proxy.url, database="w") as influx,
    ):
        writer = PointWriter(influx=influx, stopping=threading.Event(), chunk_lines=2)
        with pytest.raises(StorageError) as info:
            writer.write([f"queue,sensor=q{i} issued={i}i 1700000000000000" for i in range(4)])
        assert info.value.status == status
        assert info.value.retryable is False
        assert [s for _, s in proxy.seen] == [status]


def test_parallel_writers_store_every_chunk_before_returning(influxdb: InfluxDB) -> None:
    """With 3 writers and chunks of 7 lines, a chunk that fails twice is retried while the
    others land; write() returns only when all 100 lines are stored."""
    with (
        InfluxHTTP(url=influxdb.url, database="w") as direct,
        _FaultProxy(influxdb.url, [(503, {}), (502, {})]) as proxy,
        InfluxHTTP(url=proxy.url, database="w") as influx,
        PointWriter(
            influx=influx,
            stopping=threading.Event(),
            chunk_lines=7,
            parallelism=3,
            backoff_base_s=0.01,
            backoff_cap_s=0.05,
        ) as writer,
    ):
        direct.ensure_database()
        lines = [f"queue,sensor=q{i} issued={i}i 1700000000000000" for i in range(100)]
        assert writer.write(lines) == []
        assert _count(direct) == 100
        assert sorted(s for _, s in proxy.seen) == [204] * 15 + [502, 503]
        assert sum(b.count(b"\n") + 1 for b in proxy.bodies) == 100


def test_each_submitted_chunk_calls_on_settled_once_from_a_writer_thread(
    influxdb: InfluxDB,
) -> None:
    """on_settled (the consumer's wake-up, ADR 0041) is called once per chunk of a submit,
    on the writer's threads, after that chunk is done: 35 lines in chunks of 7 are 5 calls,
    and the 5th finds the whole write done."""
    calls: list[tuple[str, bool]] = []
    all_called = threading.Event()
    pending: list[PendingWrite] = []
    submitted = threading.Event()

    def on_settled() -> None:
        submitted.wait(10)  # the write object exists before its chunks are looked at
        calls.append((threading.current_thread().name, pending[0].done()))
        if len(calls) == 5:
            all_called.set()

    with (
        InfluxHTTP(url=influxdb.url, database="w") as influx,
        PointWriter(
            influx=influx, stopping=threading.Event(), chunk_lines=7, on_settled=on_settled
        ) as writer,
    ):
        influx.ensure_database()
        lines = [f"queue,sensor=q{i} issued={i}i 1700000000000000" for i in range(35)]
        pending.append(writer.submit(lines))
        submitted.set()
        assert pending[0].result() == []
        assert all_called.wait(10)
        assert _count(influx) == 35
    assert len(calls) == 5
    assert all(name.startswith("influx-write") for name, _ in calls)
    assert calls[-1][1] is True


def test_retry_after_header_forms() -> None:
    now = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)
    assert retry_after_s("7", now=now) == 7.0
    assert retry_after_s("Mon, 23 Nov 2026 12:00:30 GMT", now=now) == 30.0
    assert retry_after_s("Mon, 23 Nov 2026 11:00:00 GMT", now=now) == 0.0
    assert retry_after_s("99999", now=now) == MAX_RETRY_AFTER_S
    assert retry_after_s("soon", now=now) is None
    assert retry_after_s(None) is None

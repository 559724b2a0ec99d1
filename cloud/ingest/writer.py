"""Points of docs/schema.md, built from the decoded columns, and written to InfluxDB.

Series keys come from the registry and are built once (per sensor; rollups: ``rollup_points``);
only the field part of a line is formatted per point, through ``cloud.influx`` (the only place
that formats line protocol), and raw points column-wise in numpy with the same bytes
(``raw_lines``): raw lines are :class:`PackedLines` (one buffer; a chunk's body is a slice of
it), the others ``str``; a write takes either. A window's raw points go out by kind and then by
sensor, so each series' points share a request: InfluxDB 1.6 pays per series and request
(docs/adr/0037-influxdb-inside-the-drain.md).

Writing: chunks of ``chunk_lines`` lines, up to ``parallelism`` of them at once (InfluxDB takes
points in any order; the caller acknowledges only after every chunk of its window is stored).
:meth:`PointWriter.write` returns when its lines are stored; :meth:`PointWriter.submit` hands them
to the writer's threads and returns at once, so the caller can decode the next window while
they are written (docs/adr/0032-overlapped-window-writes.md).
Only the failures ``cloud.influx`` classifies as retryable (unreachable, 429, 5xx) are retried,
with full-jitter backoff (``contract.backoff``) and never sooner than a Retry-After, for as
long as they last: the messages stay unacknowledged meanwhile, so nothing is lost and the
broker holds the backlog. A 400 (bad or
conflicting data) is not retried; the chunk is bisected so every line that can be stored is,
and the lines InfluxDB still refuses on their own are returned to the caller to dead-letter.
Any other failure (401, 404 database not found...) is raised: nothing is acknowledged.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Self, cast

import numpy as np
import numpy.typing as npt

from cloud.influx import FieldValue, InfluxHTTP, format_line, series_key
from cloud.ingest.decode import Readings, StatusUpdate
from cloud.ingest.raw_lines import KeyTable, PackedLines, format_int_parts
from cloud.ingest.topology import CityIndex
from cloud.storage_schema import (
    BED_FIELDS,
    CROWD_FIELDS,
    QUEUE_FIELDS,
    RAW,
    Measurement,
)
from contract import KIND_CODES, STAT_TYPES, PantauError, SensorKind, StatType, StorageError
from contract.backoff import backoff_delay

log = logging.getLogger(__name__)

#: Every line PointBuilder makes is stamped in microseconds (see PointBuilder.raw).
PRECISION = "u"

_BED = KIND_CODES[SensorKind.BED]
_CROWD = KIND_CODES[SensorKind.CROWD]
_QUEUE = KIND_CODES[SensorKind.QUEUE]
_NUMERIC_STATS = (StatType.COUNT, StatType.SECONDS)


def quiet_routine_requests(level: int) -> None:
    """httpx logs every request at INFO: at the ingester's INFO level that was one line per
    InfluxDB write, several a second. Above DEBUG they are left out (failures are logged by
    this module at WARNING); at DEBUG they stay, beside this module's own per-write line."""
    if level > logging.DEBUG:
        logging.getLogger("httpx").setLevel(logging.WARNING)


class WriteAbortedError(PantauError):
    """A stop was requested while InfluxDB was unavailable; nothing was acknowledged."""


#: What a write takes: lines of text, or lines already encoded (raw points: PackedLines).
LineSeq = Sequence[str] | Sequence[bytes]


def body(lines: LineSeq) -> bytes:
    """The ``/write`` request body of ``lines`` (all ``str`` or all ``bytes``)."""
    if isinstance(lines, PackedLines):
        return lines.body()
    if lines and isinstance(lines[0], bytes):
        return b"\n".join(cast(Sequence[bytes], lines))
    return "\n".join(cast(Sequence[str], lines)).encode("utf-8")


@dataclass(slots=True)
class Lines:
    """Encoded lines with their provenance: the window message (or -1), reading index in its
    message (or -1) and row of the window's readings (or -1: not a raw point) of each, kept as
    arrays (looked up only for a line InfluxDB refuses)."""

    lines: PackedLines = field(default_factory=PackedLines)
    message: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))
    reading: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))
    row: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))

    def add(
        self,
        lines: PackedLines,
        message: Sequence[int] | npt.NDArray[np.integer],
        reading: Sequence[int] | npt.NDArray[np.integer],
        row: Sequence[int] | npt.NDArray[np.integer] | None = None,
    ) -> None:
        """Append lines and their owners (``row`` None: none is a raw point)."""
        if not len(lines):
            return
        self.lines = PackedLines.join([self.lines, lines])
        self.message = np.concatenate([self.message, np.asarray(message, np.int64)])
        self.reading = np.concatenate([self.reading, np.asarray(reading, np.int64)])
        rows = np.full(len(lines), -1, np.int64) if row is None else np.asarray(row, np.int64)
        self.row = np.concatenate([self.row, rows])

    def owner(self, line: int) -> tuple[int, int]:
        """The window message and reading index (-1: none) of line ``line``."""
        return int(self.message[line]), int(self.reading[line])


class PointBuilder:
    """Formats every point the ingester writes. Series keys are precomputed from the city."""

    def __init__(self, *, index: CityIndex) -> None:
        self.index = index
        reg = index.registry
        # Raw points carry the sensor only (ADR 0028): the registry answers where it is.
        self.raw_keys = [
            series_key(RAW[sensor.kind], {"sensor": sensor.id}) for sensor in reg.doc.sensors
        ]
        self._raw_keys = KeyTable(self.raw_keys)

    def raw(self, readings: Readings) -> Lines:
        """Raw ``bed``/``crowd``/``queue`` points at observation time, one per reading: by kind,
        and within a kind by sensor (each sensor's in reading order)."""
        v = readings.values
        texts: list[tuple[list[bytes], npt.NDArray[np.int64]]] = []
        message: list[npt.NDArray[np.integer]] = []
        reading: list[npt.NDArray[np.integer]] = []
        order: list[npt.NDArray[np.intp]] = []
        for code, names in ((_BED, BED_FIELDS), (_CROWD, CROWD_FIELDS), (_QUEUE, QUEUE_FIELDS)):
            rows = np.flatnonzero(readings.kind == code)
            if not len(rows):
                continue
            # A series' points of a window side by side, so mostly in one request: InfluxDB 1.6
            # pays per series and request as well as per point, and a window of 500-reading
            # batches in reading order gave each request about one point per series (26-29 %
            # less of its CPU per point this way; docs/adr/0037-influxdb-inside-the-drain.md).
            rows = rows[np.argsort(readings.sensor[rows], kind="stable")]
            order.append(rows)
            # the device's values as sent (the first len(names) - 1 columns), then its seq
            cols = np.hstack([v[rows, : len(names) - 1], readings.seq[rows][:, None]])
            # Time is the observation ms plus seq % 1000 µs: two distinct readings of a sensor in
            # one ms stay two points, while a redelivered reading lands on itself again.
            ts_us = readings.ts[rows] * 1000 + readings.seq[rows] % 1000
            keys = readings.sensor[rows]
            texts.append(format_int_parts(self._raw_keys, keys, names, cols, ts_us))
            message.append(readings.message[rows])
            reading.append(readings.index[rows])
        # one buffer for the window, copied once: the writer cuts its chunks' bodies out of it
        out = Lines()
        if texts:
            out.add(
                PackedLines.of_parts(texts),
                np.concatenate(message),
                np.concatenate(reading),
                np.concatenate(order),
            )
        return out

    def dead_letter(
        self, *, reason: str, gateway: str, topic: str, detail: str, ts_ms: int, count: int = 1
    ) -> str:
        """One ``dead_letter`` point: ``count`` refusals of one reason in one message."""
        key = series_key(
            Measurement.DEAD_LETTER, {"reason": reason, "gateway": gateway or "unknown"}
        )
        return format_line(key, {"count": count, "topic": topic, "detail": detail}, ts_ms * 1000)

    def gateway_status(self, update: StatusUpdate, ts_ms: int) -> str:
        """One ``gateway_status`` point; numeric stats become fields of their own."""
        gw = self.index.registry.doc.gateways[update.gateway]
        key = series_key(Measurement.GATEWAY_STATUS, {"gateway": gw.id, "site": gw.site})
        st = update.status
        fields: dict[str, FieldValue] = {
            "online": 1 if st.state.value == "online" else 0,
            "state": st.state.value,
        }
        for name, value in st.stats.items():
            # Only the contract's numeric stats become fields: a fixed set of plain names, so a
            # device can neither add field keys nor break line protocol (text stats are for
            # `pantau edge status`, not for the database).
            if STAT_TYPES.get(name) in _NUMERIC_STATS:
                fields[name] = value
        return format_line(key, fields, ts_ms * 1000)


@dataclass(frozen=True, slots=True)
class Refused:
    """A line InfluxDB refused on its own (after bisecting), with its answer."""

    line: int
    detail: str


class PendingWrite:
    """Lines being written on the writer's threads; :meth:`result` waits for all of them."""

    def __init__(self, futures: Sequence[Future[list[Refused]]]) -> None:
        self._futures = tuple(futures)
        self._refused: list[Refused] | None = None

    def result(self) -> list[Refused]:
        """The lines InfluxDB refused for good, in line order, once every chunk has settled.
        Raises what a chunk raised (:class:`WriteAbortedError`, a non-retryable
        ``StorageError``), after waiting for the others: nothing is half-reported."""
        if self._refused is None:
            wait(self._futures)
            out: list[Refused] = []
            for f in self._futures:
                out += f.result()
            self._refused = out
        return self._refused

    def done(self) -> bool:
        """Whether every chunk has settled (:meth:`result` would not wait)."""
        return all(f.done() for f in self._futures)


def chunk_bounds(n: int, *, chunk_lines: int, parallelism: int) -> list[tuple[int, int]]:
    """How ``n`` lines are cut into requests: chunks of at most ``chunk_lines``; when there
    are several, as many as a multiple of ``parallelism``, of equal size, so no writer idles
    while another has a whole chunk left (27 500 lines in 5 000s on 2 writers: 6 of 4 583,
    not 5 000 x 5 + 2 500)."""
    k = -(-n // chunk_lines)
    if k > 1:
        k = -(-k // parallelism) * parallelism
    return [(n * i // k, n * (i + 1) // k) for i in range(k)]


class PointWriter:
    """Writes lines in chunks, ``parallelism`` chunks at a time; retries what can succeed,
    bisects what cannot. :meth:`write` returns only once every chunk is stored (or refused
    for good), so a caller that acknowledges after it never acknowledges unstored data.

    Threads start on the first :meth:`submit`, or the first write with several chunks when
    ``parallelism`` > 1; :meth:`close` stops them."""

    def __init__(
        self,
        *,
        influx: InfluxHTTP,
        stopping: threading.Event,
        chunk_lines: int = 5000,
        parallelism: int = 1,
        backoff_base_s: float = 0.1,
        backoff_cap_s: float = 5.0,
        on_latency: Callable[[float], None] | None = None,
        on_stored: Callable[[int], None] | None = None,
        on_retrying: Callable[[bool], None] | None = None,
        on_settled: Callable[[], None] | None = None,
    ) -> None:
        self.influx = influx
        self.stopping = stopping
        self.chunk_lines = chunk_lines
        self.parallelism = parallelism
        self.backoff_base_s = backoff_base_s
        self.backoff_cap_s = backoff_cap_s
        self.on_latency = on_latency
        #: called with each accepted request's line count (known here, never recounted)
        self.on_stored = on_stored
        self.on_retrying = on_retrying
        #: called on a writer thread each time a submitted chunk has settled (its future is
        #: done by then), so the consumer wakes for it instead of polling (ADR 0041)
        self.on_settled = on_settled
        #: True while a retryable failure is being waited out (exported as a metric)
        self.retrying = False
        self._failing = 0  # chunks currently waiting out a retryable failure
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None

    def close(self) -> None:
        """Stop the writer threads (waits for writes in progress)."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def write(self, lines: LineSeq) -> list[Refused]:
        """Store ``lines``; returns those InfluxDB refuses for good, in line order. Raises
        :class:`WriteAbortedError` if asked to stop while InfluxDB is unavailable."""
        bounds = self.chunk_bounds(len(lines))
        if self.parallelism <= 1 or len(bounds) <= 1:
            refused: list[Refused] = []
            for lo, hi in bounds:
                self._store(lines, lo, hi, refused)
            return refused
        # every chunk settles before anything is reported (or acknowledged)
        return self._submit(lines, bounds).result()

    def submit(self, lines: LineSeq) -> PendingWrite:
        """Start storing ``lines`` on the writer's threads (even a single chunk) and return at
        once; :meth:`PendingWrite.result` is what :meth:`write` would have returned. The
        caller must not change ``lines`` until then."""
        bounds = self.chunk_bounds(len(lines))
        return self._submit(lines, bounds)

    def chunk_bounds(self, n: int) -> list[tuple[int, int]]:
        """:func:`chunk_bounds` with this writer's ``chunk_lines`` and ``parallelism``."""
        return chunk_bounds(n, chunk_lines=self.chunk_lines, parallelism=self.parallelism)

    def _submit(self, lines: LineSeq, bounds: list[tuple[int, int]]) -> PendingWrite:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.parallelism, thread_name_prefix="influx-write")
        pool = self._pool
        futures = [pool.submit(self._store_chunk, lines, lo, hi) for lo, hi in bounds]
        if (wake := self.on_settled) is not None:
            for f in futures:
                f.add_done_callback(lambda _: wake())
        return PendingWrite(futures)

    def _store_chunk(self, lines: LineSeq, lo: int, hi: int) -> list[Refused]:
        refused: list[Refused] = []
        self._store(lines, lo, hi, refused)
        return refused

    def _store(self, lines: LineSeq, lo: int, hi: int, refused: list[Refused]) -> None:
        try:
            self._write_retrying(lines[lo:hi])
        except StorageError as exc:
            if exc.status != 400:
                # Neither retryable nor about the data (401/403 credentials, 404 no database,
                # 413...): dead-lettering every line would lose the window; raising leaves it
                # unacknowledged at the broker for when the operator has fixed the cause.
                raise
            if hi - lo == 1:
                log.warning("InfluxDB refused a line: %s", exc)
                refused.append(Refused(lo, str(exc)))
                return
            # InfluxDB 1.x may already have stored the good lines of a refused chunk; writing
            # them again lands on the same series and time, so it overwrites, not duplicates.
            mid = (lo + hi) // 2
            self._store(lines, lo, mid, refused)
            self._store(lines, mid, hi, refused)

    def _write_retrying(self, chunk: LineSeq) -> None:
        data = body(chunk)
        attempt = 0
        try:
            while True:
                started = time.perf_counter()
                try:
                    self.influx.write(data, precision=PRECISION)
                except StorageError as exc:
                    # Only what InfluxHTTP classifies as retryable (connection errors, 5xx,
                    # 429) is retried; a 400 goes back to _store to be bisected.
                    if not exc.retryable:
                        raise
                    # Full jitter, so writers recovering together do not hammer InfluxDB in
                    # step; never sooner than the server's Retry-After.
                    delay = backoff_delay(attempt, base=self.backoff_base_s, cap=self.backoff_cap_s)
                    if exc.retry_after_s is not None:
                        delay = max(delay, exc.retry_after_s)
                    if attempt == 0:
                        self._set_retrying(+1)
                    attempt += 1
                    log.warning(
                        "InfluxDB write failed (attempt %d), retrying in %.2fs: %s",
                        attempt,
                        delay,
                        exc,
                    )
                    if self.stopping.wait(delay):
                        raise WriteAbortedError("stopping while InfluxDB is unavailable") from exc
                    continue
                elapsed = time.perf_counter() - started
                if self.on_latency is not None:
                    self.on_latency(elapsed)
                if self.on_stored is not None:
                    self.on_stored(len(chunk))
                # DEBUG: several writes a second is the normal state, not news (failures and
                # retries above are WARNING).
                log.debug("stored %d lines in %.3f s", len(chunk), elapsed)
                return
        finally:
            if attempt:
                self._set_retrying(-1)

    def _set_retrying(self, step: int) -> None:
        with self._lock:
            self._failing += step
            value = self._failing > 0
            changed = value != self.retrying
            self.retrying = value
        if changed and self.on_retrying is not None:
            self.on_retrying(value)

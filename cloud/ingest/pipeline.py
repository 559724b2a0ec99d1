"""One window's way to storage: decode and validate, dead-letter the refused (fsync), store raw
points and statuses, fold the stored readings into the state, write the rollups, rewrite the
past buckets late readings change. Acknowledging is the caller's (``service``): it happens only
after :meth:`WindowPipeline.store` returns.

The same way in four steps, so the caller can decode window k+1 while window k's points are
written (docs/adr/0032-overlapped-window-writes.md): :meth:`WindowPipeline.prepare` (decode,
dead letters, the lines), :meth:`WindowPipeline.submit` (the raw write starts on the writer's
threads), :meth:`WindowPipeline.finish` (wait for it, fold, write or coalesce the rollups,
rewrite past buckets) and :meth:`WindowPipeline.settle` (wait for the rollup write that
carries the window's state), as :meth:`WindowPipeline.store` does. Windows must be finished in
the order they were prepared.

Rollup writes are coalesced (docs/adr/0038-coalesced-rollup-writes.md): at most one is in
flight; a window folded meanwhile only marks the rollups due, and when the write in flight
settles, one write carries every cell changed since, computed against what InfluxDB accepted.
So folding a window never waits for a rollup write, except for the first window of a new
rollup bucket, which waits until the old bucket's newest state is written.
:attr:`StoringWindow.rollups` names the write that covers a window's state. Late data's
rewrites of past buckets go the same way (cloud/ingest/past_writes.py, ADR 0045), named by
:attr:`StoringWindow.past`; :meth:`WindowPipeline.settled` says, without waiting, whether both
have settled.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from cloud.ingest.aggregate import ReadingHistory, SensorState
from cloud.ingest.aggregate.state import NO_TIME
from cloud.ingest.boundary import decode_isolating, status_lines
from cloud.ingest.deadletter import DETAIL_MAX, DeadLetterStore, Problem, Refusal
from cloud.ingest.decode import DecodedWindow, Message, Rejection, decode_window
from cloud.ingest.dedup import BatchDedup
from cloud.ingest.freshness_points import FreshnessPoints
from cloud.ingest.health import IngestHealth
from cloud.ingest.metrics import IngestMetrics
from cloud.ingest.past_writes import BucketLines, PastWrites
from cloud.ingest.raw_lines import PackedLines
from cloud.ingest.rollup_points import RollupPoints
from cloud.ingest.rollup_writes import RollupWrites
from cloud.ingest.settings import IngestSettings
from cloud.ingest.topology import CityIndex
from cloud.ingest.writer import Lines, PendingWrite, PointBuilder, PointWriter
from contract import RejectReason, TopicError, topics

log = logging.getLogger(__name__)

#: Rewrites of past buckets in flight and due, in write chunks, beyond which a window waits
#: for the one in flight (PastWrites.max_pending_lines).
_PAST_PENDING_CHUNKS = 4


def dead_letter(msg: Message, rej: Rejection) -> Refusal:
    """The dead-letter record of a refused message (or of one refused reading of it)."""
    try:
        gateway: str | None = topics.parse(msg.topic).gateway
    except TopicError:
        gateway = None
    return Refusal(
        topic=msg.topic,
        payload=msg.payload,
        received_at=msg.received_ms,
        gateway=gateway,
        problems=(Problem(rej.reason, rej.detail, rej.index),),
    )


@dataclass(slots=True, kw_only=True)
class StoringWindow:
    """A window between :meth:`WindowPipeline.prepare` and :meth:`WindowPipeline.finish`."""

    window: list[Message]
    decoded: DecodedWindow
    #: raw and status lines, with the message and reading each came from
    lines: Lines
    #: the clock when the window was prepared (dead letters and late data use it)
    now: int
    #: the raw write, once submitted
    write: PendingWrite | None = None
    #: observation times of the readings folded in (the lag is read once they are stored)
    kept_ts: npt.NDArray[np.int64] | None = None
    #: the number of the rollup write that carries this window's state (set when finished)
    rollups: int = 0
    #: the number of the rewrite of past buckets that carries this window's late readings
    past: int = 0


class WindowPipeline:
    """Decode, refuse, store and aggregate windows of messages. Construction does no I/O: the
    stores and the writer it is given are opened by the caller."""

    def __init__(
        self,
        *,
        settings: IngestSettings,
        index: CityIndex,
        state: SensorState,
        writer: PointWriter,
        dead: DeadLetterStore,
        metrics: IngestMetrics,
        health: IngestHealth,
        dedup: BatchDedup,
        history: ReadingHistory | None,
        clock_ms: Callable[[], int],
    ) -> None:
        self.settings = settings
        self.index = index
        self.state = state
        self.writer = writer
        self.dead = dead
        self.metrics = metrics
        self.health = health
        self.dedup = dedup
        #: recent readings, to rewrite past rollup buckets when late data arrives
        self.history = history
        self._history_paused_at = NO_TIME
        self.builder = PointBuilder(index=index)
        self.rollups = RollupPoints(index=index)
        self._clock_ms = clock_ms
        self._freshness = FreshnessPoints()
        #: the current bucket's rollup writes, coalesced (cloud/ingest/rollup_writes.py)
        self.rollup_writes = RollupWrites(
            rollups=self.rollups,
            state=state,
            writer=writer,
            bucket_ms=settings.rollup_bucket_s * 1000,
        )
        #: late data's rewrites of past buckets, coalesced (cloud/ingest/past_writes.py)
        self.past_writes = PastWrites(
            writer=writer, max_pending_lines=_PAST_PENDING_CHUNKS * settings.write_chunk_lines
        )

    def store(self, window: list[Message]) -> DecodedWindow:
        """Everything a window needs before it may be acknowledged: refusals on disk, raw
        points, statuses and aggregates accepted by InfluxDB, the state updated."""
        storing = self.prepare(window)
        self.finish(storing)
        return self.settle(storing)

    def prepare(self, window: list[Message]) -> StoringWindow:
        """Decode and validate ``window``, store its refusals (fsync) and format its raw and
        status lines. Touches neither the state nor the rollups, so it may run while the
        previous window is still being written."""
        now = self._clock_ms()
        m = self.metrics
        m.messages_in.inc(len(window))
        m.window_messages.observe(len(window))
        # Nothing one message contains may fail the window (cloud.ingest.boundary).
        decoded: DecodedWindow = decode_isolating(
            window, lambda part: decode_window(part, self.index, now, dedup=self.dedup)
        )
        m.duplicates.inc(len(decoded.duplicates))
        m.status_stats_dropped.inc(sum(st.dropped_stats for st in decoded.statuses))
        readings = decoded.readings
        n_bad_readings = sum(1 for r in decoded.rejections if r.index is not None)
        m.readings_in.inc(len(readings) + n_bad_readings)
        st_lines, st_refused = status_lines(
            decoded.statuses,
            lambda st: self.builder.gateway_status(st, window[st.message].received_ms),
        )
        self.record_dead(
            [dead_letter(window[r.message], r) for r in [*decoded.rejections, *st_refused]], now
        )

        # Aggregates-only mode: validated, dead-lettered, folded into state, not stored raw.
        lines: Lines = self.builder.raw(readings) if self.settings.store_raw else Lines()
        lines.add(
            PackedLines.of([line.encode() for _, line in st_lines]),
            [msg_i for msg_i, _ in st_lines],
            [-1] * len(st_lines),
        )  # one add: each one copies the provenance arrays
        return StoringWindow(window=window, decoded=decoded, lines=lines, now=now)

    def submit(self, storing: StoringWindow) -> None:
        """Start writing the window's lines on the writer's threads (returns at once)."""
        storing.write = self.writer.submit(storing.lines.lines)

    def finish(self, storing: StoringWindow) -> None:
        """Wait for the window's write (or write it now if it was not submitted), dead-letter
        the lines InfluxDB refused, fold what was stored into the state, start the rollup
        write (on the writer's threads) and rewrite the past buckets it changes. The window
        may be acknowledged once :meth:`settle` returns."""
        window, decoded, lines, now = storing.window, storing.decoded, storing.lines, storing.now
        # Not submitted (store()): written on this thread, as before overlapping existed.
        pending, storing.write = storing.write, None
        refused = pending.result() if pending is not None else self.writer.write(lines.lines)
        readings = decoded.readings
        state, m = self.state, self.metrics
        kept = readings  # every raw line stored: nothing to take out
        if refused:
            ok_rows = np.ones(len(readings), dtype=bool)
            late: list[Refusal] = []
            for r in refused:
                msg_i, at = lines.owner(r.line)
                rej = Rejection(
                    msg_i, RejectReason.STORAGE_REJECTED, r.detail, None if at < 0 else at
                )
                late.append(dead_letter(window[msg_i], rej))
                # raw() orders its lines by kind and sensor: each carries its readings row
                if (row := int(lines.row[r.line])) >= 0:
                    ok_rows[row] = False
            self.record_dead(late, now)
            kept = readings.take(ok_rows)
        if self.settings.store_raw:
            m.readings_stored.inc(len(kept))
            m.last_stored.set_to_current_time()
        writes = self.rollup_writes
        if writes.pending_stamp() not in (None, writes.stamp(now)):
            # A new bucket: the old one's point must hold its newest state, which this
            # window's readings would overwrite, and its write must settle before
            # correct_past rewrites it. Once per bucket.
            writes.settle_all()
        if state.update(kept.sensor, kept.ts, kept.seq, kept.values):
            writes.submit(now)
        storing.rollups = writes.covering
        # Past buckets only (before now's): a rollup write in flight or due is of now's
        # bucket, so none can land over these lines.
        self.correct_past(kept.sensor, kept.ts, kept.seq, kept.values, now)
        storing.past = self.past_writes.covering
        storing.kept_ts = kept.ts
        storing.lines = Lines()  # written: not held while the window waits for its rollups

    def settle(self, storing: StoringWindow) -> DecodedWindow:
        """Wait for the rollup write that carries the window's state and the rewrite of the
        past buckets its late readings changed (raises as a write does; starts them if they
        were only due). After it returns the window may be acknowledged."""
        self.rollup_writes.wait(storing.rollups)
        self.past_writes.wait(storing.past)
        # Lag is observation -> stored: read the clock now that the window is written, not
        # at its start (a slow write would otherwise hide from the histogram).
        ts = storing.kept_ts if storing.kept_ts is not None else np.zeros(0, np.int64)
        lags_s = (self._clock_ms() - ts) / 1000.0
        self.metrics.observe_lag(lags_s)
        self.health.observe(messages=len(storing.window), lags_s=lags_s)
        return storing.decoded

    def correct_past(
        self,
        sensor: npt.NDArray[np.int32],
        ts: npt.NDArray[np.int64],
        seq: npt.NDArray[np.int64],
        values: npt.NDArray[np.int64],
        now: int,
    ) -> None:
        """Remember the window's readings; rewrite the rollups of the past buckets that its
        late readings (observed before the current bucket) change. docs/schema.md, Late data."""
        history = self.history
        if history is None:
            return
        bucket = self.settings.rollup_bucket_s * 1000
        current = now - now % bucket
        if not history.active and current != self._history_paused_at:
            # Paused by a rate its memory could not span: try again once per bucket.
            history.resume(self.state)
            log.info("late-data correction resumed")
        was_active = history.active
        history.add(sensor, ts, seq, values, now_ms=now)
        if was_active and not history.active:
            self._history_paused_at = current
            log.warning(
                "late-data correction paused: %d readings span less than one %d s bucket "
                "(raise PANTAU_LATE_HISTORY_READINGS to keep it at this rate)",
                self.settings.late_history_readings,
                self.settings.rollup_bucket_s,
            )
        late = ts < current
        if not late.any():
            return
        starts = history.affected_buckets(sensor[late], ts[late], bucket_ms=bucket, before=current)
        buckets: BucketLines = {}
        lines = 0
        for start, past in history.states_at(starts, bucket_ms=bucket):
            buckets[start] = self.rollup_lines(past, start)
            lines += len(buckets[start])
            if lines >= self.settings.write_chunk_lines:
                self.past_writes.submit(buckets)
                buckets, lines = {}, 0
        self.past_writes.submit(buckets)
        self.metrics.late_buckets.inc(len(starts))

    def settled(self, storing: StoringWindow) -> bool:
        """Without waiting: whether a finished window's rollup write and rewrite of past
        buckets have both settled (it may then be acknowledged)."""
        return self.rollup_writes.settled(storing.rollups) and self.past_writes.settled(
            storing.past
        )

    def record_dead(self, records: list[Refusal], now: int) -> None:
        """Durably store dead letters (each payload once, nothing already stored), then
        write their points (one per message and reason) and count them."""
        if not records:
            return
        done = self.dead.append(records)
        self.health.refused(sum(len(r.problems) for r in records))
        m = self.metrics
        m.dead_letters_duplicate.inc(done.duplicates)
        m.dead_letters_rotated.inc(done.rotated)
        points: list[str] = []
        for ref in done.written:
            by_reason: dict[RejectReason, list[Problem]] = {}
            for p in ref.problems:
                by_reason.setdefault(p.reason, []).append(p)
            for reason, problems in by_reason.items():
                points.append(
                    self.builder.dead_letter(
                        reason=reason.value,
                        gateway=ref.gateway or "unknown",
                        topic=ref.topic,
                        detail=problems[0].detail[:DETAIL_MAX],
                        ts_ms=ref.received_at,
                        count=len(problems),
                    )
                )
                m.dead_letters.labels(reason=reason.value).inc(len(problems))
        for refused in self.writer.write(points):
            log.error("dead_letter point refused by InfluxDB: %s", refused.detail)

    def quarantine(self, poison: list[tuple[Message, int]]) -> None:
        """Dead-letter messages the process died on as poison, without processing them (the
        crash-loop guard's verdict, cloud/ingest/guard.py); the caller acknowledges them."""
        for msg, attempts in poison:
            log.error(
                "quarantined a message on %s: the ingester died on it %d times", msg.topic, attempts
            )
        self.record_dead(
            [
                dead_letter(
                    msg,
                    Rejection(0, RejectReason.POISON, f"the ingester died processing it {n} times"),
                )
                for msg, n in poison
            ],
            self._clock_ms(),
        )

    def write_rollups(self, now: int) -> None:
        """Write the aggregates of the current state, stamped at the start of ``now``'s
        rollup bucket (rewritten in place until the bucket ends; docs/schema.md): the whole
        set on a bucket's first write, then only the cells that changed (rollup_points).
        Returns once InfluxDB has them, and every rollup write started before."""
        writes = self.rollup_writes
        writes.settle_all()
        lines, written = self.rollups.changed(self.state, writes.stamp(now))
        self.rollups.forget()
        self.write_aggregates(lines)
        self.rollups.remember(written)

    def rollup_lines(self, state: SensorState, stamp_ms: int) -> list[str]:
        """Every bed, crowd and queue rollup line of ``state``, stamped ``stamp_ms``."""
        return self.rollups.lines(state, stamp_ms)

    def tick(self) -> None:
        """Work due on the clock whether or not messages arrive: region freshness falls
        exactly when nothing comes in (cloud/ingest/freshness_points.py)."""
        lines = self._freshness.due_lines(self.index, self.state.ts, self._clock_ms())
        if lines:
            self.write_aggregates(lines)

    def write_aggregates(self, agg: list[str]) -> None:
        """Write aggregate lines; a line InfluxDB refuses is logged (nothing to acknowledge)."""
        for r in self.writer.write(agg):
            log.error("aggregate point refused by InfluxDB: %s", r.detail)

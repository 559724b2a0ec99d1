"""Window k+1 decoded while window k is written: the windows in flight, and their order.

Without this the consumer decoded window k, wrote it, waited, and only then decoded k+1, so
InfluxDB waited for the ingester and the ingester for InfluxDB (docs/performance.md, issue 14
(d)). Here :meth:`WindowsInFlight.start` prepares the new window (decode, dead letters, lines:
nothing that touches the state) while the previous one's raw write and the rollup write run
on the writer's threads, then queues the new window's raw write behind the previous one's (the
writers never wait for this thread between windows), waits for the previous raw write and
finishes that window (refused lines dead-lettered, state folded, its rollups written or marked
due: cloud/ingest/rollup_writes.py), and acknowledges, oldest first, every finished window
whose state a settled rollup write carries (also before the decode, so their payload bytes
are free for the network thread meanwhile). It waits for no rollup write: while one is in
flight, the windows folded meanwhile wait for the next, which carries all their changed cells.

So, whatever the timing:

* at most one raw write and one rollup write are under way while the next window is decoded,
  and at most two raw writes (that window's queued behind the one before) after it;
  windows waiting for a rollup write hold their payload bytes against ``held_max_bytes`` (and
  the broker's Receive Maximum caps their messages) until each is acknowledged: when either
  is full the session stops taking messages, and the consumer, finding no whole window,
  acknowledges windows as their writes settle (:meth:`WindowsInFlight.progress`):
  backpressure. A window's raw lines and readings' columns are dropped once it is folded;
* windows are finished and acknowledged in the order they arrived, each only after its own
  raw write, a rollup write that carries its state and a rewrite that carries its late
  readings' past buckets (cloud/ingest/past_writes.py) settled: a window whose write fails is
  never acknowledged, and neither is any after it (the error leaves them in flight, and
  :meth:`WindowsInFlight.abandon` gives them up);
* a batch of a window in flight counts as seen by the next window's dedup (``BatchDedup.hold``),
  as it would once acknowledged; if its window is given up it counts as unseen again.

The caller finishes and acknowledges every window in flight (:meth:`WindowsInFlight.drain`)
whenever something else must see every window stored: before it merges other members' state,
quarantines, swaps the registry, reconnects or stops. While it waits for messages it calls
:meth:`WindowsInFlight.progress`, which does the same without waiting for a write.
docs/adr/0032-overlapped-window-writes.md, docs/adr/0038-coalesced-rollup-writes.md.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace

from cloud.ingest.decode import Message, empty_readings
from cloud.ingest.pipeline import StoringWindow, WindowPipeline


@dataclass(slots=True)
class _InFlight:
    storing: StoringWindow
    pipeline: WindowPipeline
    #: payload bytes it holds (released against ``held_max_bytes`` once it is acknowledged)
    size: int
    #: folded into the state, its rollups written or due (WindowPipeline.finish)
    finished: bool = False


class WindowsInFlight:
    """The windows being written while the next is decoded. Touched by the consumer only."""

    def __init__(
        self,
        *,
        acknowledge: Callable[[list[Message]], bool],
        release: Callable[[int], None],
    ) -> None:
        #: acknowledges a finished window; True if that reached the broker's session (its
        #: batches are then remembered as stored)
        self._acknowledge = acknowledge
        #: gives a window's payload bytes back to the session's budget
        self._release = release
        #: oldest first: finished windows waiting for a rollup write that carries their
        #: state, then at most one whose raw points are being written
        self._windows: deque[_InFlight] = deque()

    def start(self, pipeline: WindowPipeline, window: list[Message], *, size: int) -> None:
        """Prepare ``window`` while the windows in flight are written, queue its raw write,
        finish the window before it (waiting for that one's raw write) and acknowledge the
        windows whose rollups were written (see the module docstring). ``size`` payload bytes
        are released once ``window`` is acknowledged or abandoned."""
        windows = self._windows
        # Their payload bytes go back to the session before this decode, so the network
        # thread can fill the next window meanwhile rather than wait for room.
        self._acknowledge_settled()
        storing = pipeline.prepare(window)
        pipeline.dedup.hold(storing.decoded.batch_keys)
        # Queued behind the previous window's chunks, so the writers go on from one window to
        # the next without waiting for this thread; a raise below leaves both in flight.
        pipeline.submit(storing)
        windows.append(_InFlight(storing, pipeline, size))
        if len(windows) > 1 and not windows[-2].finished:
            self._finish(windows[-2])  # waits for its raw write, folds it, writes its rollups
        self._acknowledge_settled()

    def drain(self) -> None:
        """Finish and acknowledge every window in flight, in order: done when this returns."""
        for w in self._windows:
            if not w.finished:
                self._finish(w)
        while self._windows:
            self._acknowledge_oldest()

    def progress(self) -> bool:
        """Without waiting for a write: finish the windows whose raw write settled and
        acknowledge those whose rollups were written, in order. True if windows remain."""
        for w in self._windows:
            if not w.finished:
                raw = w.storing.write
                if raw is not None and not raw.done():
                    break
                self._finish(w)
        self._acknowledge_settled()
        return bool(self._windows)

    def abandon(self) -> None:
        """Leaving on an error: the windows in flight are not acknowledged (the broker
        redelivers them); the writer's ``close`` waits for their writes."""
        while self._windows:
            gone = self._windows.popleft()
            gone.pipeline.dedup.settle(gone.storing.decoded.batch_keys, stored=False)
            self._release(gone.size)

    def _finish(self, done: _InFlight) -> None:
        # A raise leaves it in flight: abandon() gives it (and every later window) up.
        done.pipeline.finish(done.storing)
        done.finished = True
        # Folded: its readings' columns (about 15 MB for a binary window of 8 MiB) are not
        # held while it waits for its rollups.
        decoded = done.storing.decoded
        done.storing.decoded = replace(decoded, readings=empty_readings())

    def _acknowledge_settled(self) -> None:
        # Without waiting: every finished window, oldest first, whose rollups were written.
        windows = self._windows
        while windows and windows[0].finished and windows[0].pipeline.settled(windows[0].storing):
            self._acknowledge_oldest()

    def _acknowledge_oldest(self) -> None:
        done = self._windows[0]
        done.pipeline.settle(done.storing)  # raises as a write did: still in flight
        self._windows.popleft()
        stored = self._acknowledge(done.storing.window)
        done.pipeline.dedup.settle(done.storing.decoded.batch_keys, stored=stored)
        self._release(done.size)

"""Window k+1 decoded while window k is written: the windows in flight, and their order.

Without this the consumer decoded window k, wrote it, waited, and only then decoded k+1, so
InfluxDB waited for the ingester and the ingester for InfluxDB (docs/performance.md, issue 14
(d)). Here :meth:`WindowsInFlight.start` prepares the new window (decode, dead letters, lines:
nothing that touches the state) while the previous one's raw write and the one before's rollup
write run on the writer's threads, then waits for that raw write, starts the new window's,
acknowledges the window whose rollups were written, and finishes the previous one (refused
lines dead-lettered, state folded, its rollup write started): it is acknowledged at the next
start, once its rollup write settled.

So, whatever the timing:

* at most one raw write and one rollup write are under way while the next window is decoded
  (memory: two more windows of payloads, which ``held_max_bytes`` still counts until each is
  acknowledged; a window's raw lines and readings' columns are dropped once it is folded);
* windows are finished and acknowledged in the order they arrived, each only after its own
  raw and rollup writes settled, and each window's rollup write settles before the next
  window's rollups are computed: a window whose write fails is never acknowledged, and
  neither is any after it;
* a batch of a window in flight counts as seen by the next window's dedup (``BatchDedup.hold``),
  as it would once acknowledged; if its window is given up it counts as unseen again.

The caller finishes and acknowledges every window in flight (:meth:`WindowsInFlight.drain`)
whenever something else must see every window stored: before it waits for messages, merges
other members' state, quarantines, swaps the registry or reconnects.
docs/adr/0032-overlapped-window-writes.md.
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
    #: folded into the state, its rollup write started (WindowPipeline.finish)
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
        #: oldest first: at most a finished window whose rollups are being written, then one
        #: whose raw points are being written
        self._windows: deque[_InFlight] = deque()

    def start(self, pipeline: WindowPipeline, window: list[Message], *, size: int) -> None:
        """Prepare ``window`` while the windows in flight are written, then wait for the raw
        write before it, start this one's, acknowledge the window whose rollups were written
        and finish the other (see the module docstring). ``size`` payload bytes are released
        once ``window`` is acknowledged or abandoned."""
        storing = pipeline.prepare(window)
        pipeline.dedup.hold(storing.decoded.batch_keys)
        windows = self._windows
        try:
            if windows and (raw := windows[-1].storing.write) is not None:
                raw.result()  # the previous window's points are stored
        except BaseException:
            pipeline.dedup.settle(storing.decoded.batch_keys, stored=False)
            raise
        pipeline.submit(storing)
        windows.append(_InFlight(storing, pipeline, size))
        if len(windows) > 2:
            self._acknowledge_oldest()  # its rollup write ran while this window was decoded
        if len(windows) > 1:
            self._finish(windows[0])

    def drain(self) -> None:
        """Finish and acknowledge every window in flight, in order: done when this returns."""
        while self._windows:
            oldest = self._windows[0]
            if not oldest.finished:
                self._finish(oldest)
            self._acknowledge_oldest()

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

    def _acknowledge_oldest(self) -> None:
        done = self._windows[0]
        done.pipeline.settle(done.storing)  # raises as the write did: still in flight
        self._windows.popleft()
        stored = self._acknowledge(done.storing.window)
        done.pipeline.dedup.settle(done.storing.decoded.batch_keys, stored=stored)
        self._release(done.size)

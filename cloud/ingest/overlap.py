"""Window k+1 decoded while window k is written: the one window in flight, and its order.

Without this the consumer decoded window k, wrote it, waited, and only then decoded k+1, so
InfluxDB waited for the ingester and the ingester for InfluxDB (docs/performance.md, issue 14
(d)). Here :meth:`WindowsInFlight.start` prepares the new window (decode, dead letters, lines:
nothing that touches the state) while the previous one's write runs on the writer's threads,
then waits for that write, starts the new window's, and only then finishes the previous one
(refused lines dead-lettered, state folded, rollups written) and hands it to be acknowledged.

So, whatever the timing:

* at most one window is being written while the next is decoded (memory: one more window of
  lines and payloads, which ``held_max_bytes`` still counts until it is finished);
* windows are finished and acknowledged in the order they arrived, each only after its own
  write settled: a window whose write fails is never acknowledged, and neither is any after it;
* a batch of the window in flight counts as seen by the next window's dedup (``BatchDedup.hold``),
  as it would once acknowledged; if its window is given up it counts as unseen again.

The caller finishes the window in flight (:meth:`WindowsInFlight.drain`) whenever something
else must see every window stored: before it waits for messages, merges other members' state,
quarantines, swaps the registry or reconnects. docs/adr/0032-overlapped-window-writes.md.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from cloud.ingest.decode import Message
from cloud.ingest.pipeline import StoringWindow, WindowPipeline


@dataclass(slots=True)
class _InFlight:
    storing: StoringWindow
    pipeline: WindowPipeline
    #: payload bytes it holds (released against ``held_max_bytes`` once it is finished)
    size: int


class WindowsInFlight:
    """The window being written while the next is decoded. Touched by the consumer only."""

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
        self._inflight: _InFlight | None = None

    def start(self, pipeline: WindowPipeline, window: list[Message], *, size: int) -> None:
        """Prepare ``window`` while the window in flight is written, then wait for that write,
        start this one's and finish the other (see the module docstring). ``size`` payload
        bytes are released once ``window`` is finished or abandoned."""
        storing = pipeline.prepare(window)
        pipeline.dedup.hold(storing.decoded.batch_keys)
        prev = self._inflight
        try:
            if prev is not None and prev.storing.write is not None:
                prev.storing.write.result()  # the previous window's points are stored
        except BaseException:
            pipeline.dedup.settle(storing.decoded.batch_keys, stored=False)
            raise
        pipeline.submit(storing)
        self._inflight = _InFlight(storing, pipeline, size)
        if prev is not None:
            self._finish(prev)

    def drain(self) -> None:
        """Finish the window in flight, if any: acknowledged when this returns."""
        prev, self._inflight = self._inflight, None
        if prev is not None:
            self._finish(prev)

    def abandon(self) -> None:
        """Leaving on an error: the window in flight is not acknowledged (the broker
        redelivers it); the writer's ``close`` waits for its write."""
        prev, self._inflight = self._inflight, None
        if prev is not None:
            prev.pipeline.dedup.settle(prev.storing.decoded.batch_keys, stored=False)
            self._release(prev.size)

    def _finish(self, done: _InFlight) -> None:
        if self._inflight is done:
            self._inflight = None
        keys = done.storing.decoded.batch_keys
        try:
            done.pipeline.finish(done.storing)
        except BaseException:
            done.pipeline.dedup.settle(keys, stored=False)
            raise
        stored = self._acknowledge(done.storing.window)
        done.pipeline.dedup.settle(keys, stored=stored)
        self._release(done.size)

"""The batch window: readings collect here until ``batch_max_readings`` or ``batch_max_delay_s``,
then go to the spool as one batch per lane (beds, queues, crowds)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from edge.reading import EdgeReading
from edge.spool import split_lanes


class Batcher:
    """The open batch window. Used by the publisher loop only."""

    def __init__(
        self,
        *,
        max_readings: int,
        max_delay_s: float,
        store: Callable[[Sequence[EdgeReading]], object],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_readings = max_readings
        self.max_delay_s = max_delay_s
        self._store = store
        self._clock = clock
        self._current: list[EdgeReading] = []
        self._since = 0.0

    def __len__(self) -> int:
        return len(self._current)

    def add(self, readings: Sequence[EdgeReading], *, at: float | None = None) -> int:
        """Add ``readings`` (which arrived at ``at`` on this batcher's clock, default now);
        full windows are closed at once. Returns readings stored."""
        if not readings:
            return 0
        if not self._current:
            self._since = self._clock() if at is None else at
        self._current.extend(readings)
        stored = 0
        while len(self._current) >= self.max_readings:
            window = self._current[: self.max_readings]
            self._current = self._current[self.max_readings :]
            stored += self._flush(window)
            self._since = self._clock()
        return stored

    def wait_s(self, longest: float) -> float:
        """How long the loop may wait for readings before the window is due (at most
        ``longest``)."""
        if not self._current:
            return longest
        return max(0.0, min(longest, self._since + self.max_delay_s - self._clock()))

    def close_if_due(self) -> int:
        """Close the window if it is older than ``max_delay_s``; readings stored."""
        if self._current and self._clock() - self._since >= self.max_delay_s:
            return self.close()
        return 0

    def close(self) -> int:
        """Close the window now (``read_now``, shutdown); returns how many readings it held."""
        window, self._current = self._current, []
        return self._flush(window)

    def _flush(self, window: list[EdgeReading]) -> int:
        for lane in split_lanes(window):
            self._store(lane)
        return len(window)

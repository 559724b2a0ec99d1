"""The decode that any ingester must do, paced by InfluxDB's writes: the (d) modes' bound.

InfluxDB alone has the two cores to itself; an ingester shares them with it. How much of
InfluxDB's rate can the cheapest conceivable ingester keep? One that only parses each payload
with the fastest decoder there is (``orjson.loads``, ``contract.binary.decode_binary_batch``)
and writes bodies already formatted: no broker, no acknowledgements, no aggregation, no line
formatting. ``DecodeGate`` runs that decode on a thread of the limit's process beside its
writers, and holds each body until the readings in it have been decoded, as the ingester
cannot write a line it has not decoded; the decoder runs at most ``ahead`` readings past what
the writers took (the ingester decodes window k+1 while k is written), so it keeps pace with
InfluxDB instead of finishing early and leaving it the machine.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence


def readings_needed(raw_lines: Sequence[int], readings: int) -> list[int]:
    """For each body in write order (its raw line count; 0 for a rollup body), the readings
    that must have been decoded before it is written: the same share of the payloads'
    ``readings`` as the raw lines up to and including it are of all raw lines."""
    total = sum(raw_lines)
    out, seen = [], 0
    for n in raw_lines:
        seen += n
        # ceiling division: never write a line before its reading was decoded
        out.append(-(-readings * seen // total) if total else 0)
    return out


class DecodeGate:
    """A decoder thread over ``payloads`` ((bytes, readings) in backlog order) and the wait of
    the writers on it (:meth:`take`)."""

    def __init__(
        self,
        payloads: Sequence[tuple[bytes, int]],
        decode: Callable[[bytes], object],
        *,
        ahead: int,
    ) -> None:
        self._payloads = payloads
        self._decode = decode
        self._ahead = ahead
        self._cond = threading.Condition()
        self._decoded = 0
        self._taken = 0
        self._wanted = 0
        self._thread = threading.Thread(target=self._run, name="decode-gate", daemon=True)

    @property
    def decoded(self) -> int:
        """Readings decoded so far."""
        return self._decoded

    @property
    def taken(self) -> int:
        """Readings the writers have taken (the most any :meth:`take` asked for)."""
        return self._taken

    def start(self) -> None:
        self._thread.start()

    def join(self) -> None:
        self._thread.join()

    def take(self, needed: int) -> None:
        """Wait until ``needed`` readings are decoded; mark them taken by a writer."""
        with self._cond:
            # the decoder goes on while a writer waits, however far ahead that takes it
            self._wanted = max(self._wanted, needed)
            self._cond.notify_all()
            self._cond.wait_for(lambda: self._decoded >= needed)
            if needed > self._taken:
                self._taken = needed
                self._cond.notify_all()

    def _run(self) -> None:
        for payload, n in self._payloads:
            with self._cond:
                self._cond.wait_for(self._may_decode)
            self._decode(payload)
            with self._cond:
                self._decoded += n
                self._cond.notify_all()

    def _may_decode(self) -> bool:
        return self._decoded < self._wanted or self._decoded - self._taken < self._ahead

"""Per-caller rate limits: a token bucket per key (or per client address for anonymous calls).

A bucket holds at most ten seconds' worth of requests (``rate_per_min / 6``, at least one) and
refills continuously at ``rate_per_min / 60`` tokens a second; a request takes one token. An
empty bucket answers 429 with ``Retry-After``: the whole seconds until a token is back.

The buckets live in this process: several API copies behind a load balancer each enforce the
limit on their own, so a client can reach N times the rate across N copies (ADR 0015). At most
``max_callers`` buckets are kept (least recently used dropped first); a dropped bucket starts
full again, which can only favour a caller, never lock one out.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

#: A bucket holds this many seconds of the caller's rate.
BURST_S = 10.0


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


class RateLimiter:
    """Token buckets by caller. ``clock`` is injectable (monotonic seconds) for tests."""

    def __init__(
        self, *, clock: Callable[[], float] = time.monotonic, max_callers: int = 10_000
    ) -> None:
        self._clock = clock
        self._max = max_callers
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, caller: str, *, rate_per_min: int) -> int:
        """Take one token from ``caller``'s bucket: 0 when allowed, else the whole seconds to
        wait (>= 1) before a token is back. Nothing is taken when refused."""
        rate_s = rate_per_min / 60.0
        capacity = max(1.0, rate_per_min * BURST_S / 60.0)
        now = self._clock()
        with self._lock:
            bucket = self._buckets.pop(caller, None)
            if bucket is None:
                bucket = _Bucket(tokens=capacity, at=now)
            bucket.tokens = min(capacity, bucket.tokens + (now - bucket.at) * rate_s)
            bucket.at = now
            self._buckets[caller] = bucket
            while len(self._buckets) > self._max:
                self._buckets.popitem(last=False)
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return 0
            return max(1, math.ceil((1.0 - bucket.tokens) / rate_s))

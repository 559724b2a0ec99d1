"""How every Pantau client waits before reconnecting or retrying.

Full jitter (uniform in ``[0, min(cap, base * 2**attempt)]``): after a broker or store outage a
thousand gateways and several ingesters come back spread out over time, not in step.
"""

from __future__ import annotations

import random


def backoff_delay(attempt: int, *, base: float, cap: float) -> float:
    """Seconds to wait before try ``attempt`` (0-based); never more than ``cap``."""
    # The exponent is clamped so a long outage cannot overflow the float; jitter only spreads
    # reconnects over time, so it needs no cryptographic randomness.
    return random.uniform(0, min(cap, base * 2 ** min(attempt, 30)))  # noqa: S311

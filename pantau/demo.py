"""``pantau demo``: a whole demo city flowing end to end (placeholder until wired)."""

from __future__ import annotations


def demo() -> None:
    """Run the demo city end to end."""
    raise NotImplementedError

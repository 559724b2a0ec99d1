"""Prometheus text exposition as the benches read it: ``{'name{labels}': value}``."""

from __future__ import annotations

import re

_METRIC = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? ([0-9.eE+-]+|NaN|\+Inf)$")


def parse_exposition(text: str) -> dict[str, float]:
    """Every sample of ``text`` (comment lines and anything else skipped)."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        m = _METRIC.match(line)
        if m:
            out[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return out

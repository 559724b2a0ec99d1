"""What the per-message boundary (cloud/ingest/boundary.py) costs: one window decoded whole,
and the same window with one message whose decoding raises, found by bisection.

    .venv/bin/python -m bench.ingest_boundary                    # about 10 s
    .venv/bin/python -m bench.ingest_boundary --messages 1000 --readings 100

The injected fault raises *after* the part it is in has been decoded (a real bug surfaces
wherever it is, at worst at the end), so the figure is the worst case: the whole window's work
about three times over (the failing parts n + n/2 + ... and the good halves n/2 + n/4 + ...),
plus the first attempt. Without a fault the boundary adds nothing.

Figures are printed, never asserted. Default arguments on the 2-core development machine while
other engineers ran tests on it (2026-11-29)::

    clean          5000 messages,   50000 readings:   158.7 ms
    one fault      5000 messages,   49990 readings:   516.3 ms (3.3x; 1 internal_error)
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Sequence

import orjson

from city import DEMO_CITY, load_registry
from cloud.ingest import CityIndex, DecodedWindow, Message, decode_window
from cloud.ingest.boundary import decode_isolating

NOW = 1_795_000_000_000
TOPIC = "pantau/v1/pasar-johar/gw-johar/readings"
FAULT = b"raise-here"


def _batch(seq: int, readings: int) -> bytes:
    values = {"entries": 5, "exits": 1, "occupancy": 4}
    rows = [
        {"sensor": "crowd-johar-utara", "kind": "crowd", "ts": NOW - 1000 + i, "seq": i}
        | {"values": values}
        for i in range(readings)
    ]
    return orjson.dumps({"v": 1, "gw": "gw-johar", "seq": seq, "sent": NOW, "readings": rows})


def main() -> None:
    """Print the decode time of a clean window and of one with a fault."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--readings", type=int, default=10, help="readings per batch")
    parser.add_argument("--repeat", type=int, default=5, help="best of this many runs")
    args = parser.parse_args()
    index = CityIndex.from_registry(load_registry(DEMO_CITY))
    window = [
        Message(topic=TOPIC, payload=_batch(i, args.readings), received_ms=NOW)
        for i in range(args.messages)
    ]
    faulty = list(window)
    faulty[len(window) // 2] = Message(topic=TOPIC, payload=FAULT, received_ms=NOW)

    def decode(part: Sequence[Message]) -> DecodedWindow:
        out = decode_window(part, index, NOW)
        if any(m.payload is FAULT for m in part):
            raise RuntimeError("injected fault")
        return out

    logging.disable(logging.CRITICAL)  # the boundary logs the injected fault's traceback
    clean_s = 0.0
    for name, w in (("clean", window), ("one fault", faulty)):
        best = float("inf")
        for _ in range(args.repeat):
            started = time.perf_counter()
            out = decode_isolating(w, decode)
            best = min(best, time.perf_counter() - started)
        size = f"{len(w):6d} messages, {len(out.readings):7d} readings"
        line = f"{name:12s} {size}: {best * 1e3:7.1f} ms"
        if name == "clean":
            clean_s = best
        else:
            line += f" ({best / clean_s:.1f}x; {len(out.rejections)} internal_error)"
        print(line)


if __name__ == "__main__":
    main()

"""Small message builders several tests share: a bed reading, a batch of readings and a
gateway status, in the wire contract's JSON shape (contract/payload.py)."""

from __future__ import annotations

from typing import Any

import orjson

from tests.ingest_support import now_ms

#: gw-kariadi's readings topic in the demo city
KARIADI = "pantau/v1/rs-kariadi/gw-kariadi/readings"


def bed(sensor: str, ts: int, cap: int, occ: int, **over: Any) -> dict[str, Any]:
    few = occ < 3  # keep suspect + confirmed <= occupied unless a test breaks it on purpose
    vals = {
        "capacity": cap,
        "occupied": occ,
        "suspect": 0 if few else 1,
        "confirmed": 0 if few else 2,
        "waiting": 3,
    }
    vals.update(over)
    return {"sensor": sensor, "kind": "bed", "ts": ts, "seq": 5, "values": vals}


def batch(gw: str, *readings: dict[str, Any], seq: int = 1) -> dict[str, Any]:
    return {"v": 1, "gw": gw, "seq": seq, "sent": now_ms(), "readings": list(readings)}


#: the gateway whose status the API tests publish
GW = "gw-kariadi"


def status(state: str, ts: int, **extra: Any) -> bytes:
    return orjson.dumps({"v": 1, "gw": GW, "state": state, "ts": ts, **extra})

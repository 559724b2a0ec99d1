"""The batch envelope around spooled reading bytes: what the agent publishes on ``.../readings``.

The spool stores a batch's readings as the JSON array ``contract.payload.encode`` would write
(``edge.reading.encode_readings``); publishing wraps those bytes, unchanged, in the ``Batch``
envelope. A re-sent batch is therefore not encoded again, and a 200-reading batch costs one
small ``orjson.dumps`` instead of a pydantic dump of 200 models. A unit test holds the result
equal, byte for byte, to ``encode(Batch(...))`` and valid under ``Batch``.
"""

from __future__ import annotations

import orjson

from contract.payload import SCHEMA_VERSION


def batch_payload(
    *, gw: str, seq: int, sent: int, clock_offset_ms: int | None, body: bytes
) -> bytes:
    """The ``Batch`` JSON for readings already encoded as the array ``body``."""
    head: dict[str, int | str] = {"v": SCHEMA_VERSION, "gw": gw, "seq": seq, "sent": sent}
    if clock_offset_ms is not None:
        head["clock_offset_ms"] = clock_offset_ms
    # orjson's output for a dict ends with "}": reopen it to append the readings field.
    return orjson.dumps(head)[:-1] + b',"readings":' + body + b"}"

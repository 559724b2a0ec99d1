"""Data as the previous release (git 5ecc6cb) left it, written by a script from that release's
layout rather than committed: its dead-letter store wrote one JSON line per refused message or
reading (``dataclasses.asdict`` of its ``DeadLetter``: received_at, reason, detail, topic,
gateway, index, payload_b64) into one file per UTC day, ``dead-letter-YYYY-MM-DD.jsonl``.
(Its InfluxDB layout, docs/schema.md and cloud/ingest/schema.py, is unchanged since.)"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import orjson

DAY_MS = 86_400_000


@dataclass(frozen=True, slots=True)
class OldDeadLetter:
    """One record of 5ecc6cb's store (field order as its dataclass)."""

    received_at: int
    reason: str
    detail: str
    topic: str
    gateway: str | None
    index: int | None
    payload: bytes

    def line(self) -> bytes:
        return (
            orjson.dumps(
                {
                    "received_at": self.received_at,
                    "reason": self.reason,
                    "detail": self.detail,
                    "topic": self.topic,
                    "gateway": self.gateway,
                    "index": self.index,
                    "payload_b64": base64.b64encode(self.payload).decode("ascii"),
                }
            )
            + b"\n"
        )


def write_old_dead_letters(
    directory: Path, records: list[OldDeadLetter], *, torn_tail: bytes = b""
) -> list[Path]:
    """The day files 5ecc6cb would have written for ``records`` (appended in order);
    ``torn_tail`` is left unterminated at the end of the last file, as a power cut mid-append
    leaves it. Returns the files."""
    directory.mkdir(parents=True, exist_ok=True)
    files: dict[Path, list[bytes]] = {}
    for rec in records:
        day = datetime.fromtimestamp(rec.received_at / 1000, tz=UTC).strftime("%Y-%m-%d")
        files.setdefault(directory / f"dead-letter-{day}.jsonl", []).append(rec.line())
    paths = sorted(files)
    for path in paths:
        path.write_bytes(b"".join(files[path]))
    if torn_tail and paths:
        with paths[-1].open("ab") as fh:
            fh.write(torn_tail)
    return paths


def old_records(t0: int) -> list[OldDeadLetter]:
    """Three refused messages over two UTC days: a batch with two unknown sensors (two
    records of one message), broken JSON, and next day a batch from an unknown gateway."""
    topic = "pantau/v1/rs-kariadi/gw-kariadi/readings"
    batch = b'{"v":1,"gw":"gw-kariadi","seq":7,"sent":1,"readings":[]}'
    return [
        OldDeadLetter(t0, "unknown_sensor", "bed-x not in registry", topic, "gw-kariadi", 0, batch),
        OldDeadLetter(t0, "unknown_sensor", "bed-y not in registry", topic, "gw-kariadi", 1, batch),
        OldDeadLetter(t0 + 5, "invalid_json", "unexpected end", topic, "gw-kariadi", None, b"{"),
        OldDeadLetter(
            t0 + DAY_MS,
            "unknown_gateway",
            "gw-new is not registered",
            "pantau/v1/rs-kariadi/gw-new/readings",
            "gw-new",
            None,
            b'{"v":1,"gw":"gw-new","seq":1,"sent":1,"readings":[]}',
        ),
    ]

"""Ground truth: what each sensor really sent, to compare with what the pipeline shows."""

from __future__ import annotations

import collections
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

from contract import SerialFrame
from firmware_sim.faults import Emission


class GroundTruth:
    """Thread-safe record of the valid frames written to a line (or acknowledged by the
    broker for direct devices). A sensor's entry is the LAST valid frame it sent."""

    def __init__(self, *, scenario: str, seed: int) -> None:
        self.scenario = scenario
        self.seed = seed
        self._lock = threading.Lock()
        self._last: dict[str, SerialFrame] = {}
        self._frames: collections.Counter[str] = collections.Counter()
        self.frames_written = 0
        self.frames_invalid = 0
        self.bytes_written = 0
        self.faults: collections.Counter[str] = collections.Counter()
        self.started_ms = time.time_ns() // 1_000_000
        self.finished = False
        self.frames_unsent = 0
        #: valid frames lost because their line was unplugged when they were due
        self.frames_unplugged = 0

    def record(self, emission: Emission) -> None:
        """Count an emission whose bytes are all written."""
        with self._lock:
            for frame in emission.frames:
                self._last[frame.sensor] = frame
                self._frames[frame.sensor] += 1
            self.frames_written += len(emission.frames)
            self.frames_invalid += emission.invalid
            self.bytes_written += len(emission.data)
            self.faults.update(f.value for f in emission.faults)

    def count_fault(self, name: str) -> None:
        """Count a fault that wrote nothing (silence)."""
        with self._lock:
            self.faults[name] += 1

    def as_dict(self) -> dict[str, Any]:
        """The ground-truth document (see firmware-sim/README.md)."""
        with self._lock:
            sensors = {
                sid: {
                    "kind": f.kind.value,
                    "seq": f.seq,
                    "ts": f.ts_ms,
                    "values": f.values_dict(),
                    "frames": self._frames[sid],
                }
                for sid, f in sorted(self._last.items())
            }
            return {
                "scenario": self.scenario,
                "seed": self.seed,
                "started_ms": self.started_ms,
                "written_ms": time.time_ns() // 1_000_000,
                "finished": self.finished,
                "sensors": sensors,
                "frames_written": self.frames_written,
                "frames_invalid": self.frames_invalid,
                "frames_unsent": self.frames_unsent,
                "frames_unplugged": self.frames_unplugged,
                "bytes_written": self.bytes_written,
                "faults": dict(sorted(self.faults.items())),
            }

    def write(self, path: str | Path) -> None:
        """Write the document atomically (temp file + rename): readers never see half."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self.as_dict(), indent=2, sort_keys=True) + "\n")
        tmp.replace(target)

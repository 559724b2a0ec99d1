"""Fault injection: turn one reading into the bytes a faulty line would carry.

Every decision draws from the sensor's own fault RNG, so a scenario's faults are as
deterministic as its readings. The result says which frames inside the bytes are valid: only
those count in the ground truth.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from contract import SerialFrame, encode_frame
from firmware_sim.scenario import Fault, FaultType

#: Noise bytes never contain ``$`` or a line end, so the decoder's ``garbage_bytes`` counter
#: equals the bytes injected and noise cannot swallow the frame that follows.
_NOISE = bytes(b for b in range(256) if b not in (ord("$"), ord("\n")))


@dataclass(frozen=True, slots=True)
class Emission:
    """What a sensor put on the line for one reading."""

    sensor: str
    data: bytes
    #: the valid frames inside ``data``, in order (a duplicate appears twice)
    frames: tuple[SerialFrame, ...]
    #: frames inside ``data`` that no decoder will accept
    invalid: int = 0
    #: fault types applied, for the ground truth's fault counters
    faults: tuple[FaultType, ...] = ()
    #: unplug: how long the line stays away (wall seconds)
    unplug_s: float = 0.0


class FaultInjector:
    """Applies a scenario's fault rules to one sensor's readings."""

    def __init__(self, *, sensor: str, rules: list[Fault], rng: random.Random) -> None:
        self.sensor = sensor
        self.rules = [r for r in rules if r.sensors is None or sensor in r.sensors]
        self._rng = rng
        #: the sensor's clock error from clock jumps (ms)
        self.clock_offset_ms = 0
        #: the sensor's clock error from drift (ms, fractional until stamped)
        self.drift_ms = 0.0
        self._last_stamp: int | None = None

    def _fires(self, fault: FaultType, step: int) -> Fault | None:
        for rule in self.rules:
            # Draw for every matching rule, fired or not, so one rule's outcome does not
            # shift the random stream of another.
            if rule.type is fault and rule.applies(self.sensor, step):
                hit = rule.probability >= 1.0 or self._rng.random() < rule.probability
                if hit:
                    return rule
        return None

    def stamp(self, step: int, ts_ms: int) -> int:
        """The sensor's clock reading at wall time ``ts_ms`` (after any clock jump and the
        drift accumulated so far)."""
        jump = self._fires(FaultType.CLOCK_JUMP, step)
        if jump is not None:
            self.clock_offset_ms += jump.offset_s * 1000
            # A jump happens once; later steps keep the offset without jumping again.
            self.rules = [r for r in self.rules if r is not jump]
        elapsed = 0 if self._last_stamp is None else ts_ms - self._last_stamp
        self._last_stamp = ts_ms
        for rule in self.rules:
            # Drift is a property of the crystal, not an event: no random draw, so adding a
            # drift rule leaves every other fault's random stream as it was.
            if rule.type is FaultType.DRIFT and rule.applies(self.sensor, step):
                self.drift_ms += elapsed * rule.ppm / 1_000_000
        return ts_ms + self.clock_offset_ms + round(self.drift_ms)

    def resets(self, step: int) -> bool:
        """True if the sensor restarts before reading number ``step`` (seq goes back to 0)."""
        return self._fires(FaultType.RESET, step) is not None

    def apply(self, step: int, frame: SerialFrame) -> Emission:
        """The bytes for ``frame`` at ``step`` with this sensor's faults applied."""
        applied: list[FaultType] = []
        unplug = self._fires(FaultType.UNPLUG, step)
        if unplug is not None:
            # The reading goes into a cable that is no longer there.
            return Emission(self.sensor, b"", (), 0, (FaultType.UNPLUG,), unplug.duration_s)
        if self._fires(FaultType.SILENCE, step) is not None:
            return Emission(self.sensor, b"", (), 0, (FaultType.SILENCE,))
        data = encode_frame(frame)
        prefix = b""
        garbage = self._fires(FaultType.GARBAGE, step)
        if garbage is not None:
            prefix = bytes(self._rng.choice(_NOISE) for _ in range(garbage.bytes))
            applied.append(FaultType.GARBAGE)
        valid = True
        for fault in (FaultType.BAD_CHECKSUM, FaultType.BIT_FLIP, FaultType.TRUNCATE):
            if valid and self._fires(fault, step) is not None:
                data = self._break(fault, data)
                applied.append(fault)
                valid = False
        frames: tuple[SerialFrame, ...] = (frame,) if valid else ()
        if valid and self._fires(FaultType.DUPLICATE, step) is not None:
            data += data
            frames = (frame, frame)
            applied.append(FaultType.DUPLICATE)
        return Emission(self.sensor, prefix + data, frames, 0 if valid else 1, tuple(applied))

    def _break(self, fault: FaultType, data: bytes) -> bytes:
        star = data.rindex(b"*")
        if fault is FaultType.BAD_CHECKSUM:
            crc = int(data[star + 1 : star + 5], 16)
            wrong = (crc + self._rng.randrange(1, 0x10000)) & 0xFFFF
            return data[: star + 1] + f"{wrong:04X}".encode("ascii") + b"\r\n"
        if fault is FaultType.BIT_FLIP:
            # Only body bytes: CRC-16 detects every single-bit error there, and the line end
            # stays intact so the next frame is unharmed.
            pos = self._rng.randrange(1, star)
            flipped = bytearray(data)
            flipped[pos] ^= 1 << self._rng.randrange(8)
            if flipped[pos] == ord("\n"):  # would end the line early: flip another bit
                flipped[pos] ^= 0x80
            return bytes(flipped)
        # Truncate: keep the '$' and part of the body, no checksum, no line end; the decoder
        # sees the next frame's '$' and counts this one as truncated.
        return data[: self._rng.randrange(2, star)]

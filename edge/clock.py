"""The gateway's own clock health: how far its clock is from NTP time, if it can find out.

Readings keep their observation time from the sensor (or the gateway's clock when the sensor
has none), so the gateway's clock error is part of every gateway-stamped reading. The agent
reports that error as ``clock_offset_ms`` (gateway clock minus NTP time) in each batch and in
its status. It is learned from the time daemon the gateway already runs (``chronyc tracking``
or ``timedatectl timesync-status``); a gateway without one reports None (unknown). A probe never
fails the agent: any error means "unknown".
"""

from __future__ import annotations

import logging
import re
import subprocess
import threading
from collections.abc import Callable
from typing import Literal

log = logging.getLogger(__name__)

#: Returns the gateway clock minus NTP time in ms, or None when unknown.
ClockProbe = Callable[[], int | None]
ProbeName = Literal["auto", "chrony", "timesyncd", "off"]

#: A time daemon that does not answer within this is treated as absent.
PROBE_TIMEOUT_S = 2.0

_CHRONY_SYSTEM_TIME = re.compile(
    r"^System time\s*:\s*([0-9.]+) seconds (fast|slow) of NTP time", re.M
)
_CHRONY_UNSYNCED = re.compile(r"^Leap status\s*:\s*Not synchronised", re.M)
_TIMESYNC_OFFSET = re.compile(r"^\s*Offset:\s*([+-]?[0-9.]+)\s*(ns|us|µs|ms|s|min)\s*$", re.M)
_UNIT_MS = {"ns": 1e-6, "us": 1e-3, "µs": 1e-3, "ms": 1.0, "s": 1000.0, "min": 60_000.0}


def parse_chrony_tracking(text: str) -> int | None:
    """The offset in ``chronyc tracking`` output: "System time : X seconds fast of NTP time"
    means the gateway is X s ahead (positive). None if chrony is not synchronised."""
    if _CHRONY_UNSYNCED.search(text):
        return None
    match = _CHRONY_SYSTEM_TIME.search(text)
    if match is None:
        return None
    ms = float(match.group(1)) * 1000.0
    return round(ms if match.group(2) == "fast" else -ms)


def parse_timesync_status(text: str) -> int | None:
    """The offset in ``timedatectl timesync-status`` output. systemd-timesyncd reports the NTP
    offset (server minus local clock), so the gateway clock minus NTP time is its negation."""
    match = _TIMESYNC_OFFSET.search(text)
    if match is None:
        return None
    return round(-float(match.group(1)) * _UNIT_MS[match.group(2)])


def _command_output(argv: list[str]) -> str | None:
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=PROBE_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def chrony_probe() -> int | None:
    """Offset from a running chronyd, or None."""
    out = _command_output(["chronyc", "-n", "tracking"])
    return None if out is None else parse_chrony_tracking(out)


def timesyncd_probe() -> int | None:
    """Offset from a running systemd-timesyncd, or None."""
    out = _command_output(["timedatectl", "timesync-status", "--no-pager"])
    return None if out is None else parse_timesync_status(out)


def _auto_probe() -> int | None:
    offset = chrony_probe()
    return offset if offset is not None else timesyncd_probe()


def _off_probe() -> int | None:
    return None


def probe_for(name: ProbeName) -> ClockProbe:
    """The probe a ``clock_probe`` setting names."""
    return {
        "auto": _auto_probe,
        "chrony": chrony_probe,
        "timesyncd": timesyncd_probe,
        "off": _off_probe,
    }[name]


class ClockWatch:
    """Asks ``probe`` every ``interval_s`` in a daemon thread and keeps the last answer, so the
    publisher loop reads the offset without waiting for a subprocess."""

    def __init__(self, *, probe: ClockProbe, interval_s: float) -> None:
        self._probe = probe
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._offset_ms: int | None = None

    @property
    def offset_ms(self) -> int | None:
        """Gateway clock minus NTP time (ms) as last measured; None when unknown."""
        return self._offset_ms

    def refresh(self) -> int | None:
        """Ask the probe now; a probe that raises counts as "unknown", never as a failure."""
        try:
            offset = self._probe()
        except Exception:  # a probe is a plug-in: whatever it does, the agent keeps running
            log.warning("clock probe failed", exc_info=True)
            offset = None
        self._offset_ms = offset
        return offset

    def start(self) -> None:
        """Probe once in the background, then every ``interval_s``."""
        self._thread = threading.Thread(target=self._run, name="clock-probe", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop probing (does not wait for a probe in progress: it is a daemon thread)."""
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.refresh()
            self._stop.wait(self._interval_s)

"""The gateway's NTP offset: read from what chrony or systemd-timesyncd say, unknown (never an
error) when neither can tell."""

from __future__ import annotations

import pytest

from edge.clock import ClockWatch, parse_chrony_tracking, parse_timesync_status, probe_for

CHRONY = """Reference ID    : C0A80101 (192.168.1.1)
Stratum         : 3
Ref time (UTC)  : Mon Nov 23 13:40:01 2026
System time     : {value} seconds {side} of NTP time
Last offset     : -0.000012000 seconds
RMS offset      : 0.000040000 seconds
Frequency       : 12.345 ppm slow
Leap status     : {leap}
"""

TIMESYNC = """       Server: 192.168.1.1 (ntp.local)
Poll interval: 34min 8s (min: 32s; max 34min 8s)
         Leap: normal
      Version: 4
      Stratum: 2
    Reference: C0A80101
    Precision: 1us (-25)
Root distance: 30.121ms (max: 5s)
       Offset: {offset}
        Delay: 2.345ms
       Jitter: 1.234ms
 Packet count: 12
    Frequency: +12.345ppm
"""


@pytest.mark.parametrize(
    ("value", "side", "expected"),
    [("0.012345678", "fast", 12), ("0.012345678", "slow", -12), ("1.500000000", "slow", -1500)],
)
def test_chrony_fast_is_a_positive_offset(value: str, side: str, expected: int) -> None:
    text = CHRONY.format(value=value, side=side, leap="Normal")
    assert parse_chrony_tracking(text) == expected


def test_an_unsynchronised_chrony_knows_no_offset() -> None:
    text = CHRONY.format(value="0.5", side="fast", leap="Not synchronised")
    assert parse_chrony_tracking(text) is None
    assert parse_chrony_tracking("506 Cannot talk to daemon\n") is None


@pytest.mark.parametrize(
    ("offset", "expected"),
    [("-1.024ms", 1), ("+312us", 0), ("-2.6ms", 3), ("1.5s", -1500), ("+2min", -120_000)],
)
def test_timesyncd_offset_is_server_minus_local_so_it_is_negated(
    offset: str, expected: int
) -> None:
    assert parse_timesync_status(TIMESYNC.format(offset=offset)) == expected


def test_timesyncd_without_a_server_knows_no_offset() -> None:
    assert parse_timesync_status("       Server: n/a\n") is None


def test_a_probe_that_fails_reports_unknown_and_the_watch_keeps_going() -> None:
    answers: list[int | None] = [7, None]

    def flaky() -> int | None:
        if not answers:
            raise RuntimeError("chronyc crashed")
        return answers.pop(0)

    watch = ClockWatch(probe=flaky, interval_s=60)
    assert watch.offset_ms is None  # nothing asked yet: unknown, no I/O in the constructor
    assert [watch.refresh(), watch.refresh(), watch.refresh()] == [7, None, None]
    assert watch.offset_ms is None


def test_the_off_probe_never_knows() -> None:
    assert probe_for("off")() is None

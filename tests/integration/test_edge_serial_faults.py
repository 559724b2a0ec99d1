"""Serial lines at their worst: random fault streams (decoder and a real PTY), a port that
disappears and comes back under a stable path, sensors that fall silent, lose readings, restart
their sequence or have a clock of their own."""

from __future__ import annotations

import contextlib
import os
import queue
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contract import FrameDecoder, Reading, SensorKind, SerialFrame, encode_frame
from edge import EdgeAgent, PortReader, serial_opener
from pantau.services import Mosquitto, free_port
from tests.edge_support import Watcher, bed, make_settings, running, wait_for

# The agent and the CLI read PANTAU_*: these tests must see only their own settings.
pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("no_pantau_env")]

T0 = 1_700_000_000_000
HOUR_MS = 3_600_000


# ---------------------------------------------------------------------- fault streams

FAULTS = ("valid", "garbage", "bit_flip", "truncate", "bad_checksum")


@dataclass(frozen=True)
class Segment:
    """One piece of a line: a frame as sent (valid or broken by ``fault``) or plain noise."""

    fault: str
    frame: SerialFrame
    data: bytes


@st.composite
def bed_frames(draw: st.DrawFn, seq: int) -> SerialFrame:
    capacity = draw(st.integers(1, 500))
    occupied = draw(st.integers(0, capacity))
    suspect = draw(st.integers(0, occupied))
    confirmed = draw(st.integers(0, occupied - suspect))
    return SerialFrame(
        sensor=draw(st.sampled_from(["bed-a", "bed-b.icu", "w_3"])),
        kind=SensorKind.BED,
        seq=seq,
        ts_ms=draw(st.none() | st.integers(T0, T0 + 10**9)),
        values=(capacity, occupied, suspect, confirmed, draw(st.integers(0, 99))),
    )


@st.composite
def fault_streams(draw: st.DrawFn) -> tuple[list[Segment], list[bytes]]:
    """Segments numbered by seq (the last one always valid, so every fault is followed by a
    frame start), and the whole line cut into random chunks as reads would return it."""
    n = draw(st.integers(1, 25))
    segments = []
    for seq in range(n + 1):
        fault = "valid" if seq == n else draw(st.sampled_from(FAULTS))
        frame = draw(bed_frames(seq))
        data = encode_frame(frame)
        if fault == "garbage":  # any bytes at all, '$' and line ends included
            data = draw(st.binary(min_size=1, max_size=300))
        elif fault == "bit_flip":
            pos = draw(st.integers(0, len(data) - 1))
            flipped = bytearray(data)
            flipped[pos] ^= 1 << draw(st.integers(0, 7))
            data = bytes(flipped)
        elif fault == "truncate":  # cut before the line end: the sensor reset mid-frame
            data = data[: draw(st.integers(1, len(data) - 2))]
        elif fault == "bad_checksum":
            star = data.rindex(b"*")
            wrong = (int(data[star + 1 : star + 5], 16) + draw(st.integers(1, 0xFFFF))) & 0xFFFF
            data = data[: star + 1] + f"{wrong:04X}".encode() + b"\r\n"
        segments.append(Segment(fault, frame, data))
    line = b"".join(s.data for s in segments)
    cuts = sorted(draw(st.lists(st.integers(0, len(line)), max_size=12)))
    chunks = [line[a:b] for a, b in zip([0, *cuts], [*cuts, len(line)], strict=True)]
    return segments, [c for c in chunks if c]


def check_decoded(
    segments: list[Segment], decoded: list[SerialFrame], stats: dict[str, int]
) -> None:
    """No valid frame lost, nothing invented or altered, every bad frame counted."""
    seqs = [f.seq for f in decoded]
    assert seqs == sorted(set(seqs)), "frames out of order or doubled"
    for frame in decoded:
        source = segments[frame.seq]
        # A flipped bit can leave a frame decodable (hex 'A' and 'a' are the same digit);
        # then it must decode to exactly what the sensor sent.
        assert source.fault in ("valid", "bit_flip"), source
        assert frame == source.frame
    valid = [s.frame.seq for s in segments if s.fault == "valid"]
    assert set(valid) <= set(seqs), "a valid frame was lost"
    assert stats["frames"] == len(decoded)
    n_crc = sum(s.fault == "bad_checksum" for s in segments)
    n_cut = sum(s.fault == "truncate" for s in segments)
    assert stats["bad_checksum"] >= n_crc
    bad = stats["bad_checksum"] + stats["malformed"] + stats["truncated"] + stats["overlong"]
    assert bad >= n_crc + n_cut


@settings(max_examples=400, deadline=None)
@given(fault_streams())
def test_the_decoder_survives_any_fault_stream_and_keeps_every_valid_frame(
    stream: tuple[list[Segment], list[bytes]],
) -> None:
    segments, chunks = stream
    decoder = FrameDecoder()
    decoded = [frame for chunk in chunks for frame in decoder.feed(chunk)]
    stats = asdict(decoder.stats)
    check_decoded(segments, decoded, stats)


def _as_frame(reading: Reading, received: SerialFrame) -> SerialFrame:
    """The frame a reading came from (a clockless frame's reading carries the gateway time)."""
    return SerialFrame(
        sensor=reading.sensor,
        kind=reading.kind,
        seq=reading.seq,
        ts_ms=reading.ts if received.ts_ms is not None else None,
        values=tuple(reading.values.values()),
    )


@settings(
    max_examples=6,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(fault_streams())
def test_a_port_reader_on_a_real_pty_survives_fault_streams(
    stream: tuple[list[Segment], list[bytes]],
) -> None:
    segments, chunks = stream
    master, slave = os.openpty()
    out: queue.Queue[Reading] = queue.Queue()
    reader = PortReader(
        label="bus0", url=os.ttyname(slave), opener=serial_opener(baudrate=115200), out=out
    )
    try:
        reader.start()
        # is_open turns true once the open returned, after pyserial's flush of the input.
        wait_for(lambda: reader.is_open, "port open")
        for chunk in chunks:
            os.write(master, chunk)
        readings: list[Reading] = []
        last = len(segments) - 1

        def got_last() -> bool:
            with contextlib.suppress(queue.Empty):
                while True:
                    readings.append(out.get_nowait())
            return any(r.seq == last for r in readings)

        wait_for(got_last, "the final frame")
    finally:
        reader.stop()
        os.close(master)
        os.close(slave)
    decoded = [_as_frame(r, segments[r.seq].frame) for r in readings]
    stats = reader.stats()
    assert stats["rejected"] == 0
    check_decoded(segments, decoded, stats)


# ---------------------------------------------------------------------- unplug / replug


def test_a_pty_closed_and_recreated_behind_a_stable_symlink_is_reopened(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    """The technician's USB adapter goes away and comes back (a new /dev/pts node); the agent
    keeps its configured path and resumes without a restart."""
    link = tmp_path / "ttyPANTAU0"

    def plug() -> tuple[int, int]:
        master, slave = os.openpty()
        tmp = tmp_path / "ttyPANTAU0.new"
        tmp.symlink_to(os.ttyname(slave))
        tmp.replace(link)  # atomic: the agent never sees a missing link mid-swap
        return master, slave

    m1, s1 = plug()
    settings_ = make_settings(mosquitto, tmp_path, {"bus0": str(link)})
    agent = EdgeAgent(settings=settings_)
    fds = [m1, s1]
    try:
        with Watcher(mosquitto) as watcher, running(agent):
            for i in range(5):
                os.write(m1, encode_frame(bed("icu-1", i, T0 + i)))
            wait_for(lambda: len(watcher.readings()) == 5, "readings before the unplug")
            os.close(m1)
            os.close(s1)
            fds = []
            link.unlink()
            wait_for(lambda: agent.status().stats["ports_open"] == 0, "port seen gone")
            wait_for(lambda: agent.status().stats["open_failures"] >= 2, "failed reopen attempts")
            m2, s2 = plug()
            fds = [m2, s2]
            # Counted once the open returned, after pyserial's flush of the input.
            wait_for(lambda: agent.status().stats["opens"] == 2, "port reopened via the link")
            for i in range(5, 10):
                os.write(m2, encode_frame(bed("icu-1", i, T0 + i)))
            wait_for(lambda: len(watcher.readings()) == 10, "readings after the replug")
            status = agent.status()
    finally:
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)
    assert [r.seq for r in watcher.readings()] == list(range(10))
    assert status.stats["ports_open"] == 1
    assert status.stats["seq_gaps"] == 0


# ---------------------------------------------------------------------- sensor health


def test_silent_sensors_are_listed_counted_and_exposed_and_come_back(
    mosquitto: Mosquitto, pty_pair: tuple[int, str], tmp_path: Path
) -> None:
    master, path = pty_pair
    metrics_port = free_port()
    settings_ = make_settings(
        mosquitto,
        tmp_path,
        {"bus0": path},
        silent_after_s=0.6,
        silent_intervals=1,
        sensors=["never-heard", "bed-a"],
        metrics_port=metrics_port,
    )
    agent = EdgeAgent(settings=settings_)
    seq = {"bed-a": 0, "bed-b": 0}

    def send(*sensors: str) -> None:
        for name in sensors:
            os.write(master, encode_frame(bed(name, seq[name], None)))
            seq[name] += 1

    def silent_in_status() -> list[str]:
        statuses = watcher.statuses()
        return statuses[-1].sensors_silent if statuses else ["?"]

    def scrape() -> str:
        try:
            return httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=1).text
        except httpx.HTTPError:
            return ""

    with Watcher(mosquitto) as watcher, running(agent):
        send("bed-a", "bed-b")
        wait_for(lambda: len(watcher.readings()) == 2, "both sensors heard")

        def bed_b_falls_silent() -> bool:
            send("bed-a")  # bed-b stops; bed-a keeps reporting
            return silent_in_status() == ["bed-b", "never-heard"]

        wait_for(bed_b_falls_silent, "bed-b and never-heard silent")
        status = watcher.statuses()[-1]
        assert status.stats["sensors_silent"] == 2
        assert status.stats["sensors"] == 2
        wait_for(
            lambda: 'pantau_edge_sensor_silent{gateway="gw-test",sensor="bed-b"} 1.0' in scrape(),
            "metrics: bed-b silent",
        )
        text = scrape()
        assert 'pantau_edge_sensor_silent{gateway="gw-test",sensor="never-heard"} 1.0' in text
        assert 'pantau_edge_sensor_silent{gateway="gw-test",sensor="bed-a"} 0.0' in text
        assert 'pantau_edge_sensors_silent{gateway="gw-test"} 2.0' in text
        send("bed-a", "bed-b")
        wait_for(lambda: silent_in_status() == ["never-heard"], "bed-b back")


def test_sequence_gaps_resets_duplicates_and_sensor_clocks_are_reported_per_sensor(
    mosquitto: Mosquitto, pty_pair: tuple[int, str], tmp_path: Path
) -> None:
    master, path = pty_pair
    metrics_port = free_port()
    settings_ = make_settings(
        mosquitto, tmp_path, {"bus0": path}, clock_jump_s=60, metrics_port=metrics_port
    )
    agent = EdgeAgent(settings=settings_)

    def scrape() -> str:
        try:
            return httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=1).text
        except httpx.HTTPError:
            return ""

    with Watcher(mosquitto) as watcher, running(agent):
        now = time.time_ns() // 1_000_000
        wire = b"".join(
            encode_frame(bed("bed-x", s, now + shift))
            for s, shift in [
                (0, 0),
                (1, 0),
                (2, 0),
                (5, 0),  # 3 and 4 never arrived
                (6, 0),
                (6, 0),  # sent twice
                (0, 2 * HOUR_MS),  # restarted, and came back with its clock 2 h ahead
                (1, 2 * HOUR_MS),
                (3, 2 * HOUR_MS),  # 2 never arrived
            ]
        )
        wire += encode_frame(bed("bed-y", 10, now + 3 * HOUR_MS))  # first heard at seq 10
        wire += encode_frame(bed("bed-y", 11, now + 3 * HOUR_MS))
        wire += encode_frame(bed("bed-z", 0, None))  # no clock: no skew to report
        os.write(master, wire)
        wait_for(lambda: len(watcher.readings()) == 12, "12 readings")
        wait_for(
            lambda: bool(watcher.statuses()) and watcher.statuses()[-1].stats["sensors"] == 3,
            "status with all three sensors",
        )
        wait_for(
            lambda: 'pantau_edge_sensor_seq_gaps{gateway="gw-test",sensor="bed-x"} 3.0' in scrape(),
            "metrics: bed-x gaps",
        )
        text = scrape()
        assert 'pantau_edge_sensor_resets{gateway="gw-test",sensor="bed-x"} 1.0' in text
        assert 'pantau_edge_sensor_clock_skew_seconds{gateway="gw-test",sensor="bed-y"}' in text
        assert 'pantau_edge_clock_jumps{gateway="gw-test"} 1.0' in text
    status = watcher.statuses()[-1]
    assert status.sensor_seq_gaps == {"bed-x": 3}
    assert status.sensor_resets == {"bed-x": 1}
    assert status.stats["seq_gaps"] == 3
    assert status.stats["sensor_resets"] == 1
    assert status.stats["duplicates"] == 1
    assert status.stats["clock_jumps"] == 1
    assert status.stats["sensors_skewed"] == 2
    assert status.sensor_skew_ms.keys() == {"bed-x", "bed-y"}
    assert abs(status.sensor_skew_ms["bed-x"] - 2 * HOUR_MS) < 5_000
    assert abs(status.sensor_skew_ms["bed-y"] - 3 * HOUR_MS) < 5_000

"""The edge agent against a real Mosquitto, real pseudo-terminals and a real TCP serial server."""

from __future__ import annotations

import contextlib
import os
import socket
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from contract import (
    ClockSource,
    encode_frame,
)
from contract.serial_frame import crc16
from contract.topics import Channel
from edge import EdgeAgent, load_settings
from pantau.services import Mosquitto, free_port
from tests.edge_support import (
    GW,
    PASSWORD,
    SITE,
    T0,
    PacedSensor,
    Watcher,
    bed,
    crowd,
    make_settings,
    running,
    wait_for,
)

# The agent and the CLI read PANTAU_*: these tests must see only their own settings.
pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("no_pantau_env")]


def test_frames_on_a_pty_arrive_as_batches_with_exact_readings_in_order(
    mosquitto: Mosquitto, pty_pair: tuple[int, str], tmp_path: Path
) -> None:
    master, path = pty_pair
    frames = [bed("icu-1", i, T0 + i * 1000, occupied=3 + i) for i in range(12)]
    frames += [crowd("gate-a", i, T0 + i * 500) for i in range(12)]
    frames.sort(key=lambda f: f.seq)  # interleave the two sensors on the wire
    settings = make_settings(mosquitto, tmp_path, {"bus0": path})
    with Watcher(mosquitto) as watcher, running(EdgeAgent(settings=settings)):
        wait_for(lambda: len(watcher.statuses()) > 0, "online status")
        for frame in frames:
            os.write(master, encode_frame(frame))
        wait_for(lambda: len(watcher.readings()) == 24, "24 readings")
    batches = watcher.batches()
    assert all(b.gw == GW and b.v == 1 for b in batches)
    seqs = [b.seq for b in batches]
    assert seqs == sorted(set(seqs))  # strictly increasing batch seq
    by_sensor: dict[str, list[tuple[int, int, dict[str, int], ClockSource]]] = {}
    for r in watcher.readings():
        by_sensor.setdefault(r.sensor, []).append((r.seq, r.ts, r.values, r.clock))
    assert by_sensor["icu-1"] == [
        (i, T0 + i * 1000, bed("icu-1", i, 0, 3 + i).values_dict(), ClockSource.SENSOR)
        for i in range(12)
    ]
    assert by_sensor["gate-a"] == [
        (i, T0 + i * 500, crowd("gate-a", i, 0).values_dict(), ClockSource.SENSOR)
        for i in range(12)
    ]


def test_a_frame_without_ts_gets_the_gateway_clock(
    mosquitto: Mosquitto, pty_pair: tuple[int, str], tmp_path: Path
) -> None:
    master, path = pty_pair
    settings = make_settings(mosquitto, tmp_path, {"bus0": path})
    with Watcher(mosquitto) as watcher, running(EdgeAgent(settings=settings)):
        wait_for(lambda: len(watcher.statuses()) > 0, "online status")
        before = time.time_ns() // 1_000_000
        os.write(master, encode_frame(bed("ward-2", 7, None)))
        wait_for(lambda: len(watcher.readings()) == 1, "one reading")
        after = time.time_ns() // 1_000_000
    (reading,) = watcher.readings()
    assert reading.clock is ClockSource.GATEWAY
    assert before <= reading.ts <= after
    assert reading.seq == 7
    raw = orjson.loads(watcher.on(Channel.READINGS)[0])
    assert raw["readings"][0]["clock"] == "gateway"


def test_garbage_bad_checksums_and_truncated_frames_are_counted_and_good_frames_pass(
    mosquitto: Mosquitto, pty_pair: tuple[int, str], tmp_path: Path
) -> None:
    master, path = pty_pair
    good = [bed("icu-1", i, T0 + i) for i in range(5)]
    bad_crc = bytearray(encode_frame(bed("icu-1", 99, T0)))
    bad_crc[-4] = ord("0") if bad_crc[-4] != ord("0") else ord("1")  # corrupt the CRC
    body = b"PNT1,icu-1,sofa,1,,1,2,3"  # a well-checksummed frame of an unknown kind
    malformed = b"$" + body + b"*" + f"{crc16(body):04X}".encode() + b"\r\n"
    truncated = encode_frame(bed("icu-1", 98, T0))[:20]
    wire = (
        b"noise!!"  # 7 garbage bytes before any '$'
        + encode_frame(good[0])
        + bytes(bad_crc)
        + encode_frame(good[1])
        + truncated  # cut off by the next frame's '$'
        + encode_frame(good[2])
        + malformed
        + encode_frame(good[3])
        + b"\x00\xff"  # 2 more garbage bytes
        + encode_frame(good[4])
    )
    settings = make_settings(mosquitto, tmp_path, {"bus0": path})
    with Watcher(mosquitto) as watcher, running(EdgeAgent(settings=settings)):
        wait_for(lambda: len(watcher.statuses()) > 0, "online status")
        os.write(master, wire)
        wait_for(lambda: len(watcher.readings()) == 5, "5 good readings")

        def counted() -> bool:
            stats = watcher.statuses()[-1].stats
            return stats.get("frames") == 5

        wait_for(counted, "status with the decode stats")
    assert [r.seq for r in watcher.readings()] == [0, 1, 2, 3, 4]
    stats = watcher.statuses()[-1].stats
    assert stats["frames"] == 5
    assert stats["bad_checksum"] == 1
    assert stats["malformed"] == 1
    assert stats["truncated"] == 1
    assert stats["garbage_bytes"] == 9
    assert stats["readings_acked"] == 5
    assert watcher.statuses()[-1].sensors_last_seen.keys() == {"icu-1"}


class TcpSerialServer:
    """A tiny serial-over-TCP server (like ser2net) that a test can stop and restart."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.listener: socket.socket | None = None
        self.conn: socket.socket | None = None

    def start(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        sock.listen(1)
        sock.settimeout(15)
        self.listener = sock

    def accept(self) -> None:
        assert self.listener is not None
        self.conn, _ = self.listener.accept()

    def send(self, data: bytes) -> None:
        assert self.conn is not None
        self.conn.sendall(data)

    def stop(self) -> None:
        for sock in (self.conn, self.listener):
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
        self.conn = self.listener = None


def test_a_socket_port_that_goes_away_is_reopened_and_readings_resume(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    server = TcpSerialServer(free_port())
    server.start()
    settings = make_settings(mosquitto, tmp_path, {"net0": f"socket://127.0.0.1:{server.port}"})
    agent = EdgeAgent(settings=settings)
    try:
        with Watcher(mosquitto) as watcher, running(agent):
            server.accept()
            # pyserial's socket:// open() flushes what arrived before it returned.
            wait_for(lambda: agent.status().stats["ports_open"] == 1, "port open")
            for i in range(5):
                server.send(encode_frame(bed("ward-9", i, T0 + i)))
            wait_for(lambda: len(watcher.readings()) == 5, "first 5 readings")
            server.stop()  # the serial server goes away
            wait_for(lambda: agent.status().stats["ports_open"] == 0, "port seen closed")
            wait_for(lambda: agent.status().stats["open_failures"] >= 2, "failed reopen attempts")
            server.start()  # back on the same port
            server.accept()
            wait_for(lambda: agent.status().stats["ports_open"] == 1, "port reopened")
            for i in range(5, 10):
                server.send(encode_frame(bed("ward-9", i, T0 + i)))
            wait_for(lambda: len(watcher.readings()) == 10, "10 readings")
            assert agent.status().stats["opens"] == 2
    finally:
        server.stop()
    assert [r.seq for r in watcher.readings()] == list(range(10))


def test_a_closed_pty_does_not_stop_the_other_ports(mosquitto: Mosquitto, tmp_path: Path) -> None:
    m0, s0 = os.openpty()
    m1, s1 = os.openpty()
    settings = make_settings(mosquitto, tmp_path, {"bus0": os.ttyname(s0), "bus1": os.ttyname(s1)})
    agent = EdgeAgent(settings=settings)
    try:
        with Watcher(mosquitto) as watcher, running(agent):
            wait_for(lambda: agent.status().stats["ports_open"] == 2, "both ports open")
            os.write(m0, encode_frame(bed("a", 0, T0)))
            os.write(m1, encode_frame(bed("b", 0, T0)))
            wait_for(lambda: len(watcher.readings()) == 2, "2 readings")
            os.close(m0)  # the sensor on bus0 is unplugged
            m0 = -1
            wait_for(lambda: agent.status().stats["ports_open"] == 1, "bus0 seen closed")
            for i in range(1, 4):
                os.write(m1, encode_frame(bed("b", i, T0 + i)))
            wait_for(lambda: len(watcher.readings()) == 5, "5 readings")
    finally:
        for fd in (m0, s0, m1, s1):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
    assert sorted((r.sensor, r.seq) for r in watcher.readings()) == [
        ("a", 0),
        ("b", 0),
        ("b", 1),
        ("b", 2),
        ("b", 3),
    ]


def test_every_reading_arrives_across_a_broker_restart(
    mosquitto: Mosquitto, pty_pair: tuple[int, str], tmp_path: Path
) -> None:
    master, path = pty_pair
    settings = make_settings(mosquitto, tmp_path, {"bus0": path}, batch_max_readings=5)
    agent = EdgeAgent(settings=settings)
    sensors = PacedSensor(master, ("icu-1", "hcu-2"), t0=T0)
    written = sensors.written

    with Watcher(mosquitto) as watcher, running(agent):
        wait_for(lambda: len(watcher.statuses()) > 0, "online status")
        sensors.start()
        wait_for(lambda: len(watcher.readings()) >= 40, "readings before the outage")
        mosquitto.stop()
        wait_for(lambda: int(agent.status().stats["spool_depth"]) >= 20, "readings spooled")
        mosquitto.start()
        wait_for(lambda: agent.status().stats["connects"] == 2, "agent reconnected")
        after = len(written)
        wait_for(lambda: len(written) >= after + 20, "readings written after the reconnect")
        sensors.stop()

        def all_arrived() -> bool:
            got = {(r.sensor, r.seq) for r in watcher.readings()}
            return got == set(written)

        wait_for(all_arrived, "every written reading", timeout=20)
        wait_for(lambda: agent.status().stats["spool_depth"] == 0, "spool drained")
    got = {(r.sensor, r.seq) for r in watcher.readings()}
    assert got == set(written)
    assert len(written) >= 60


def test_each_command_gets_an_ack_and_bad_commands_get_error_acks(
    mosquitto: Mosquitto, pty_pair: tuple[int, str], tmp_path: Path
) -> None:
    master, path = pty_pair
    config = tmp_path / "edge.yaml"
    base = {
        "gateway_id": GW,
        "site_id": SITE,
        "mqtt_url": mosquitto.url,
        "mqtt_password": PASSWORD,
        "serial_ports": {"bus0": path},
        "spool_path": str(tmp_path / "gw.spool"),
        "batch_max_delay_s": 60,
        "reconnect_base_s": 0.05,
    }
    config.write_text(orjson.dumps(base).decode())  # JSON is YAML
    mosquitto.add_user(GW, PASSWORD, site=SITE)
    agent = EdgeAgent(settings=load_settings(config), config_file=config)
    with Watcher(mosquitto) as watcher, running(agent):
        wait_for(lambda: len(watcher.statuses()) > 0, "online status")
        for i in range(3):
            os.write(master, encode_frame(bed("icu-1", i, T0 + i)))

        def ask_spool() -> dict[str, Any]:
            n = len(watcher.acks())
            watcher.command(b'{"v":1,"id":"c-spool","name":"spool_state"}')
            wait_for(lambda: len(watcher.acks()) == n + 1, "spool_state ack")
            ack = watcher.acks()[-1]
            assert ack.ok
            assert ack.result is not None
            return ack.result

        wait_for(lambda: ask_spool()["current_batch"] == 3, "3 readings in the open batch")
        state = ask_spool()
        assert (state["spool_dropped_total"], state["spool_depth_bed"]) == (0, 0)
        assert state["spool_high_water"] >= 0
        start = len(watcher.acks())
        watcher.command(b'{"v":1,"id":"c-now","name":"read_now"}')
        wait_for(lambda: len(watcher.readings()) == 3, "flushed batch")
        config.write_text(orjson.dumps({**base, "batch_max_readings": 7}).decode())
        watcher.command(b'{"v":1,"id":"c-reload","name":"reload_config"}')
        watcher.command(b'{"v":1,"id":"c-int","name":"set_interval","args":{"seconds":0.2}}')
        watcher.command(b"{not json")
        watcher.command(b'{"v":1,"id":"c-bogus","name":"self_destruct"}')
        watcher.command(b'{"v":1,"id":"c-int2","name":"set_interval","args":{}}')
        wait_for(lambda: len(watcher.acks()) == start + 6, "6 more acks")
        acks = watcher.acks()[start:]
        # The agent still works after the bad commands, with the new delay (0.2 s, not 60 s).
        os.write(master, encode_frame(bed("icu-1", 3, T0 + 3)))
        wait_for(lambda: len(watcher.readings()) == 4, "reading after the commands")
    assert [(a.id, a.ok) for a in acks] == [
        ("c-now", True),
        ("c-reload", True),
        ("c-int", True),
        ("unknown", False),
        ("c-bogus", False),
        ("c-int2", False),
    ]
    assert acks[0].result == {"flushed": 3}
    assert acks[2].result == {"batch_max_delay_s": 0.2}
    assert acks[1].result is not None
    assert acks[1].result["applied"] == {
        "batch_max_readings": 7,
        "batch_max_delay_s": 60.0,
        "status_interval_s": 30.0,
    }
    assert acks[1].result["restart_required"] == []
    assert acks[3].error is not None
    assert "invalid_json" in acks[3].error
    assert acks[4].error is not None
    assert "name" in acks[4].error
    assert acks[5].error == "schema_violation: set_interval needs args.seconds (a number)"

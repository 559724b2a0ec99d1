"""The edge spool survives SIGKILL mid-backlog: the agent as a ``python -m edge run``
subprocess, killed while draining 180 000 spooled readings, then restarted; every reading
arrives exactly once per sensor, in order, beds first."""

from __future__ import annotations

import collections
import signal
from pathlib import Path

import orjson
import pytest

from contract.payload import Reading
from edge.spool import SpoolLimits, SqliteOutbox
from pantau.services import Mosquitto
from tests.edge_spool_support import (
    SENSORS,
    Recorder,
    assert_exactly_once_in_order,
    frame,
    lanes_in_order,
    reading,
    write,
)
from tests.edge_support import (
    agent_env,
    agent_process,
    wait_for,
)
from tests.link_proxy_support import FreezingProxy

# The agent and the CLI read PANTAU_*: these tests must see only their own settings.
pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("no_pantau_env")]


def fill_spool(path: Path, rounds: int, per_batch: int) -> dict[str, int]:
    """A backlog as an agent in a long outage leaves it: per round one bed, one queue and one
    crowd batch (two sensors sharing the bed and the crowd batches). Returns readings per
    sensor."""
    counts = dict.fromkeys(SENSORS, 0)

    def take(sensors: tuple[str, ...]) -> list[Reading]:
        out = []
        for i in range(per_batch):
            sensor = sensors[i % len(sensors)]
            out.append(reading(sensor, counts[sensor]))
            counts[sensor] += 1
        return out

    box = SqliteOutbox(path=path, limits=SpoolLimits()).open()
    try:
        for _ in range(rounds):
            box.put(take(("icu-1", "hcu-2")))
            box.put(take(("kiosk-1",)))
            box.put(take(("gate-a", "gate-b")))
    finally:
        box.close()
    return counts


def spool_depth(path: Path) -> int:
    box = SqliteOutbox(path=path).open()
    try:
        return box.depth()
    finally:
        box.close()


def test_sigkill_mid_backlog_then_restart_delivers_every_reading_once_in_order(
    mosquitto: Mosquitto, pty_pair: tuple[int, str], tmp_path: Path
) -> None:
    _master, port = pty_pair
    env = agent_env(mosquitto, tmp_path, port)
    env["PANTAU_STATUS_INTERVAL_S"] = "0.2"
    spool = Path(env["PANTAU_SPOOL_PATH"])
    counts = fill_spool(spool, rounds=300, per_batch=200)  # 180 000 readings, 900 batches
    total = sum(counts.values())
    # The first run reaches the broker through a proxy that passes only the first 600 bytes
    # the broker answers (CONNACK, SUBACKs and some 4-byte PUBACKs): the agent deletes the
    # acknowledged batches and then waits with the rest, so the kill lands mid-backlog however
    # fast the machine drains.
    proxy = FreezingProxy(target=(mosquitto.host, mosquitto.port), answer_budget=600)
    proxy.start()
    first_run = env | {"PANTAU_MQTT_URL": proxy.url}
    with Recorder(mosquitto) as rec:
        with agent_process(first_run, tmp_path / "agent1.log") as proc:
            wait_for(
                lambda: 0 < spool_depth_from_status(spool) < total,
                "the first acknowledged batches deleted from the spool",
                timeout=30,
            )
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        proxy.close()
        left = spool_depth(spool)  # opens cleanly: no corruption, the lock went with the process
        assert 0 < left < total, f"the kill was not mid-backlog: {left} of {total} left"
        with agent_process(env, tmp_path / "agent2.log"):
            wait_for(lambda: rec.unique == total, f"all {total} readings", timeout=60)
            wait_for(lambda: spool_depth_from_status(spool) == 0, "spool drained")
    got = rec.readings()
    assert_exactly_once_in_order(got, counts)
    lanes = lanes_in_order(rec.deduped())
    assert lanes == sorted(lanes)  # beds first across the kill too


def test_sigkill_while_pubacks_are_held_keeps_exactly_the_unacknowledged_readings(
    mosquitto: Mosquitto, pty_pair: tuple[int, str], tmp_path: Path
) -> None:
    """Live frames, windows of 20: each wake-up of the loop deletes the batches acknowledged
    since the last one and stores the windows it closed in one transaction (ADR 0036).
    First 500 frames are all acknowledged and deleted. Then the broker still receives every
    batch but its PUBACKs are held back, and 500 more frames are read; the agent is killed.
    The spool holds exactly those 500 readings (1 000 read - 500 acknowledged): none that
    was in flight is gone and none acknowledged is left. After a restart every reading
    arrives once in order, and only batches of the second 500 arrive twice."""
    master, port = pty_pair
    env = agent_env(mosquitto, tmp_path, port)
    env |= {"PANTAU_STATUS_INTERVAL_S": "0.2", "PANTAU_BATCH_MAX_READINGS": "20"}
    spool = Path(env["PANTAU_SPOOL_PATH"])
    proxy = FreezingProxy(target=(mosquitto.host, mosquitto.port))
    proxy.start()
    per_sensor = 200
    half = per_sensor // 2 * len(SENSORS)
    with Recorder(mosquitto) as rec:
        with agent_process(env | {"PANTAU_MQTT_URL": proxy.url}, tmp_path / "a1.log") as proc:
            wait_for(lambda: status_stat(spool, "ports_open") == 1, "the port open")
            wait_for(lambda: status_stat(spool, "link") == "connected", "the link up")
            first, second = range(per_sensor // 2), range(per_sensor // 2, per_sensor)
            write(master, [frame(s, i) for i in first for s in SENSORS])
            wait_for(
                lambda: (
                    (status_stat(spool, "readings_acked"), status_stat(spool, "spool_depth"))
                    == (half, 0)
                ),
                f"{half} readings acknowledged and deleted",
            )
            proxy.hold_answers()
            write(master, [frame(s, i) for i in second for s in SENSORS])
            wait_for(
                lambda: (
                    (status_stat(spool, "frames"), status_stat(spool, "spool_depth"))
                    == (2 * half, half)
                ),
                f"{2 * half} frames read, {half} readings spooled",
            )
            acked = status_stat(spool, "readings_acked")
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        proxy.close()
        assert (acked, spool_depth(spool)) == (half, half)
        first_run = {seq for seq, _rows in rec.deduped()}
        with agent_process(env, tmp_path / "a2.log"):
            wait_for(lambda: rec.unique == 2 * half, f"all {2 * half} readings", timeout=60)
            wait_for(lambda: spool_depth_from_status(spool) == 0, "spool drained")
    assert_exactly_once_in_order(rec.readings(), dict.fromkeys(SENSORS, per_sensor))
    arrivals = collections.Counter(seq for seq, _rows in rec.batches)
    twice = {seq: rows for seq, rows in rec.deduped() if arrivals[seq] > 1}
    assert twice.keys() <= first_run
    assert min(n for rows in twice.values() for _s, _k, n in rows) >= per_sensor // 2


def status_stat(spool: Path, name: str) -> object:
    """A stat from the agent's status file (None before the file or the stat exists)."""
    try:
        doc = orjson.loads(spool.with_name(spool.name + ".status.json").read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    value: object = doc["stats"].get(name)
    return value


def spool_depth_from_status(spool: Path) -> int:
    value = status_stat(spool, "spool_depth")
    return value if isinstance(value, int) else -1

"""The edge spool under outages, a full disk budget, old age and SIGKILL: a real Mosquitto
(stopped and restarted on its port), real pseudo-terminals, the agent in-process and as a
``python -m edge run`` subprocess.

Readings are checked the way the ingester sees them: deduplicated by (gateway, batch seq)."""

from __future__ import annotations

from pathlib import Path

import httpx
import orjson
import pytest
from typer.testing import CliRunner

from contract import SensorKind
from edge import EdgeAgent
from edge.cli import app
from pantau.services import Mosquitto, free_port
from tests.edge_spool_support import (
    LANE,
    SENSORS,
    Recorder,
    assert_exactly_once_in_order,
    frame,
    lanes_in_order,
    stat,
    write,
)
from tests.edge_support import (
    GW,
    SITE,
    make_settings,
    running,
    wait_for,
)

# The agent and the CLI read PANTAU_*: these tests must see only their own settings.
pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("no_pantau_env")]


def test_a_long_outage_backlog_drains_beds_first_exactly_once_with_its_high_water_mark(
    mosquitto: Mosquitto, pty_pair: tuple[int, str], tmp_path: Path
) -> None:
    master, path = pty_pair
    rounds = 30
    settings = make_settings(mosquitto, tmp_path, {"bus0": path}, batch_max_readings=5)
    agent = EdgeAgent(settings=settings)
    with Recorder(mosquitto) as rec:
        mosquitto.stop()  # the uplink is down before the agent starts: all goes to the spool
        with running(agent):
            # The sensors keep reporting through the outage, interleaved on one bus.
            write(master, [frame(s, i) for i in range(rounds) for s in SENSORS])
            total = rounds * len(SENSORS)
            wait_for(lambda: stat(agent, "spool_depth") == total, f"{total} readings spooled")
            assert stat(agent, "batches_sent") == 0
            mosquitto.start()
            wait_for(lambda: len(rec.readings()) == total, "the whole backlog", timeout=30)
            wait_for(
                lambda: rec.last_status()["stats"].get("readings_acked") == total,
                "a status after the drain",
            )
    batches = rec.deduped()
    assert_exactly_once_in_order(rec.readings(), dict.fromkeys(SENSORS, rounds))
    lanes = lanes_in_order(batches)
    assert lanes == sorted(lanes)  # every bed batch, then every queue batch, then crowd
    # Reading by reading: the 60 bed readings, then the 30 queue ones, then the 60 crowd ones.
    kinds = [LANE[SensorKind(kind)] for _sensor, kind, _seq in rec.readings()]
    assert kinds == [0] * 60 + [1] * 30 + [2] * 60
    stats = rec.last_status()["stats"]
    assert stats["spool_high_water"] == total
    assert stats["spool_depth"] == 0
    assert stats["spool_dropped_total"] == 0


def feed_in_phases(
    agent: EdgeAgent, master: int, phases: list[list[tuple[str, int]]], depths: list[int]
) -> None:
    """Write each phase's frames and wait until the spool holds ``depth`` readings, so that
    no batch window mixes two phases."""
    for phase, depth in zip(phases, depths, strict=True):
        write(master, [frame(s, i) for s, i in phase])

        def reached(want: int = depth) -> bool:
            return stat(agent, "spool_depth") == want

        wait_for(reached, f"spool depth {depth}")


CROWD_12 = [(s, i) for i in range(6) for s in ("gate-a", "gate-b")]
QUEUE_6 = [("kiosk-1", i) for i in range(6)]
BED_6 = [("icu-1", i) for i in range(6)]


@pytest.mark.parametrize(
    ("policy", "dropped", "counts"),
    [
        (
            "drop_oldest_lowest_lane",
            # the four oldest crowd readings, never a bed
            {("gate-a", 0), ("gate-b", 0), ("gate-a", 1), ("gate-b", 1)},
            {"spool_dropped_full_crowd": 4, "spool_dropped_crowd": 4},
        ),
        (
            "refuse_new",
            # the newest readings, which here are beds: why it is not the default
            {("icu-1", 2), ("icu-1", 3), ("icu-1", 4), ("icu-1", 5)},
            {"spool_dropped_full_bed": 4, "spool_dropped_bed": 4},
        ),
    ],
)
def test_a_full_spool_applies_its_policy_and_the_drops_are_counted_in_the_status(
    mosquitto: Mosquitto,
    pty_pair: tuple[int, str],
    tmp_path: Path,
    policy: str,
    dropped: set[tuple[str, int]],
    counts: dict[str, int],
) -> None:
    master, path = pty_pair
    metrics_port = free_port()
    settings = make_settings(
        mosquitto,
        tmp_path,
        {"bus0": path},
        spool_max_readings=20,
        spool_full_policy=policy,
        metrics_port=metrics_port,
    )
    agent = EdgeAgent(settings=settings)
    with Recorder(mosquitto) as rec:
        mosquitto.stop()
        with running(agent):
            # 12 crowd, 6 queue, then 6 bed readings: 24 for a spool of 20.
            feed_in_phases(agent, master, [CROWD_12, QUEUE_6, BED_6], [12, 18, 20])
            wait_for(lambda: stat(agent, "spool_dropped_total") == 4, "4 drops")
            mosquitto.start()
            wait_for(
                lambda: rec.last_status()["stats"].get("readings_acked") == 20,
                "a status after the 20 kept readings were acked",
                timeout=30,
            )

            def scraped() -> str:
                return httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=2).text

            # The metrics snapshot is refreshed once a second.
            line = f'pantau_edge_spool_dropped_total{{gateway="{GW}"}} 4.0'
            wait_for(lambda: line in scraped(), "the drops in the metrics")
            metrics = scraped()
    fed = {(s, i) for s, i in CROWD_12 + QUEUE_6 + BED_6}
    got = [(sensor, seq) for sensor, _kind, seq in rec.readings()]
    assert sorted(got) == sorted(fed - dropped)
    stats = rec.last_status()["stats"]
    expected = {
        "spool_dropped_total": 4,
        "spool_dropped_full": 4,
        "spool_dropped_expired": 0,
        "spool_high_water": 20,
        "spool_depth": 0,
        "spool_dropped_full_bed": 0,
        "spool_dropped_full_queue": 0,
        "spool_dropped_full_crowd": 0,
        **counts,
    }
    assert {k: stats[k] for k in expected} == expected
    assert f'pantau_edge_spool_high_water{{gateway="{GW}"}} 20.0' in metrics
    # `pantau edge status` shows the same counts from the file the agent left behind.
    shown = CliRunner().invoke(
        app,
        ["status"],
        env={
            "PANTAU_GATEWAY_ID": GW,
            "PANTAU_SITE_ID": SITE,
            "PANTAU_SERIAL_PORTS": orjson.dumps({"bus0": path}).decode(),
            "PANTAU_SPOOL_PATH": str(settings.spool_path),
        },
    )
    assert shown.exit_code == 0, shown.output
    doc = orjson.loads(shown.stdout)
    assert doc["state"] == "offline"
    assert {k: doc["stats"][k] for k in expected} == expected


def test_readings_older_than_the_age_bound_are_expired_counted_and_never_sent(
    mosquitto: Mosquitto, pty_pair: tuple[int, str], tmp_path: Path
) -> None:
    master, path = pty_pair
    settings = make_settings(mosquitto, tmp_path, {"bus0": path}, spool_max_age_s=2.0)
    agent = EdgeAgent(settings=settings)
    with Recorder(mosquitto) as rec:
        mosquitto.stop()
        with running(agent):
            write(master, [frame(s, i) for i in range(2) for s in ("gate-a", "gate-b", "icu-1")])
            # Nothing is put or sent any more: the agent's own sweep must expire them.
            wait_for(
                lambda: stat(agent, "spool_dropped_expired") == 6, "6 readings expired", timeout=10
            )
            assert stat(agent, "spool_depth") == 0
            mosquitto.start()
            wait_for(lambda: stat(agent, "connects") == 1, "agent connected")
            write(master, [frame("icu-1", 2), frame("icu-1", 3)])
            wait_for(lambda: len(rec.readings()) == 2, "the two fresh readings")
            wait_for(
                lambda: rec.last_status()["stats"].get("readings_acked") == 2,
                "a status after they were acked",
            )
    assert rec.readings() == [("icu-1", "bed", 2), ("icu-1", "bed", 3)]
    stats = rec.last_status()["stats"]
    assert {k: v for k, v in stats.items() if k.startswith("spool_dropped")} == {
        "spool_dropped_expired_bed": 2,
        "spool_dropped_expired_queue": 0,
        "spool_dropped_expired_crowd": 4,
        "spool_dropped_expired": 6,
        "spool_dropped_full_bed": 0,
        "spool_dropped_full_queue": 0,
        "spool_dropped_full_crowd": 0,
        "spool_dropped_full": 0,
        "spool_dropped_bed": 2,
        "spool_dropped_queue": 0,
        "spool_dropped_crowd": 4,
        "spool_dropped_total": 6,
    }

"""The gateway's uplink as the agent sees it: a half-open link noticed within 1.5x keepalive, link
state in the status file, the status message and Prometheus, and backlogs that keep their
observation times. Real Mosquitto, real PTYs, a real TCP proxy on loopback."""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx
import orjson
import pytest
from typer.testing import CliRunner

from contract import ClockSource, GatewayStatus, encode_frame
from contract.mqtturl import BrokerUrl
from edge import EdgeAgent
from edge.cli import app, summary
from edge.mqtt import SILENCE_KEEPALIVES, Link
from pantau.services import Mosquitto, free_port
from tests.edge_support import (
    GW,
    PacedSensor,
    Watcher,
    bed,
    make_settings,
    running,
    wait_for,
)
from tests.link_proxy_support import FreezingProxy

# The agent and the CLI read PANTAU_*: these tests must see only their own settings.
pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("no_pantau_env")]


KEEPALIVE_S = 2
#: The agent's loop wakes when the silence would reach 1.5x keepalive; its record of the silence
#: may trail that mark by the loop's scheduling delay, well under this on a busy machine.
LOOP_SLACK_S = 0.25


def test_a_half_open_link_is_noticed_within_1_5_keepalive_and_nothing_is_lost_or_doubled(
    mosquitto: Mosquitto, pty_pair: tuple[int, str], tmp_path: Path
) -> None:
    master, path = pty_pair
    proxy = FreezingProxy(target=(mosquitto.host, mosquitto.port))
    proxy.start()
    settings = make_settings(
        mosquitto, tmp_path, {"bus0": path}, keepalive_s=KEEPALIVE_S, batch_max_readings=10
    )
    settings = settings.model_copy(update={"mqtt_url": BrokerUrl.parse(proxy.url)})
    agent = EdgeAgent(settings=settings)
    sensors = PacedSensor(master, ("icu-1", "hcu-2"), t0=1_700_000_000_000, pace_s=0.02)
    written = sensors.written
    try:
        with Watcher(mosquitto) as watcher, running(agent):
            wait_for(lambda: agent.link.state is Link.CONNECTED, "link connected")
            sensors.start()
            wait_for(lambda: len(watcher.readings()) >= 40, "readings before the freeze")
            proxy.freeze()
            window = SILENCE_KEEPALIVES * KEEPALIVE_S
            wait_for(
                lambda: agent.link.state is not Link.CONNECTED,
                "the agent to notice the half-open link",
                timeout=window + 5.0,
            )
            # The agent's own record of the silence it saw when it gave up on the link: more
            # than 1.5x keepalive (a healthy link is never dropped), and within one loop tick
            # of it (the loop wakes when the silence would reach the window).
            assert window < agent.link.stall_silence_s <= window + LOOP_SLACK_S
            assert agent.status().stats["link_stall_silence_s"] == round(
                agent.link.stall_silence_s, 3
            )
            assert agent.link.stalls == 1
            # Why the link was lost; a quick failed reconnect may already have set ``reason``.
            assert agent.link.loss_reason.startswith("no packet from the broker for")
            # Reconnect attempts through the frozen proxy fail (the proxy cuts them at once).
            wait_for(
                lambda: not agent.link.reason.startswith("no packet"),
                "a failed reconnect attempt",
                timeout=20,
            )
            assert agent.link.state is not Link.CONNECTED
            assert agent.link.loss_reason.startswith("no packet from the broker for")
            assert agent.status().stats["link_loss_reason"] == agent.link.loss_reason
            proxy.heal()
            wait_for(lambda: agent.link.state is Link.CONNECTED, "link back", timeout=20)
            assert agent.link.reconnects == 1
            assert agent.link.losses == 1
            after = len(written)
            wait_for(lambda: len(written) >= after + 20, "readings written after the reconnect")
            sensors.stop()

            def all_arrived() -> bool:
                return {(r.sensor, r.seq) for r in watcher.readings()} == set(written)

            wait_for(all_arrived, "every written reading", timeout=20)
            wait_for(lambda: agent.status().stats["spool_depth"] == 0, "spool drained")
    finally:
        sensors.stop()
        proxy.close()
    # Exactly once after the ingester's dedup: a batch may arrive twice (its PUBACK died in
    # the frozen link) but only whole, under the same batch seq and with the same readings.
    by_seq: dict[int, list[tuple[str, int]]] = {}
    for batch in watcher.batches():
        readings = [(r.sensor, r.seq) for r in batch.readings]
        assert by_seq.setdefault(batch.seq, readings) == readings
    delivered = [key for readings in by_seq.values() for key in readings]
    assert sorted(delivered) == sorted(written)
    assert len(delivered) == len(set(delivered)) == len(written) >= 100


def test_status_file_message_and_metrics_say_when_the_uplink_is_down(
    mosquitto: Mosquitto, pty_pair: tuple[int, str], tmp_path: Path
) -> None:
    _master, path = pty_pair
    metrics_port = free_port()
    settings = make_settings(mosquitto, tmp_path, {"bus0": path}, metrics_port=metrics_port)
    status_file = settings.status_file

    def from_file() -> GatewayStatus | None:
        try:
            return GatewayStatus.model_validate_json(status_file.read_bytes())
        except (OSError, ValueError):
            return None

    def scrape() -> str:
        try:
            return httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=1).text
        except httpx.HTTPError:
            return ""

    mosquitto.stop()
    agent = EdgeAgent(settings=settings)
    with running(agent):
        wait_for(
            lambda: (st := from_file()) is not None and st.stats["link"] == "down",
            "status file saying the uplink is down",
        )
        down = from_file()
        assert down is not None
        assert down.stats["link_reason"] != ""
        assert "UPLINK DOWN since" in summary(orjson.loads(status_file.read_bytes()))
        config = tmp_path / "edge.yaml"
        config.write_text(orjson.dumps(settings.model_dump(mode="json")).decode())  # JSON is YAML
        shown = CliRunner().invoke(app, ["status", "--config", str(config), "--summary"])
        assert shown.exit_code == 0, shown.output
        assert f"{GW}: agent online" in shown.output
        assert "UPLINK DOWN since" in shown.output
        wait_for(
            lambda: 'pantau_edge_link_up{gateway="gw-test"} 0.0' in scrape(), "metrics: link down"
        )
        assert 'pantau_edge_link_state{gateway="gw-test",state="down"} 1.0' in scrape()
        mosquitto.start()
        with Watcher(mosquitto) as watcher:
            wait_for(
                lambda: (st := from_file()) is not None and st.stats["link"] == "connected",
                "status file saying the uplink is up",
            )
            wait_for(
                lambda: 'pantau_edge_link_up{gateway="gw-test"} 1.0' in scrape(),
                "metrics: link up",
            )
            wait_for(lambda: len(watcher.statuses()) > 0, "status message")
            published = watcher.statuses()[-1]
    up = from_file()
    assert up is not None
    assert published.stats["link"] == "connected"
    assert published.stats["link_reconnects"] == 0  # the first connect is not a reconnect
    assert published.stats["link_losses"] == 0
    assert "UPLINK CONNECTED since" in summary(published.model_dump(mode="json"))


def test_a_backlog_sent_hours_later_keeps_its_observation_times_and_the_clock_offset(
    mosquitto: Mosquitto, pty_pair: tuple[int, str], tmp_path: Path
) -> None:
    master, path = pty_pair
    shift_ms = 0

    def gateway_clock() -> int:
        return time.time_ns() // 1_000_000 + shift_ms

    settings = make_settings(mosquitto, tmp_path, {"bus0": path})
    agent = EdgeAgent(settings=settings, clock=gateway_clock, clock_probe=lambda: -1234)
    # The watcher's persistent session exists before the outage, so the backlog is queued for
    # it however soon the agent reconnects (no race with the watcher's own subscription).
    watcher = Watcher(mosquitto)
    with watcher:
        pass
    mosquitto.stop()
    observed = 1_700_000_000_000
    with running(agent):
        before = gateway_clock()
        for i in range(3):
            os.write(master, encode_frame(bed("icu-1", i, observed + i * 1000)))
        os.write(master, encode_frame(bed("clockless-1", 0, None)))
        wait_for(lambda: agent.status().stats["spool_depth"] == 4, "4 readings spooled")
        received_by = gateway_clock()
        shift_ms = 3 * 3600 * 1000  # three hours pass before the uplink is back
        mosquitto.start()
        with watcher:
            wait_for(lambda: len(watcher.readings()) == 4, "the backlog")
            wait_for(lambda: len(watcher.statuses()) > 0, "status message")
    by_sensor = {(r.sensor, r.seq): r for r in watcher.readings()}
    assert [(by_sensor["icu-1", i].ts, by_sensor["icu-1", i].clock) for i in range(3)] == [
        (observed + i * 1000, ClockSource.SENSOR) for i in range(3)
    ]
    clockless = by_sensor["clockless-1", 0]
    assert clockless.clock is ClockSource.GATEWAY
    assert before <= clockless.ts <= received_by  # stamped on receipt, not on sending
    for batch in watcher.batches():
        assert batch.sent >= before + shift_ms
        assert batch.clock_offset_ms == -1234
    status = watcher.statuses()[-1]
    assert status.clock_offset_ms == -1234
    assert status.gw == GW

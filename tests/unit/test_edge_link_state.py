"""The uplink state the agent reports: since when it is up or down, how often it was lost."""

from __future__ import annotations

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edge.mqtt import Link, LinkState, LinkWatch


def test_down_since_is_when_the_link_was_lost_not_the_latest_attempt() -> None:
    link = LinkState(since_ms=1_000, since_mono=1.0)
    assert link.stats(1_500)["link"] == "connecting"
    link.down("refused", 2_000, 2.0)  # never up yet: down since the agent started
    assert (link.state, link.since_ms, link.losses) == (Link.DOWN, 1_000, 0)
    link.connecting()
    link.up(3_000, 3.0)
    assert (link.state, link.since_ms, link.reconnects, link.reason) == (
        Link.CONNECTED,
        3_000,
        0,
        "",
    )
    link.down("no packet from the broker for 3.0s", 9_000, 9.0, stalled=True)
    link.connecting()
    link.down("refused", 10_000, 10.0)  # a failed retry does not move "down since"
    link.connecting()
    assert link.stats(12_000) == {
        "link": "connecting",
        "link_since": 9_000,
        "link_for_s": 3.0,
        "link_reconnects": 0,
        "link_losses": 1,
        "link_stalls": 1,
        "link_reason": "refused",
    }
    link.up(13_000, 13.0)
    assert (link.reconnects, link.since_ms, link.since_mono) == (1, 13_000, 13.0)


def test_the_watch_counts_only_packets_received_from_the_broker() -> None:
    now = [100.0]
    watch = LinkWatch(clock=lambda: now[0])
    client = mqtt.Client(CallbackAPIVersion.VERSION2)
    watch.attach(client)
    assert client.on_log is not None
    now[0] = 101.0
    client.on_log(client, None, mqtt.MQTT_LOG_DEBUG, "Sending PUBLISH (d0, q1, r0, m1)")
    assert watch.silent_for(102.0) == 2.0
    client.on_log(client, None, mqtt.MQTT_LOG_DEBUG, "Received PINGRESP")
    assert (watch.silent_for(102.0), watch.inbound_packets) == (1.0, 1)

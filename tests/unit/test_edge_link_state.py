"""The uplink state the agent reports: since when it is up or down, how often it was lost."""

from __future__ import annotations

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
    link.down("no packet from the broker for 3.02s", 9_000, 9.0, silence_s=3.02)
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
        "link_stall_silence_s": 3.02,
        "link_reason": "refused",
        "link_loss_reason": "no packet from the broker for 3.02s",
    }
    link.up(13_000, 13.0)
    assert (link.reconnects, link.since_ms, link.since_mono) == (1, 13_000, 13.0)
    # Back up: nothing is wrong now, and the last loss is still on record.
    assert (link.reason, link.loss_reason) == ("", "no packet from the broker for 3.02s")


def test_a_failed_retry_does_not_overwrite_why_the_link_was_lost() -> None:
    """The reason a connected link was lost survives the failed reconnect attempts after it
    (the flaky half-open test read the latest attempt's reason instead)."""
    link = LinkState()
    link.up(1_000, 1.0)
    link.down("no packet from the broker for 3.01s", 4_000, 4.0, silence_s=3.01)
    for attempt in range(3):
        link.connecting()
        link.down(f"disconnected: attempt {attempt}", 5_000 + attempt, 5.0 + attempt)
    assert (link.loss_reason, link.reason, link.losses) == (
        "no packet from the broker for 3.01s",
        "disconnected: attempt 2",
        1,
    )


def test_the_watch_measures_silence_from_the_last_time_the_broker_was_heard() -> None:
    now = [100.0]
    watch = LinkWatch(clock=lambda: now[0])
    now[0] = 101.5
    assert watch.silent_for(102.0) == 2.0  # silent since the watch began (the attempt)
    watch.heard()
    assert (watch.silent_for(102.0), watch.inbound_reads) == (0.5, 1)

"""Scale-out members drain a backlog (issue 13): real Mosquitto, real InfluxDB, and every member
a real ``python -m cloud.ingest run`` process. The backlog is queued in the members' persistent
sessions while they are stopped, as after an outage (bench/drain_support.py).

The backlogs are sized to stall today's members before the fix (docs/adr/0006, "The stall"):
a Receive Maximum of 500 makes Mosquitto's overshoot fill the consumer queue (2 x 500) within
a few thousand single readings, and a 512 KiB held-bytes budget is full after ~40 JSON batches.
"""

from __future__ import annotations

import secrets
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import yaml

from bench.drain_support import MEMBER_PREFIX, Member, fill_backlog, member, open_accounts, stored
from bench.ingest_load import gateway_loads, synthetic_province
from cloud.influx import InfluxHTTP
from pantau.services import InfluxDB, Mosquitto, free_port
from tests.ingest_support import latest_aggregates, raw_count, wait_for
from tests.link_proxy_support import FreezingProxy

pytestmark = pytest.mark.integration

#: The members' settings that make a small backlog reproduce the stall (module docstring).
SMALL_BUFFERS = {
    "mqtt_receive_maximum": "500",
    "held_max_bytes": str(512 * 1024),
    "window_max_bytes": str(256 * 1024),
    "shutdown_timeout_s": "5",
}
SHUTDOWN_TIMEOUT_S = 5.0
GATEWAYS, SENSORS_PER_GATEWAY = 10, 100
#: Mid-backlog tests: InfluxDB request bytes a member's proxy passes before it holds the rest.
#: It covers the start-up queries and a few windows' writes (a window of WINDOW_MESSAGES single
#: readings is ~20 KB of raw lines plus its rollups), so a member stores part of its ~5 000
#: readings, and it bounds what two members can have stored when stopped: every raw line is
#: over 100 bytes, so 2 x 160 KiB hold at most ~3 300 of the 10 000 readings sent.
INFLUX_BUDGET = 160 * 1024
#: Mid-backlog tests: a window's write stays far below INFLUX_BUDGET, and the window a SIGKILL
#: interrupts is short (its messages come back as crash suspects, processed one at a time:
#: cloud/ingest/guard.py).
WINDOW_MESSAGES = "100"


@dataclass(kw_only=True)
class Province:
    """Broker, InfluxDB and registry of a 1 000-sensor synthetic province."""

    mosquitto: Mosquitto
    influxdb: InfluxDB
    doc: dict[str, Any]
    city_file: Path
    passwords: dict[str, str]
    workdir: Path

    def member(
        self, index: int, *, db: str, group: str | None = "pantau-ingest", **settings: str
    ) -> Member:
        """A member (``group`` None: a lone ingester); ``settings`` as in :func:`member`."""
        open_accounts(self.mosquitto, {"gateways": []}, self.passwords, [f"{MEMBER_PREFIX}{index}"])
        return member(
            index,
            mqtt_url=self.mosquitto.url,
            password=self.passwords["pantau-ingest"],
            influx_url=self.influxdb.url,
            db=db,
            city_file=self.city_file,
            workdir=self.workdir,
            metrics_port=free_port(),
            group=group,
            # The lone ingester is only the reference: default buffers (it drains faster).
            **(SMALL_BUFFERS if group is not None else {}) | settings,
        )

    def stalling_influx(self, m: Member, proxies: list[FreezingProxy]) -> FreezingProxy:
        """From its next start, ``m`` writes to InfluxDB through a proxy of its own that
        passes :data:`INFLUX_BUDGET` request bytes, then holds its writes until lifted."""
        influx = self.influxdb
        proxy = FreezingProxy(target=(influx.host, influx.port), request_budget=INFLUX_BUDGET)
        proxy.start()
        proxies.append(proxy)
        m.env["PANTAU_INFLUX_URL"] = proxy.http_url
        return proxy

    def fill(self, *, channel: str, messages: int, batch: int = 100) -> int:
        loads = gateway_loads(self.doc, self.passwords)
        m = self.mosquitto
        return fill_backlog(m.host, m.port, loads, channel=channel, messages=messages, batch=batch)

    def influx(self, db: str) -> InfluxHTTP:
        return InfluxHTTP(url=self.influxdb.url, database=db)


@pytest.fixture
def province(mosquitto: Mosquitto, influxdb: InfluxDB, tmp_path: Path) -> Province:
    doc = synthetic_province(gateways=GATEWAYS, sensors_per_gateway=SENSORS_PER_GATEWAY)
    city_file = tmp_path / "province.yaml"
    city_file.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False))
    passwords = {"pantau-ingest": mosquitto.users["pantau-ingest"]}
    for gw in doc["gateways"]:
        passwords[gw["id"]] = secrets.token_urlsafe(8)
    open_accounts(mosquitto, doc, passwords, [])
    return Province(
        mosquitto=mosquitto,
        influxdb=influxdb,
        doc=doc,
        city_file=city_file,
        passwords=passwords,
        workdir=tmp_path,
    )


@pytest.fixture
def processes() -> Iterator[list[Member]]:
    """Members started by a test; any still running at its end are killed."""
    started: list[Member] = []
    yield started
    for m in started:
        m.kill()


@pytest.fixture
def proxies() -> Iterator[list[FreezingProxy]]:
    """InfluxDB proxies made by a test (Province.stalling_influx); closed at its end."""
    made: list[FreezingProxy] = []
    yield made
    for p in made:
        p.close()


def launch(members: list[Member], processes: list[Member]) -> None:
    """Start ``members`` without waiting for their subscriptions: on a resumed session the
    broker sends the backlog before the SUBACK, so a member that holds ``held_max_bytes``
    (its InfluxDB slow or held by a proxy) reads the SUBACK only once it has stored that much."""
    for m in members:
        if m not in processes:
            processes.append(m)
        m.start()


def start(members: list[Member], processes: list[Member]) -> None:
    """Start ``members`` and wait until each has its subscriptions (with no backlog queued)."""
    launch(members, processes)
    for m in members:
        wait_for(m.subscribed, f"{m.client_id} to subscribe", timeout=60)


def stored_by(m: Member) -> float:
    """Readings ``m`` stored since it started (0 while it does not answer)."""
    return m.metrics().get("pantau_ingest_readings_stored_total", 0.0)


def stalled(m: Member, proxy: FreezingProxy) -> bool:
    """``m`` stored part of its share and its next write waits at its proxy's budget."""
    return proxy.holding.is_set() and stored_by(m) > 0


def signalled(m: Member, signum: int, times: int) -> bool:
    """``m``'s log shows that its handler took ``signum`` for the ``times``-th time (the log
    holds every run of the member)."""
    return m.log_text().count(f"signal {signum}: flushing and stopping") >= times


def stop(members: list[Member]) -> None:
    """SIGTERM and wait for a clean exit (the sessions stay at the broker)."""
    for m in members:
        m.signal(signal.SIGTERM)
    for m in members:
        assert m.wait(30) == 0, m.log_text()[-2000:]


def unacked(m: Member) -> float:
    return m.metrics().get("pantau_ingest_unacked_messages", -1.0)


@pytest.mark.parametrize(
    ("channel", "messages"),
    [("reading", 10_000), ("json", 400)],
    ids=["single-readings", "json-batches"],
)
def test_two_members_drain_a_backlog_to_exactly_what_was_sent_with_a_lone_ingesters_rollups(
    province: Province, processes: list[Member], channel: str, messages: int
) -> None:
    """Two members and, for comparison, a lone ingester subscribe, stop, and find a backlog
    queued in their sessions when they come back. Every reading is stored exactly once per
    database, both members took part, nothing stays unacknowledged, and the members' newest
    rollups equal the lone ingester's."""
    members = [province.member(i, db="two") for i in (0, 1)]
    lone = province.member(9, db="one", group=None)
    start([*members, lone], processes)
    stop([*members, lone])
    sent = province.fill(channel=channel, messages=messages)
    assert sent == messages * (1 if channel == "reading" else 100)

    launch([*members, lone], processes)
    wait_for(lambda: stored(members) >= sent, f"the members to store {sent} readings", 120)
    wait_for(lambda: stored([lone]) >= sent, f"the lone ingester to store {sent} readings", 120)
    wait_for(lambda: all(unacked(m) == 0 for m in members), "every window acknowledged", 30)
    with province.influx("two") as two, province.influx("one") as one:
        assert (raw_count(two), raw_count(one)) == (sent, sent)
        assert stored(members) == sent
        assert all(m.metrics()["pantau_ingest_readings_stored_total"] > 0 for m in members)
        aggregates = latest_aggregates(one)
        assert len(aggregates) > 0
        wait_for(lambda: latest_aggregates(two) == aggregates, "the members' rollups", 30)
    stop([*members, lone])


def test_a_member_killed_mid_backlog_loses_nothing_the_other_and_its_restart_store_all(
    province: Province, processes: list[Member], proxies: list[FreezingProxy]
) -> None:
    """SIGKILL one member while the backlog drains: the survivor keeps storing, and once the
    killed member is back (same client id, same session) every reading is stored exactly.

    The kill lands mid-backlog on any machine: each member's writes to InfluxDB pass a proxy
    that holds them after INFLUX_BUDGET bytes, and member 0 is killed while its next write
    waits there, with a window received and not acknowledged."""
    members = [province.member(i, db="two", window_max_messages=WINDOW_MESSAGES) for i in (0, 1)]
    start(members, processes)
    stop(members)
    sent = province.fill(channel="reading", messages=10_000)
    gates = [province.stalling_influx(m, proxies) for m in members]

    launch(members, processes)
    wait_for(lambda: stalled(members[0], gates[0]),
             "member 0 to store part of its share and wait at its InfluxDB budget", 60)  # fmt: skip
    members[0].kill()
    with province.influx("two") as two:
        at_kill = raw_count(two)
        assert 0 < at_kill < sent, f"killed mid-backlog: {at_kill} of {sent}"
        survivor_before = stored_by(members[1])
        gates[1].lift()  # InfluxDB takes the survivor's writes again
        wait_for(lambda: stored_by(members[1]) > survivor_before,
                 "the survivor to keep storing", 60)  # fmt: skip
        gates[0].lift()
        launch(members[:1], processes)
        wait_for(lambda: raw_count(two) == sent, f"{sent} readings stored", 120)
        wait_for(lambda: all(unacked(m) == 0 for m in members), "every window acked", 30)
        assert raw_count(two) == sent
    stop(members)


def test_sigterm_mid_backlog_every_member_exits_within_the_bound_and_a_restart_loses_nothing(
    province: Province, processes: list[Member], proxies: list[FreezingProxy]
) -> None:
    """SIGTERM both members while they drain: each exits 0 within PANTAU_SHUTDOWN_TIMEOUT_S
    (5 s here); after a restart every reading is stored exactly once.

    The signal lands mid-backlog on any machine: each member's writes to InfluxDB pass a proxy
    that holds them after INFLUX_BUDGET bytes, so each member is signalled with a write held,
    its buffers full and its MQTT thread blocked on them (the stall of docs/adr/0006). Once
    both handlers have the signal the proxies cut InfluxDB's connections, as in an outage: a
    member gives up the window in hand (unacknowledged, so nothing unstored is lost) instead
    of spending its grace period on the rest of its ~5 000 readings."""
    members = [province.member(i, db="two", window_max_messages=WINDOW_MESSAGES) for i in (0, 1)]
    start(members, processes)
    stop(members)
    sent = province.fill(channel="reading", messages=10_000)
    gates = [province.stalling_influx(m, proxies) for m in members]

    launch(members, processes)
    for m, gate in zip(members, gates, strict=True):
        wait_for(partial(stalled, m, gate), f"{m.client_id} to store and wait at its budget", 60)
    with province.influx("two") as two:
        held = raw_count(two)
        for m in members:
            m.signal(signal.SIGTERM)
        deadline = time.monotonic() + SHUTDOWN_TIMEOUT_S
        for m in members:  # the first run's stop() was the first SIGTERM
            wait_for(partial(signalled, m, signal.SIGTERM, 2), f"{m.client_id} stopping", 5)
        for gate in gates:
            gate.cut()
        codes = [m.wait(max(0.0, deadline - time.monotonic())) for m in members]
        assert codes == [0, 0], [m.log_text()[-2000:] for m in members]
        at_stop = raw_count(two)
        # at_stop < sent whatever happened after the signal: the proxies passed 2 x INFLUX_BUDGET
        assert 0 < held <= at_stop < sent, f"stopped mid-backlog: {held}, {at_stop} of {sent}"
        for m in members:
            m.env["PANTAU_INFLUX_URL"] = province.influxdb.url
        launch(members, processes)
        wait_for(lambda: raw_count(two) == sent, f"{sent} readings stored", 120)
        wait_for(lambda: all(unacked(m) == 0 for m in members), "every window acked", 30)
        assert raw_count(two) == sent
    stop(members)

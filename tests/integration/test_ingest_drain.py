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
from pathlib import Path
from typing import Any

import pytest
import yaml

from bench.drain_support import MEMBER_PREFIX, Member, fill_backlog, member, open_accounts, stored
from bench.ingest_load import gateway_loads, synthetic_province
from cloud.influx import InfluxHTTP
from pantau.services import InfluxDB, Mosquitto, free_port
from tests.ingest_support import latest_aggregates, raw_count, wait_for

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


@dataclass(kw_only=True)
class Province:
    """Broker, InfluxDB and registry of a 1 000-sensor synthetic province."""

    mosquitto: Mosquitto
    influxdb: InfluxDB
    doc: dict[str, Any]
    city_file: Path
    passwords: dict[str, str]
    workdir: Path

    def member(self, index: int, *, db: str, group: str | None = "pantau-ingest") -> Member:
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
            **(SMALL_BUFFERS if group is not None else {}),
        )

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


def start(members: list[Member], processes: list[Member]) -> None:
    """Start ``members`` and wait until each has its subscriptions."""
    for m in members:
        if m not in processes:
            processes.append(m)
        m.start()
    for m in members:
        wait_for(m.subscribed, f"{m.client_id} to subscribe", timeout=60)


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

    start([*members, lone], processes)
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
    province: Province, processes: list[Member]
) -> None:
    """SIGKILL one member while the backlog drains: the survivor keeps storing, and once the
    killed member is back (same client id, same session) every reading is stored exactly."""
    members = [province.member(i, db="two") for i in (0, 1)]
    start(members, processes)
    stop(members)
    sent = province.fill(channel="reading", messages=10_000)

    start(members, processes)
    wait_for(lambda: members[0].metrics().get("pantau_ingest_readings_stored_total", 0) > 0,
             "member 0 to store part of its share", 60)  # fmt: skip
    members[0].kill()
    survivor_before = members[1].metrics()["pantau_ingest_readings_stored_total"]
    with province.influx("two") as two:
        assert raw_count(two) < sent  # killed mid-backlog
        wait_for(lambda: members[1].metrics()["pantau_ingest_readings_stored_total"]
                 > survivor_before, "the survivor to keep storing", 60)  # fmt: skip
        start(members[:1], processes)
        wait_for(lambda: raw_count(two) == sent, f"{sent} readings stored", 120)
        wait_for(lambda: all(unacked(m) == 0 for m in members), "every window acked", 30)
        assert raw_count(two) == sent
    stop(members)


def test_sigterm_mid_backlog_every_member_exits_within_the_bound_and_a_restart_loses_nothing(
    province: Province, processes: list[Member]
) -> None:
    """SIGTERM both members while they drain: each exits 0 within PANTAU_SHUTDOWN_TIMEOUT_S
    (5 s here); after a restart every reading is stored exactly once."""
    members = [province.member(i, db="two") for i in (0, 1)]
    start(members, processes)
    stop(members)
    sent = province.fill(channel="reading", messages=10_000)

    start(members, processes)
    wait_for(lambda: stored(members) > 0, "the members to start storing", 60)
    for m in members:
        m.signal(signal.SIGTERM)
    deadline = time.monotonic() + SHUTDOWN_TIMEOUT_S
    codes = [m.wait(max(0.0, deadline - time.monotonic())) for m in members]
    assert codes == [0, 0], [m.log_text()[-2000:] for m in members]
    with province.influx("two") as two:
        assert raw_count(two) < sent  # stopped mid-backlog
        start(members, processes)
        wait_for(lambda: raw_count(two) == sent, f"{sent} readings stored", 120)
        wait_for(lambda: all(unacked(m) == 0 for m in members), "every window acked", 30)
        assert raw_count(two) == sent
    stop(members)

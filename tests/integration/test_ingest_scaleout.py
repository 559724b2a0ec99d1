"""Two ingesters sharing the load through an MQTT shared subscription write exactly what one
ingester writes (docs/adr/0006-ingester-scale-out.md), against a real Mosquitto and InfluxDB."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

import orjson
import pytest

from city import Registry
from cloud.influx import InfluxHTTP
from cloud.ingest import Ingester, IngestSettings
from cloud.ingest.cluster import changed_sensors
from contract import topics
from pantau.services import InfluxDB, Mosquitto, free_port
from tests.broker_support import NOT_AUTHORIZED, Peer
from tests.ingest_support import (
    Message,
    latest_aggregates,
    make_stream,
    now_ms,
    publishing,
    raw_count,
    running,
    scrape,
    settings_for,
    stored_rows,
    wait_for,
)

pytestmark = pytest.mark.integration

#: Every gateway of the demo city but the kiosk (which publishes single readings).
GATEWAYS = [
    "gw-kariadi", "gw-wongsonegoro", "gw-telogorejo", "gw-tugurejo", "gw-elisabeth",
    "gw-iso-tegalsari", "gw-iso-kauman", "gw-iso-tembalang",
    "gw-johar", "gw-simpanglima", "gw-peterongan", "gw-kotalama", "gw-mpp",
]  # fmt: skip


def settings(
    mosquitto: Mosquitto,
    influxdb: InfluxDB,
    tmp_path: Path,
    *,
    db: str,
    client_id: str,
    group: str | None,
    metrics_port: int,
    store_raw: bool = True,
) -> IngestSettings:
    return settings_for(
        mosquitto, influxdb, tmp_path, influx_db=db, dead_letter_dir=tmp_path / f"dead-{client_id}",
        mqtt_client_id=client_id, mqtt_shared_group=group, metrics_port=metrics_port,
        store_raw=store_raw,
    )  # fmt: skip


def same_state(a: Ingester, b: Ingester) -> bool:
    """Both hold the same latest and previous reading of every sensor."""
    assert a.state is not None
    assert b.state is not None
    return len(changed_sensors(a.state, b.state)) == 0


def settled(ports: dict[str, int], single: Ingester, members: list[Ingester], n_msgs: int) -> bool:
    """Both setups took all ``n_msgs`` messages, acknowledged everything (deltas included,
    which are acknowledged after their merge and rollup write) and the members hold the lone
    ingester's state."""
    got = {k: scrape(p) for k, p in ports.items()}
    group_msgs = sum(got[k]["pantau_ingest_messages_total"] for k in got if k != "single")
    return (
        got["single"]["pantau_ingest_messages_total"] == n_msgs
        and group_msgs == n_msgs
        and all(g["pantau_ingest_unacked_messages"] == 0 for g in got.values())
        and all(same_state(m, single) for m in members)
    )


def test_two_ingesters_on_a_shared_subscription_write_the_single_ingesters_rollups(
    mosquitto: Mosquitto, influxdb: InfluxDB, city: Registry, tmp_path: Path
) -> None:
    """One stream feeds, on the same broker, a plain subscriber writing to one database and a
    shared group of two writing to another. Both members get part of the load, a sensor's
    readings land on both, and yet every aggregate's newest values, every raw reading and
    every counter on the real /metrics endpoints come out exactly as with one ingester."""
    stream = make_stream(city, GATEWAYS, batches=20, t0=now_ms() - 120_000)
    n_msgs, sent = len(stream.messages), stream.rows
    ports = {name: free_port() for name in ("single", "a", "b")}
    with ExitStack() as stack:
        single = stack.enter_context(
            running(
                Ingester(
                    settings=settings(
                        mosquitto,
                        influxdb,
                        tmp_path,
                        db="one",
                        client_id="ingest-single",
                        group=None,
                        metrics_port=ports["single"],
                    ),
                    registry=city,
                )
            )
        )
        members = [
            stack.enter_context(
                running(
                    Ingester(
                        settings=settings(
                            mosquitto,
                            influxdb,
                            tmp_path,
                            db="two",
                            client_id=f"ingest-{m}",
                            group="pantau-ingest",
                            metrics_port=ports[m],
                        ),
                        registry=city,
                    )
                )
            )
            for m in ("a", "b")
        ]
        pub = stack.enter_context(publishing(mosquitto, GATEWAYS))
        for msg in stream.messages:
            pub.publish(msg)

        wait_for(
            lambda: settled(ports, single, members, n_msgs),
            "both setups to take every message and the members to converge",
        )
        # A redelivered batch and a batch with a refused reading.
        pub.publish(stream.messages[0])
        t = now_ms() - 1000
        bad = {"capacity": 24, "occupied": -1, "suspect": 0, "confirmed": 0, "waiting": 0}
        reading = {"sensor": "bed-kariadi-icu", "kind": "bed", "ts": t, "seq": 1, "values": bad}
        doc = {"v": 1, "gw": "gw-kariadi", "seq": 10_000, "sent": t, "readings": [reading]}
        pub.publish(Message("gw-kariadi", stream.messages[0].topic, orjson.dumps(doc), ()))
        wait_for(
            lambda: settled(ports, single, members, n_msgs + 2),
            "the duplicate and the refused reading",
        )
        final = {k: scrape(p) for k, p in ports.items()}
        one = InfluxHTTP(url=influxdb.url, database="one").start()
        two = InfluxHTTP(url=influxdb.url, database="two").start()
        stack.callback(one.close)
        stack.callback(two.close)
        aggregates_one, aggregates_two = latest_aggregates(one), latest_aggregates(two)
        rows_one, rows_two = stored_rows(one), stored_rows(two)
        counts = (raw_count(one), raw_count(two))

    # The load was shared, and a sensor's readings went to both members.
    a, b, s = final["a"], final["b"], final["single"]
    assert a["pantau_ingest_messages_total"] > 0
    assert b["pantau_ingest_messages_total"] > 0
    assert a["pantau_ingest_state_deltas_merged_total"] > 0
    assert b["pantau_ingest_state_deltas_merged_total"] > 0
    assert a["pantau_ingest_state_delta_sensors_changed_total"] > 0
    assert b["pantau_ingest_state_delta_sensors_changed_total"] > 0

    # Exact results: aggregates, raw readings.
    # series_budget(city) less the kiosk's queue site: 237 bed_rollup, 4 crowd, 2 queue sites
    assert len(aggregates_one) == 237 + 4 + 2
    assert aggregates_two == aggregates_one
    assert sorted(rows_one) == sorted(sent)
    assert sorted(rows_two) == sorted(sent)
    assert counts == (len(sent), len(sent))

    # Exact counters on the real endpoints.
    assert s["pantau_ingest_messages_total"] == n_msgs + 2
    assert s["pantau_ingest_duplicates_dropped_total"] == 1
    assert s['pantau_ingest_dead_letters_total{reason="negative_count"}'] == 1
    assert s["pantau_ingest_readings_total"] == len(sent) + 1
    assert s["pantau_ingest_readings_stored_total"] == len(sent)
    assert s["pantau_ingest_lag_seconds_count"] == len(sent)
    assert s['pantau_ingest_lag_seconds_bucket{le="30.0"}'] == 0  # all sent 2 min late
    assert s['pantau_ingest_lag_seconds_bucket{le="300.0"}'] == len(sent)
    # A lone ingester publishes its state too (for the read API, cloud/api/state.py).
    assert s["pantau_ingest_state_deltas_published_total"] >= 1
    reason = 'pantau_ingest_dead_letters_total{reason="negative_count"}'
    assert a.get(reason, 0) + b.get(reason, 0) == 1
    # The member that got the repeat stored it again unless it had taken the original.
    dup = a["pantau_ingest_duplicates_dropped_total"] + b["pantau_ingest_duplicates_dropped_total"]
    assert dup in (0, 1)
    extra = 0 if dup == 1 else len(stream.messages[0].rows)
    for name in ("readings_stored_total", "lag_seconds_count"):
        total = a[f"pantau_ingest_{name}"] + b[f"pantau_ingest_{name}"]
        assert total == len(sent) + extra, name
    readings = a["pantau_ingest_readings_total"] + b["pantau_ingest_readings_total"]
    assert readings == len(sent) + 1 + extra
    assert s["pantau_ingest_points_written_total"] >= len(sent)
    for g in (a, b, s):
        assert g["pantau_ingest_windows_total"] >= 1
        assert g["pantau_ingest_state_deltas_refused_total"] == 0
        assert g["pantau_ingest_subscribed"] == 1


def test_a_member_that_joins_late_gets_the_groups_state(
    mosquitto: Mosquitto, influxdb: InfluxDB, city: Registry, tmp_path: Path
) -> None:
    """Aggregates-only (no raw points to bootstrap from): member B joins after member A has
    taken readings of every sensor, and then only one gateway keeps publishing. B's HELLO
    makes A send its whole state, so B computes the same rollups as a lone ingester, not
    rollups of the one gateway it hears from."""
    first = make_stream(city, GATEWAYS, batches=4, t0=now_ms() - 120_000)
    later = make_stream(city, ["gw-kariadi"], batches=10, t0=now_ms() - 60_000, seed=9)
    ports = {name: free_port() for name in ("single", "a", "b")}

    def ingester(name: str, db: str, group: str | None) -> Ingester:
        return Ingester(
            settings=settings(
                mosquitto, influxdb, tmp_path, db=db, client_id=f"ingest-{name}", group=group,
                metrics_port=ports[name], store_raw=False,
            ),
            registry=city,
        )  # fmt: skip

    with ExitStack() as stack:
        single = stack.enter_context(running(ingester("single", "one", None)))
        a = stack.enter_context(running(ingester("a", "two", "g")))
        pub = stack.enter_context(publishing(mosquitto, GATEWAYS))
        for msg in first.messages:
            pub.publish(msg)
        wait_for(
            lambda: settled({"single": ports["single"], "a": ports["a"]}, single, [a], 4 * 13),
            "member A and the lone ingester to take the first part",
        )
        b = stack.enter_context(running(ingester("b", "two", "g")))
        for msg in later.messages:
            pub.publish(msg)
        wait_for(
            lambda: settled(ports, single, [a, b], 4 * 13 + 10),
            "B to learn A's state and both to take the rest",
        )
        final = {k: scrape(p) for k, p in ports.items()}
        one = stack.enter_context(InfluxHTTP(url=influxdb.url, database="one"))
        two = stack.enter_context(InfluxHTTP(url=influxdb.url, database="two"))
        aggregates_one, aggregates_two = latest_aggregates(one), latest_aggregates(two)
        raw = (raw_count(one), raw_count(two))

    assert final["b"]["pantau_ingest_messages_total"] > 0  # B did take some of the rest
    assert final["b"]["pantau_ingest_state_delta_sensors_changed_total"] >= 29  # A's sensors
    assert len(aggregates_one) == 237 + 4 + 2
    assert aggregates_two == aggregates_one
    assert raw == (0, 0)  # aggregates-only


def test_only_the_ingester_account_may_publish_state_deltas(mosquitto: Mosquitto) -> None:
    """A gateway must not be able to forge the state the members merge; members can publish
    deltas, receive each other's, and join the shared subscription."""
    topic = topics.ingest_state("pantau-ingest")
    mosquitto.add_user("gw-a", "gw-a-pw", site="rs-a")
    # Each member has its own account, bound to its own client id, with the ingester's role.
    mosquitto.add_user("pantau-ingest-2", "member-2-pw", role="pantau-ingest")
    with (
        Peer(mosquitto, "pantau-ingest", "pantau-ingest-secret", "pantau-ingest-1") as member_a,
        Peer(mosquitto, "pantau-ingest-2", "member-2-pw") as member_b,
        Peer(mosquitto, "gw-a", "gw-a-pw") as gw,
    ):
        assert member_b.subscribe(topic) == [1]
        assert member_b.subscribe(topics.shared("g", "pantau/v1/+/+/readings")) == [1]
        assert gw.publish(topic, b"forged") == NOT_AUTHORIZED
        assert member_a.publish(topic, b"delta") == 0
        assert member_b.wait_for(topic, b"delta") == [(topic, b"delta")]

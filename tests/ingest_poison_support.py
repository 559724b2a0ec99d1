"""Helpers of the poison and fuzz tests of the ingester (tests/integration/test_ingest_poison.py,
test_ingest_fuzz.py): the good stream's gateway, an ingester on its own session, what it
dead-lettered, and the check that the broker holds nothing unacknowledged for it."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from city import Registry
from cloud.influx import InfluxHTTP
from pantau.broker_identity import ServiceRole
from pantau.services import InfluxDB, Mosquitto
from tests.ingest_process_support import IngestProcess, ingest_process
from tests.ingest_support import Message, Publisher, now_ms, scrape, stored_rows, wait_for

GOOD = "gw-kariadi"  # the good stream's gateway; no garbage is published as it
DEEP = b"[" * 1100 + b"]" * 1100
# The broker keeps a device to its own site and channels (docs/adr/0010); these tests publish
# past it, with the rights of the replay account (any device's data topics), so that the
# ingester's own checks are what is tested: it must hold even if the broker's policy slips.
PAST_THE_BROKER: ServiceRole = "pantau-replay"


def topic_of(city: Registry, gw: str, channel: str, *, site: str | None = None) -> str:
    return f"pantau/v1/{site or city.gateways[gw].site}/{gw}/{channel}"


def status_doc(gw: str, **over: Any) -> dict[str, Any]:
    return {"v": 1, "gw": gw, "state": "online", "ts": now_ms(), "stats": {"frames": 3}} | over


def dead_by_reason(port: int) -> Counter[str]:
    """pantau_ingest_dead_letters_total by reason."""
    prefix = 'pantau_ingest_dead_letters_total{reason="'
    return Counter(
        {
            name[len(prefix) : -2]: int(value)
            for name, value in scrape(port).items()
            if name.startswith(prefix)
        }
    )


def alive(ing: IngestProcess) -> bool:
    return ing.proc is not None and ing.proc.poll() is None


def settled(ing: IngestProcess, published: int) -> bool:
    """At least ``published`` messages went through a window and everything received was
    acknowledged, or the process died. Either way the caller's exact assertions (liveness,
    the message count) then fail at once, with numbers, rather than at a timeout: a message
    delivered twice would otherwise keep an exact count from ever being reached."""
    if not alive(ing):
        return True
    return (
        ing.metric("pantau_ingest_messages_total") >= published
        and ing.metric("pantau_ingest_unacked_messages") == 0
    )


@contextmanager
def poison_ingester(
    mosquitto: Mosquitto, influxdb: InfluxDB, tmp_path: Path
) -> Iterator[IngestProcess]:
    with ingest_process(
        mosquitto, influxdb, tmp_path, PANTAU_MQTT_CLIENT_ID="pantau-ingest-poison"
    ) as ing:
        yield ing


def nothing_left_at_the_broker(
    ing: IngestProcess,
    mosquitto: Mosquitto,
    influxdb: InfluxDB,
    tmp_path: Path,
    pub: Publisher,
    marker: Message,
) -> float:
    """Stop the ingester (it must exit 0), start a new one on its persistent session and send
    one marker batch: the number of messages the new process received once the marker is
    stored (1 if the broker held nothing unacknowledged for the session)."""
    ing.stop()
    with (
        poison_ingester(mosquitto, influxdb, tmp_path) as again,
        InfluxHTTP(url=influxdb.url, database="pantau") as influx,
    ):
        pub.publish(marker)

        def marker_done() -> bool:
            # Acknowledged means stored; rows are read only then (a query racing a write may
            # see a point with some of its fields).
            stored = again.metric("pantau_ingest_readings_stored_total") >= len(marker.rows)
            return stored and again.metric("pantau_ingest_unacked_messages") == 0

        wait_for(marker_done, "the marker batch stored and acknowledged")
        assert set(marker.rows) <= set(stored_rows(influx))
        return again.metric("pantau_ingest_messages_total")

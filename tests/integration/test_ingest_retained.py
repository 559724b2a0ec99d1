"""Retained messages reach the ingester only where the protocol uses them (the status channel).

The broker cannot refuse a device's retain flag on its own data topics (docs/adr/0010), so the
ingester subscribes to readings without retained messages: otherwise one retained batch would be
delivered again on every (re)subscription, forever.
"""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from city import Registry
from cloud.influx import InfluxHTTP
from contract import topics
from contract.topics import Channel
from pantau.services import InfluxDB, Mosquitto
from tests.ingest_support import (
    ingester_thread,
    now_ms,
    publisher,
    settings_for,
    stored_rows,
    wait_for,
)

pytestmark = pytest.mark.integration

GW, SITE = "gw-kariadi", "rs-kariadi"


def _gateway_statuses(influx: InfluxHTTP) -> int:
    return sum(len(s.rows()) for s in influx.query("SELECT online FROM gateway_status"))


def test_a_retained_batch_is_not_delivered_to_a_new_subscription_but_a_retained_status_is(
    mosquitto: Mosquitto, influxdb: InfluxDB, city: Registry, tmp_path: Path
) -> None:
    ts = now_ms() - 1000
    batch = {
        "v": 1,
        "gw": GW,
        "seq": 1,
        "sent": ts,
        "readings": [
            {
                "sensor": "bed-kariadi-icu",
                "kind": "bed",
                "ts": ts,
                "seq": 1,
                "values": {
                    "capacity": 24,
                    "occupied": 20,
                    "suspect": 1,
                    "confirmed": 2,
                    "waiting": 0,
                },
            }
        ],
    }
    status = {"v": 1, "gw": GW, "state": "online", "ts": ts}
    with publisher(mosquitto, GW) as gw:
        for channel, doc in ((Channel.READINGS, batch), (Channel.STATUS, status)):
            info = gw.publish(
                topics.build(SITE, GW, channel), orjson.dumps(doc), qos=1, retain=True
            )
            info.wait_for_publish(10)
            assert info.is_published()
    settings = settings_for(mosquitto, influxdb, tmp_path)
    with (
        ingester_thread(settings, city),
        InfluxHTTP(url=influxdb.url, database="pantau") as influx,
    ):
        # The broker sends a new subscription's retained messages in subscription order
        # (readings before status), so once the status is stored a retained batch would be too.
        wait_for(lambda: _gateway_statuses(influx) == 1, "the retained status stored")
        assert stored_rows(influx) == []

"""Gateways and devices from the retained status on a real Mosquitto (the shipped ACL, the
pantau-api account): a status retained before the API started is known at once; a new one
replaces it; a status that speaks for another gateway is refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from city import Registry
from cloud.api import create_app
from contract import Channel, topics
from pantau.services import InfluxDB, Mosquitto
from tests.api_live_support import api_settings
from tests.ingest_support import now_ms, publisher, wait_for
from tests.payload_support import GW, status

pytestmark = pytest.mark.integration

TOPIC = topics.build("rs-kariadi", GW, Channel.STATUS)


def retain(client: Any, payload: bytes) -> None:
    info = client.publish(TOPIC, payload, qos=1, retain=True)
    info.wait_for_publish(10)
    assert info.is_published()


def test_a_gateways_retained_status_shows_link_spool_and_silent_sensors(
    mosquitto: Mosquitto, influxdb: InfluxDB, tmp_path: Path, city: Registry
) -> None:
    t0 = now_ms()
    online = status(
        "online",
        t0,
        stats={"link": "up", "spool_depth": 17, "spool_dropped_total": 2, "batches_sent": 9},
        sensors_last_seen={"bed-kariadi-icu": t0 - 500},
        sensors_silent=["bed-kariadi-k3"],
        sensor_seq_gaps={"bed-kariadi-icu": 3},
        clock_offset_ms=-40,
    )
    with publisher(mosquitto, GW) as pub:
        retain(pub, online)
        with TestClient(create_app(api_settings(mosquitto, influxdb), registry=city)) as client:

            def gw() -> dict[str, Any]:
                body: dict[str, Any] = client.get(f"/v1/gateways/{GW}").json()
                return body

            wait_for(lambda: gw()["state"] == "online", "the retained status")
            body = gw()
            assert (body["link"], body["spool_depth"], body["spool_dropped"]) == ("up", 17, 2)
            assert (body["status_ts_ms"], body["clock_offset_ms"]) == (t0, -40)
            assert body["silent"] == ["bed-kariadi-k3"]
            assert body["count"] == 6  # five bed sensors and the poli queue
            icu = body["items"][0]
            assert icu == {
                "sensor": "bed-kariadi-icu",
                "kind": "bed",
                "last_seen_ms": t0 - 500,
                "observed_at_ms": None,
                "silent": False,
                "seq_gaps": 3,
                "resets": None,
                "skew_ms": None,
            }
            assert body["items"][4]["silent"] is True  # bed-kariadi-k3

            # A status naming another gateway on this topic is refused: nothing changes.
            retain(pub, orjson.dumps({"v": 1, "gw": "gw-elisabeth", "state": "offline", "ts": 1}))
            retain(pub, status("offline", t0 + 1000))
            wait_for(lambda: gw()["state"] == "offline", "the offline status")
            assert gw()["status_ts_ms"] == t0 + 1000
            assert client.app.state.live.gateways.refused == 1  # type: ignore[attr-defined]

            others = client.get("/v1/gateways").json()
            assert others["count"] == len(city.gateways)
            assert {g["state"] for g in others["items"][1:]} == {"unknown"}
            assert client.get("/v1/gateways/gw-nope").status_code == 404


def test_gateways_come_in_pages_that_follow_next_cursor_and_filter_by_site_state_and_link(
    mosquitto: Mosquitto, influxdb: InfluxDB, city: Registry
) -> None:
    """14 gateways, 4 a page: pages of 4, 4, 4 and 2 in registry order, each saying total 14;
    the last page's next_cursor is null. Filters apply before paging."""
    with publisher(mosquitto, GW) as pub:
        retain(pub, status("online", now_ms(), stats={"link": "up"}))
        with TestClient(create_app(api_settings(mosquitto, influxdb), registry=city)) as client:
            wait_for(
                lambda: client.get(f"/v1/gateways/{GW}").json()["state"] == "online",
                "the retained status",
            )
            pages, cursor = [], None
            while True:
                params: dict[str, str | int] = {"limit": 4}
                if cursor is not None:
                    params["cursor"] = cursor
                body = client.get("/v1/gateways", params=params).json()
                pages.append([g["gateway"] for g in body["items"]])
                assert (body["total"], body["count"]) == (14, len(body["items"]))
                cursor = body["next_cursor"]
                if cursor is None:
                    break
                assert cursor == pages[-1][-1]
            assert [len(p) for p in pages] == [4, 4, 4, 2]
            assert [g for p in pages for g in p] == list(city.gateways)

            def ids(**params: str) -> list[str]:
                return [
                    g["gateway"] for g in client.get("/v1/gateways", params=params).json()["items"]
                ]

            assert ids(state="online") == [GW]
            assert ids(link="up") == [GW]
            assert ids(link="down") == []
            assert len(ids(state="unknown")) == 13
            assert ids(site="iso-kauman-rw05") == ["gw-iso-kauman"]
            first = client.get("/v1/gateways").json()
            assert (first["total"], first["count"], first["next_cursor"]) == (14, 14, None)

            gone = client.get("/v1/gateways", params={"cursor": "gw-removed"})
            assert gone.status_code == 400
            assert "start again without cursor" in gone.json()["detail"]
            assert client.get("/v1/gateways", params={"limit": 0}).status_code == 422
            assert client.get("/v1/gateways", params={"site": "nowhere"}).status_code == 404
            assert client.get("/v1/gateways", params={"state": "asleep"}).status_code == 422

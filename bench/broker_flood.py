"""What one device with a valid password can do to the broker (issue 9, items 3 and 4), on the
real policy: how much it can make the broker hold, and whether it can take others' sessions.

A device with a valid password publishes ``--topics`` retained messages of ``--size`` bytes,
one on each site segment but its own, then one on each of its own channels. Prints how many
the broker accepted and the broker's resident memory before and after (VmRSS of the real
Mosquitto process, started on a free port with the policy in ``mosquitto/``)::

    .venv/bin/python -m bench.broker_flood                  # 200 x 250 KB, a few seconds

Then the same device connects ``--takeovers`` times with the client id of a connected gateway
(``gw-victim``) and of the ingester (``pantau-ingest-1``): how many connections were accepted,
and how many times each victim was disconnected.

Figures are printed, never asserted. On the 2-core development machine (2026-11-29)::

    other sites     0 of 200 retained publishes accepted
    own channels    3 of 3 accepted
    broker RSS    8.9 MB -> 9.8 MB

    takeover      0 of 50 accepted; gw-victim disconnected 0 times, pantau-ingest-1 0 times

The three accepted are the device's own ``readings``, ``status`` and ``ack``: the bound on
what it can make the broker hold (one retained message per topic, each <= 270,000 bytes).

Before the dynamic security identities (the ``pattern ... pantau/v1/+/%u/status`` ACL, no
client-id binding), the same run printed::

    other sites   200 of 200 retained publishes accepted
    broker RSS    8.0 MB -> 57.7 MB
    takeover      50 of 50 accepted; gw-victim disconnected 1 times, pantau-ingest-1 1 times

(each victim is kicked by the first thief and, reconnecting after 1 s, misses the rest).
"""

from __future__ import annotations

import argparse
import tempfile
import threading
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.reasoncodes import ReasonCode

from contract.topics import Channel, build
from pantau.broker_identity import DEVICE_CHANNELS
from pantau.services import Mosquitto

DEVICE, SITE, PASSWORD = "gw-flood", "rs-flood", "gw-flood-pw"
VICTIM = "gw-victim"
NOT_AUTHORIZED = 135


def rss_mb(pid: int) -> float:
    """Resident memory of process ``pid`` in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def publish_all(broker: Mosquitto, topics: list[str], payload: bytes) -> list[int]:
    """Publish ``payload`` retained at QoS 1 on each topic; the PUBACK reason codes."""
    done = threading.Condition()
    codes: dict[int, int] = {}

    def on_publish(c: Any, u: Any, mid: int, rc: ReasonCode, props: Any) -> None:
        with done:
            codes[mid] = rc.value
            done.notify_all()

    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=DEVICE, protocol=MQTTProtocolVersion.MQTTv5
    )
    client.username_pw_set(DEVICE, PASSWORD)
    client.on_publish = on_publish
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        mids = [client.publish(t, payload, qos=1, retain=True).mid for t in topics]
        with done:
            if not done.wait_for(lambda: all(m in codes for m in mids), timeout=120):
                raise TimeoutError("no PUBACK for every publish within 120 s")
        return [codes[m] for m in mids]
    finally:
        client.disconnect()
        client.loop_stop()


class Victim:
    """A connected client that counts how often the broker drops it (paho reconnects it)."""

    def __init__(self, broker: Mosquitto, username: str, password: str, client_id: str) -> None:
        self.drops = 0
        self.client_id = client_id
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=MQTTProtocolVersion.MQTTv5
        )
        self.client.username_pw_set(username, password)
        self.client.on_disconnect = self._dropped
        self.client.reconnect_delay_set(1, 1)
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()

    def _dropped(self, c: Any, u: Any, flags: Any, rc: ReasonCode, props: Any) -> None:
        self.drops += 1

    def close(self) -> None:
        self.client.on_disconnect = None
        self.client.disconnect()
        self.client.loop_stop()


def try_connect(broker: Mosquitto, client_id: str) -> bool:
    """Connect as the flooding device with ``client_id``; True if the broker accepted."""
    accepted = threading.Event()
    answered = threading.Event()

    def on_connect(c: Any, u: Any, flags: Any, rc: ReasonCode, props: Any) -> None:
        if not rc.is_failure:
            accepted.set()
        answered.set()

    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=client_id, protocol=MQTTProtocolVersion.MQTTv5
    )
    client.username_pw_set(DEVICE, PASSWORD)
    client.on_connect = on_connect
    client.on_disconnect = lambda *_: answered.set()
    client.connect(broker.host, broker.port)
    client.loop_start()
    answered.wait(10)
    client.disconnect()
    client.loop_stop()
    return accepted.is_set()


def takeovers(broker: Mosquitto, attempts: int) -> str:
    """The thief's tries on a gateway's and the ingester's client ids, in words."""
    broker.add_user(VICTIM, "victim-pw", site=SITE)
    victims = [
        Victim(broker, VICTIM, "victim-pw", VICTIM),
        Victim(broker, "pantau-ingest", broker.users["pantau-ingest"], "pantau-ingest-1"),
    ]
    try:
        tries = [v.client_id for v in victims for _ in range(attempts // 2)]
        ok = sum(try_connect(broker, client_id) for client_id in tries)
        return (
            f"{ok} of {len(tries)} accepted; {VICTIM} disconnected {victims[0].drops} "
            f"times, pantau-ingest-1 {victims[1].drops} times"
        )
    finally:
        for v in victims:
            v.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--topics", type=int, default=200)
    parser.add_argument("--size", type=int, default=250_000)
    parser.add_argument("--takeovers", type=int, default=50)
    args = parser.parse_args()
    payload = b"x" * args.size
    with tempfile.TemporaryDirectory() as tmp, Mosquitto(workdir=Path(tmp)) as broker:
        broker.add_user(DEVICE, PASSWORD, site=SITE)
        if broker.proc is None:
            raise RuntimeError("mosquitto did not start")
        pid = broker.proc.pid
        before = rss_mb(pid)
        others = [build(f"site-{i}", DEVICE, Channel.STATUS) for i in range(args.topics)]
        own = [build(SITE, DEVICE, ch) for ch in DEVICE_CHANNELS["gateway"]]
        other_codes = publish_all(broker, others, payload)
        own_codes = publish_all(broker, own, payload)
        after = rss_mb(pid)
        takeover = takeovers(broker, args.takeovers)
    accepted = sum(rc != NOT_AUTHORIZED for rc in other_codes)
    own_accepted = sum(rc != NOT_AUTHORIZED for rc in own_codes)
    print(f"other sites   {accepted:>3} of {len(others)} retained publishes accepted")
    print(f"own channels  {own_accepted:>3} of {len(own)} accepted")
    print(f"broker RSS    {before:.1f} MB -> {after:.1f} MB")
    print(f"takeover      {takeover}")


if __name__ == "__main__":
    main()

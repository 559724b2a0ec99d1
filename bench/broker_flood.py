"""What one device can make the broker hold (issue 9, item 4), on the real policy.

A device with a valid password publishes ``--topics`` retained messages of ``--size`` bytes,
one on each site segment but its own, then one on each of its own channels. Prints how many
the broker accepted and the broker's resident memory before and after (VmRSS of the real
Mosquitto process, started on a free port with the policy in ``mosquitto/``)::

    .venv/bin/python -m bench.broker_flood                  # 200 x 250 KB, a few seconds

Figures are printed, never asserted. On the 2-core development machine (2026-11-29)::

    other sites     0 of 200 retained publishes accepted
    own channels    3 of 3 accepted
    broker RSS    8.9 MB -> 9.8 MB

The three accepted are the device's own ``readings``, ``status`` and ``ack``: the bound on
what it can make the broker hold (one retained message per topic, each <= 270,000 bytes).

Before the dynamic security identities (the ``pattern ... pantau/v1/+/%u/status`` ACL), the
same run accepted 200 of 200 and took the broker from 8.1 to 57.0 MB.
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--topics", type=int, default=200)
    parser.add_argument("--size", type=int, default=250_000)
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
    accepted = sum(rc != NOT_AUTHORIZED for rc in other_codes)
    own_accepted = sum(rc != NOT_AUTHORIZED for rc in own_codes)
    print(f"other sites   {accepted:>3} of {len(others)} retained publishes accepted")
    print(f"own channels  {own_accepted:>3} of {len(own)} accepted")
    print(f"broker RSS    {before:.1f} MB -> {after:.1f} MB")


if __name__ == "__main__":
    main()

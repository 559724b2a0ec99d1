"""docs/protocol.md and docs/serial-protocol.md tell the truth: every JSON example validates
against the contract, the documented limits are the contract's, and the mosquitto_pub example,
run as written, delivers a valid reading through the real broker with Pantau's policy."""

from __future__ import annotations

import dataclasses
import os
import re
import shlex
import subprocess
import threading

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from pydantic import BaseModel

import contract
from city import Registry
from contract import topics
from contract.errors import FrameError
from contract.serial_frame import FRAME_TAG, FrameStats, crc16, parse_frame
from edge.agent import EdgeAgent
from edge.config import EdgeSettings
from edge.spool import MemoryOutbox
from pantau.paths import ROOT
from pantau.services import Mosquitto

pytestmark = pytest.mark.integration

PROTOCOL = (ROOT / "docs" / "protocol.md").read_text(encoding="utf-8")
SERIAL = (ROOT / "docs" / "serial-protocol.md").read_text(encoding="utf-8")
_EXAMPLE = re.compile(r"<!-- contract: (\w+) -->\n```json\n(.*?)\n```", re.DOTALL)
_COMMAND = re.compile(r"^mosquitto_pub .*$", re.MULTILINE)
MODELS: dict[str, type[BaseModel]] = {
    "SingleReading": contract.SingleReading,
    "Batch": contract.Batch,
    "GatewayStatus": contract.GatewayStatus,
    "Command": contract.Command,
    "CommandAck": contract.CommandAck,
}


def test_every_json_block_is_a_marked_contract_example() -> None:
    """No example escapes checking: each ```json block carries a contract marker."""
    assert PROTOCOL.count("```json") == len(_EXAMPLE.findall(PROTOCOL)) == 8


@pytest.mark.parametrize(
    ("model", "text"), _EXAMPLE.findall(PROTOCOL), ids=lambda v: v[:20].replace("\n", "")
)
def test_each_json_example_validates_against_the_contract(model: str, text: str) -> None:
    # The models refuse unknown fields and coerce nothing, so validating is the whole check.
    message = MODELS[model].model_validate_json(text)
    assert message.model_dump()["v"] == contract.SCHEMA_VERSION


def test_the_documented_limits_and_names_are_the_contracts() -> None:
    assert f"**{contract.MAX_PAYLOAD_BYTES:,} bytes**".replace(",", " ") in PROTOCOL
    assert f"**{contract.MAX_READINGS_PER_BATCH:,} readings**".replace(",", " ") in PROTOCOL
    assert f"**{contract.MAX_FUTURE_SKEW_MS // 60_000} minutes**" in PROTOCOL
    for reason in contract.RejectReason:
        assert f"| `{reason.value}` |" in PROTOCOL, reason
    for channel in contract.Channel:
        assert f"| `{channel.value}` |" in PROTOCOL, channel
    for name in contract.CommandName:
        assert f"| `{name.value}` |" in PROTOCOL, name
    for kind, fields in contract.KIND_FIELDS.items():
        row = next(line for line in PROTOCOL.splitlines() if line.startswith(f"| `{kind}` |"))
        assert all(f"`{f}`" in row for f in fields), kind


def test_the_mosquitto_pub_example_delivers_a_valid_reading(
    mosquitto: Mosquitto, city: Registry
) -> None:
    (command,) = _COMMAND.findall(PROTOCOL)
    argv = shlex.split(command)
    user, client_id, topic, payload = (
        argv[argv.index(flag) + 1] for flag in ("-u", "-i", "-t", "-m")
    )
    # The broker refuses a device account any client id but the device's own.
    assert client_id == user
    # The example is for the demo city's direct kiosk, and its message is valid there.
    parsed = topics.parse(topic)
    assert parsed.channel is contract.Channel.READING
    assert city.gateways[user].site == parsed.site
    assert city.gateways[user].direct
    reading = contract.SingleReading.model_validate_json(payload)
    assert city.sensors[reading.sensor].gateway == parsed.gateway == user

    mosquitto.add_user(user, "kiosk-pw-for-test")
    received: list[tuple[str, bytes]] = []
    subscribed, arrived = threading.Event(), threading.Event()

    def on_message(c: mqtt.Client, u: object, msg: mqtt.MQTTMessage) -> None:
        received.append((msg.topic, bytes(msg.payload)))
        arrived.set()

    sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="pantau-ingest-1")
    sub.username_pw_set("pantau-ingest", "pantau-ingest-secret")
    sub.on_message = on_message
    sub.on_subscribe = lambda *_: subscribed.set()
    sub.on_connect = lambda c, *_: c.subscribe(topics.subscription(contract.Channel.READING), 1)
    sub.connect(mosquitto.host, mosquitto.port)
    sub.loop_start()
    try:
        assert subscribed.wait(10)
        # Run the documented line through a shell exactly as written.
        done = _run(command, mosquitto, "kiosk-pw-for-test")
        assert done.returncode == 0, done.stderr
        assert arrived.wait(10)
    finally:
        sub.disconnect()
        sub.loop_stop()
    assert received == [(topic, payload.encode())]


def _run(line: str, broker: Mosquitto, password: str) -> subprocess.CompletedProcess[str]:
    """``line`` through a shell, with the environment docs/protocol.md says to set."""
    env = {
        **os.environ,
        "PANTAU_MQTT_HOST": broker.host,
        "PANTAU_MQTT_PORT": str(broker.port),
        "KIOSK_CANDISARI_PASSWORD": password,
    }
    return subprocess.run(
        ["bash", "-c", line], check=False, env=env, capture_output=True, text=True, timeout=20
    )


_REFUSED = re.compile(r"<!-- mosquitto_pub: refused -->\n```text\n(.*?)\n```", re.DOTALL)


def test_mosquitto_pub_refusals_print_and_exit_as_documented(mosquitto: Mosquitto) -> None:
    """A wrong password: the documented two lines and exit status 5 (MQTT 3.1.1), or
    ``Not authorized`` and 135 with -V mqttv5. A topic of another device: nothing and exit 0,
    or the documented warning with -V mqttv5."""
    (command,) = _COMMAND.findall(PROTOCOL)
    mosquitto.add_user("kiosk-candisari", "kiosk-pw-for-test")
    (refused,) = _REFUSED.findall(PROTOCOL)
    text = PROTOCOL.replace("\n", " ")

    done = _run(command, mosquitto, "wrong")
    assert (done.returncode, done.stderr) == (5, refused + "\n")
    assert "exits with status **5**" in text

    done = _run(command + " -V mqttv5", mosquitto, "wrong")
    assert done.returncode == 135
    assert done.stderr.splitlines()[0] == "Connection error: Not authorized"
    assert "prints `Connection error: Not authorized` and exits with status 135" in text

    other = command.replace("kiosk-candisari/reading", "gw-kariadi/reading")
    done = _run(other, mosquitto, "kiosk-pw-for-test")
    assert (done.returncode, done.stderr) == (0, "")
    done = _run(other + " -V mqttv5", mosquitto, "kiosk-pw-for-test")
    assert (done.returncode, done.stderr) == (0, "Warning: Publish 1 failed: Not authorized.\n")
    assert "prints `Warning: Publish 1 failed: Not authorized.` (still exit 0)" in text


def _table(marker: str) -> list[str]:
    """The first cells of the table after ``<!-- marker -->``."""
    rest = PROTOCOL.split(f"<!-- {marker} -->\n", 1)[1]
    rows = []
    for line in rest.splitlines()[2:]:
        if not line.startswith("|"):
            break
        rows.append(line.split("|")[1])
    return rows


def test_the_status_tables_list_every_field_and_every_stat_the_edge_publishes() -> None:
    """The status field table is contract.GatewayStatus; the stats table names every key the
    edge agent puts in ``stats`` (its decoder, spool, link and session counters)."""
    fields = [cell.strip().strip("`") for cell in _table("status fields")]
    assert fields == list(contract.GatewayStatus.model_fields)

    agent = EdgeAgent(
        settings=EdgeSettings(
            gateway_id="gw-kariadi", site_id="rs-kariadi", serial_ports={"bus0": "/dev/null"}
        ),
        outbox=MemoryOutbox().open(),
    )
    published = set(agent.status().stats)
    per_port = {
        *(f.name for f in dataclasses.fields(FrameStats)),
        "rejected",
        "opens",
        "open_failures",
    }
    documented = {key for cell in _table("status stats") for key in re.findall(r"`(\w+)`", cell)}
    assert documented == published | per_port


# --- docs/serial-protocol.md -------------------------------------------------------------------

_FRAME = re.compile(r"^\$" + FRAME_TAG + r",[^\s`]*\*[0-9A-F]{4}$", re.MULTILINE)


def test_serial_doc_frames_parse_and_the_worked_crc_is_right() -> None:
    frames = _FRAME.findall(SERIAL)
    assert len(frames) >= 2
    for line in frames:
        frame = parse_frame(line.encode("ascii"))
        assert contract.check_values(frame.kind, frame.values_dict()) is None
    # The worked example states its body and CRC explicitly.
    worked = re.search(r"CRC-16/CCITT-FALSE of `([^`]+)` is `0x([0-9A-F]{4})`", SERIAL)
    assert worked is not None
    body, crc = worked.groups()
    assert crc16(body.encode("ascii")) == int(crc, 16)
    assert f"${body}*{crc}" in frames
    assert "`0x29B1`" in SERIAL
    assert crc16(b"123456789") == 0x29B1


def test_the_crc_is_accepted_in_either_case_and_only_as_4_hex_digits() -> None:
    """The documented frame with its CRC in lower case parses; a CRC written with a sign, a
    space or an underscore does not, even where its value is right."""
    frame = "$PNT1,q-candisari,queue,7,,12,9,2*E504"
    assert frame in SERIAL
    assert "the gateway also accepts lower case (`e504`)" in SERIAL
    assert parse_frame(frame.lower().replace("$pnt1,", "$PNT1,").encode()) == parse_frame(
        frame.encode()
    )
    # a body whose CRC has a leading zero digit, so a 3-digit spelling with a prefix would
    # carry the right value
    body = next(
        b
        for i in range(10_000)
        if crc16(b := f"PNT1,q-candisari,queue,{i},,12,9,2".encode()) < 0x1000
    )
    crc = f"{crc16(body):04X}"
    assert parse_frame(b"$" + body + b"*" + crc.encode()).sensor == "q-candisari"
    for spelling in (f"+{crc[1:]}", f" {crc[1:]}", f"{crc[1]}_{crc[2:]}"):
        with pytest.raises(FrameError):
            parse_frame(b"$" + body + b"*" + spelling.encode())

"""What ``pantau gateway`` prints: a ready edge config, the ``mosquitto_pub`` line of a direct
device, and a gateway's state from its retained status in words (link, last seen, spool).

Pure functions of the registry, the broker's answers and the time: no I/O, so each is tested
on its own and the commands in :mod:`pantau.gateway_cli` stay short."""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass

from pydantic import ValidationError

from city import Registry
from contract.mqtturl import BrokerUrl
from contract.payload import KIND_FIELDS
from contract.status import GatewayStatus
from contract.topics import Channel, build

__all__ = [
    "COLUMNS",
    "GatewayState",
    "age_words",
    "edge_config",
    "gateway_state",
    "parse_status",
    "publish_line",
    "table",
]


def _q(value: str | list[str]) -> str:
    # JSON strings and lists are valid YAML flow scalars, quoted whatever they hold.
    return json.dumps(value, ensure_ascii=False)


def edge_config(registry: Registry, gateway_id: str, *, mqtt_url: str, password: str) -> str:
    """A complete edge agent config file for ``gateway_id`` (the fields of
    edge/sample-config.yaml), its broker password included: ``edge.config.load_settings``
    loads it as it is. Serial URLs are placeholders (``/dev/ttyUSB0`` for the first bus...):
    the technician knows where each bus is plugged in."""
    gw = registry.gateways[gateway_id]
    ports = registry.ports_of(gateway_id) or ["bus0"]
    sensors = [s.id for s in registry.sensors_of(gateway=gateway_id)]
    lines = [
        f"# Pantau edge agent for {gateway_id} at {registry.sites[gw.site].name}.",
        "# Install as /etc/pantau/edge.yaml (mode 0600: it holds the broker password), then",
        "# `pantau edge run --config /etc/pantau/edge.yaml` (edge/pantau-edge.service).",
        "# The password is shown only this once. To keep it out of this file, move it to",
        "# /etc/pantau/edge.env as PANTAU_MQTT_PASSWORD=... and delete the line below.",
        "mode: production",
        f"gateway_id: {_q(gateway_id)}",
        f"site_id: {_q(gw.site)}",
        f"mqtt_url: {_q(mqtt_url)}",
        f"mqtt_password: {_q(password)}",
        "# Port label -> serial URL: device paths, PTYs and socket://host:port all work.",
        "serial_ports:",
        *(f"  {label}: {_q(f'/dev/ttyUSB{n}')}" for n, label in enumerate(ports)),
        f"spool_path: {_q(f'/var/lib/pantau-edge/{gateway_id}.spool')}",
        "# Sensors this gateway should hear (reported silent if never heard).",
        f"sensors: {_q(sensors)}",
    ]
    return "\n".join(lines) + "\n"


def publish_line(registry: Registry, device_id: str, *, mqtt_url: str, password: str) -> str:
    """The ``mosquitto_pub`` command that sends one reading as the direct device ``device_id``
    (its first sensor, all values 0, which every rule accepts), as docs/protocol.md shows."""
    gw = registry.gateways[device_id]
    url = BrokerUrl.parse(mqtt_url)
    tls = url.tls
    sensors = registry.sensors_of(gateway=device_id)
    args = [
        "mosquitto_pub",
        "-h",
        url.host,
        "-p",
        str(url.port),
        "-i",
        device_id,
        "-u",
        device_id,
        "-P",
        password,
        "-q",
        "1",
        "-t",
        build(gw.site, device_id, Channel.READING),
    ]
    if tls:
        args += ["--cafile", "ca.crt"]
    if sensors:
        first = sensors[0]
        reading = {
            "v": 1,
            "sensor": first.id,
            "kind": first.kind.value,
            "seq": 1,
            "values": dict.fromkeys(KIND_FIELDS[first.kind], 0),
        }
        args += ["-m", json.dumps(reading, separators=(",", ":"))]
    else:
        args += ["-m", "<a reading of one of its sensors, docs/protocol.md>"]
    return shlex.join(args)


def age_words(seconds: float) -> str:
    """How long ago, in words: ``just now``, ``42 s ago``, ``5 min ago``, ``3 h ago``,
    ``2 days ago`` (a future time, from a gateway's fast clock, reads ``just now``)."""
    s = int(seconds)
    if s < 1:
        return "just now"
    if s < 60:
        return f"{s} s ago"
    if s < 3600:
        return f"{s // 60} min ago"
    if s < 86400:
        return f"{s // 3600} h ago"
    days = s // 86400
    return f"{days} day ago" if days == 1 else f"{days} days ago"


@dataclass(frozen=True, slots=True)
class GatewayState:
    """One device as ``list`` and ``show`` show it."""

    id: str
    site: str
    kind: str  # gateway | direct
    account: str  # ok | missing | rotation pending
    link: str  # online | offline | no status | unreadable status
    last_seen: str  # age in words, "-" without a status
    spool: str  # spool depth, "-" when the status does not say
    sensors: int

    def row(self) -> list[str]:
        """The columns of ``pantau gateway list``."""
        return [
            self.id,
            self.site,
            self.kind,
            self.link,
            self.last_seen,
            self.spool,
            str(self.sensors),
            self.account,
        ]


COLUMNS = ["ID", "SITE", "KIND", "LINK", "LAST-SEEN", "SPOOL", "SENSORS", "ACCOUNT"]


def parse_status(payload: bytes | None) -> GatewayStatus | str | None:
    """The retained status, None if there is none, ``"unreadable"`` if it is not one."""
    if not payload:
        return None
    try:
        return GatewayStatus.model_validate_json(payload)
    except ValidationError:
        return "unreadable"


def gateway_state(
    registry: Registry, gateway_id: str, *, status: bytes | None, account: str, now_ms: int
) -> GatewayState:
    """A device's state from the registry, its retained status and its broker account."""
    gw = registry.gateways[gateway_id]
    parsed = parse_status(status)
    link, seen, spool = "no status", "-", "-"
    if isinstance(parsed, GatewayStatus):
        link = parsed.state.value
        seen = age_words((now_ms - parsed.ts) / 1000)
        depth = parsed.stats.get("spool_depth")
        spool = str(depth) if depth is not None else "-"
    elif parsed == "unreadable":
        link = "unreadable status"
    return GatewayState(
        id=gateway_id,
        site=gw.site,
        kind="direct" if gw.direct else "gateway",
        account=account,
        link=link,
        last_seen=seen,
        spool=spool,
        sensors=len(registry.sensors_of(gateway=gateway_id)),
    )


def table(rows: list[list[str]]) -> str:
    """Left-aligned columns separated by two spaces."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )

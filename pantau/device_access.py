"""``device-access.env``: everything a device maker needs to attach their own device or gateway
to a running demo, in one shell file (``. device-access.env``).

The demo creates a random password for every account when it starts, so without this file a
device maker would have to read the demo's code to connect. It holds the broker's and the API's
addresses, every direct device's and gateway's password (each account's username and MQTT client
id is its own id), the serial lines of a left-out gateway's simulated sensors, and what
``pantau gateway add`` needs to add a device of your own to the running demo.
docs/protocol.md ("Trying it against the demo") explains it; the end-to-end tests attach an
outside gateway using only this file.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Mapping, Set
from pathlib import Path

from city import Registry

HEADER = """\
# Pantau demo: what a device maker needs to connect to this running demo.
# Load it with:  . {path}
# docs/protocol.md, "Trying it against the demo", says how to use each entry. Every device
# account's MQTT username and client id is its own id (a gateway id or a direct device id).
"""


def env_name(device_id: str, suffix: str) -> str:
    """The shell variable for ``device_id``: ``kiosk-candisari`` -> ``KIOSK_CANDISARI_<suffix>``."""
    return re.sub(r"[^A-Z0-9]", "_", device_id.upper()) + "_" + suffix


def device_access(
    *,
    path: Path,
    registry: Registry,
    passwords: Mapping[str, str],
    mqtt_host: str,
    mqtt_port: int,
    api_url: str,
    serial_ports: Mapping[str, Mapping[str, str]],
    without: Set[str],
    admin_password: str,
    city_file: Path,
) -> str:
    """The text of ``device-access.env``, to be written at ``path`` (shell assignments, values
    quoted)."""

    def line(name: str, value: str | int, comment: str = "") -> str:
        text = f"{name}={shlex.quote(str(value))}"
        return f"{text}  # {comment}" if comment else text

    out = [
        HEADER.format(path=path),
        line("PANTAU_MQTT_HOST", mqtt_host),
        line("PANTAU_MQTT_PORT", mqtt_port),
        line("PANTAU_MQTT_URL", f"mqtt://{mqtt_host}:{mqtt_port}"),
        line("PANTAU_API", api_url),
        "",
        "# Direct devices: publish single readings on pantau/v1/<site>/<id>/reading.",
    ]
    gateways = sorted(registry.gateways.values(), key=lambda g: g.id)
    for gw in (g for g in gateways if g.direct):
        state = "LEFT OUT (not simulated)" if gw.id in without else "simulated"
        out.append(
            line(
                env_name(gw.id, "PASSWORD"), passwords[gw.id], f"{gw.id} at site {gw.site}; {state}"
            )
        )
    out += [
        "",
        "# Gateways: publish batches on pantau/v1/<site>/<id>/readings. A gateway left out with",
        "# --without has no simulated agent; its sensors' serial lines are given for yours.",
    ]
    for gw in (g for g in gateways if not g.direct):
        state = "LEFT OUT: attach yours" if gw.id in without else "simulated agent running"
        out.append(
            line(
                env_name(gw.id, "PASSWORD"), passwords[gw.id], f"{gw.id} at site {gw.site}; {state}"
            )
        )
        if gw.id in without:
            ports = json.dumps(dict(serial_ports.get(gw.id, {})), sort_keys=True)
            out.append(line(env_name(gw.id, "SERIAL_PORTS"), ports))
    out += [
        "",
        "# A device of your own that is not in the city: add it to the running demo (its city",
        "# file and its broker account; it prints the config or mosquitto_pub line, secret once):",
        '#   PANTAU_BROKER_ADMIN_PASSWORD="$PANTAU_BROKER_ADMIN_PASSWORD" pantau gateway add ID \\',
        '#     --site SITE --city "$PANTAU_CITY_FILE" --url "$PANTAU_MQTT_URL" [--direct]',
        line("PANTAU_BROKER_ADMIN_PASSWORD", admin_password),
        line("PANTAU_CITY_FILE", str(city_file)),
        "",
    ]
    return "\n".join(out)


__all__ = ["device_access", "env_name"]

"""``pantau deploy secrets``: the secret files docker-compose.yml mounts (compose ``secrets:``).

Every secret of the stack is one file in one folder (``./secrets`` beside the compose file),
read by the services through ``PANTAU_<NAME>_FILE`` (contract/secrets.py), Grafana's
``__FILE`` variables and ``$__file{}``, and mosquitto_sub's options file. Nothing secret is in
the environment, on a command line or in the image (docs/adr/0020).

Modes: the folder is 0700, so no other user of the host can reach a file in it. The files are
0444: compose bind-mounts each file into its container with the host's owner and mode (it
cannot change them outside swarm), and the services run as their own users (pantau 10001,
grafana 472), so a 0600 file owned by the operator would be unreadable to them.
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path
from typing import Annotated, TextIO

import typer

app = typer.Typer(no_args_is_help=True, help="Deployment helpers for docker-compose.yml.")

#: Secrets that only the stack's own services share: generated here.
GENERATED = (
    "influx_admin_password",
    "influx_writer_password",
    "influx_reader_password",
    "grafana_admin_password",
)
#: Broker account (from ``pantau broker init``'s output) -> the secret file it goes to.
MQTT_ACCOUNTS = {
    "pantau-ingest": "mqtt_ingest_password",
    "pantau-api": "mqtt_api_password",
    "gw-kariadi": "mqtt_gw_kariadi_password",
}
#: The broker healthcheck's account; its password goes into mosquitto_sub's options file.
HEALTH_ACCOUNT = "pantau-health"
HEALTH_OPTIONS = "mosquitto_sub"


def _write(folder: Path, name: str, text: str) -> bool:
    """Write ``folder/name`` unless it exists (a rerun never changes a live password)."""
    path = folder / name
    if path.exists():
        return False
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
    return True


def write_secrets(folder: Path, broker_lines: TextIO | None) -> tuple[list[str], list[str]]:
    """Create the folder (0700) and every missing secret file. ``broker_lines`` is ``pantau
    broker init``'s output: the stack's MQTT accounts go to files, every other line is handed
    back for the operator's vault. Returns (files written, lines not used)."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    folder.chmod(0o700)
    written = [n for n in GENERATED if _write(folder, n, secrets.token_urlsafe(24))]
    unused: list[str] = []
    for line in broker_lines or ():
        fields = line.split()
        if len(fields) != 3:
            unused.append(line.rstrip("\n"))
            continue
        user, _client_id, password = fields
        if user in MQTT_ACCOUNTS and _write(folder, MQTT_ACCOUNTS[user], password):
            written.append(MQTT_ACCOUNTS[user])
        elif user == HEALTH_ACCOUNT and _write(folder, HEALTH_OPTIONS, f"-P {password}\n"):
            written.append(HEALTH_OPTIONS)
        elif user not in MQTT_ACCOUNTS and user != HEALTH_ACCOUNT:
            unused.append(line.rstrip("\n"))
    return written, unused


@app.command("secrets")
def secrets_command(
    folder: Annotated[Path, typer.Argument(help="where compose reads them")] = Path("secrets"),
) -> None:
    """Create the compose stack's secret files: fresh InfluxDB and Grafana passwords, and,
    from ``pantau broker init``'s output on stdin, the MQTT passwords of the ingester, the API,
    the broker healthcheck and the example gateway. Existing files are kept. The other
    accounts' lines are printed back on stdout: keep them in your vault."""
    lines = None if sys.stdin.isatty() else sys.stdin
    written, unused = write_secrets(folder, lines)
    for line in unused:
        typer.echo(line)
    missing = [
        name
        for name in (*GENERATED, *MQTT_ACCOUNTS.values(), HEALTH_OPTIONS)
        if not (folder / name).exists()
    ]
    typer.echo(f"{folder}: wrote {', '.join(written) or 'nothing'}", err=True)
    if missing:
        typer.echo(f"still missing: {', '.join(missing)} (pipe `pantau broker init` in)", err=True)
        raise typer.Exit(1)

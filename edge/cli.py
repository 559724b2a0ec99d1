"""``pantau edge``: run the gateway agent, or show what it last reported."""

from __future__ import annotations

import logging
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import orjson
import typer

from contract.errors import ConfigError
from edge.agent import EdgeAgent
from edge.config import load_settings

app = typer.Typer(no_args_is_help=True, help="The gateway agent (serial sensors -> MQTT).")

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help="YAML file with settings (keys = field names); PANTAU_* env vars override it.",
        dir_okay=False,
    ),
]


@app.command()
def run(
    config: ConfigOption = None,
    log_level: Annotated[
        str, typer.Option(envvar="PANTAU_LOG_LEVEL", help="DEBUG, INFO, WARNING...")
    ] = "INFO",
) -> None:
    """Read the serial ports and publish batches until SIGTERM/SIGINT (then exit 0)."""
    logging.basicConfig(
        level=log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        settings = load_settings(config)
    except ConfigError as exc:
        typer.echo(f"pantau edge: {exc}", err=True)
        raise typer.Exit(2) from None
    agent = EdgeAgent(settings=settings, config_file=config)

    def stop(signum: int, _frame: FrameType | None) -> None:
        logging.getLogger(__name__).info("signal %d: stopping", signum)
        agent.request_stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    agent.run()


@app.command()
def status(
    file: Annotated[
        Path | None,
        typer.Argument(
            help="the status file to read (e.g. /var/lib/pantau-edge/gw.spool.status.json);"
            " given this way, no agent settings or password are needed",
            dir_okay=False,
            show_default=False,
        ),
    ] = None,
    file_option: Annotated[
        Path | None,
        typer.Option("--file", help="the same as the FILE argument", dir_okay=False),
    ] = None,
    config: ConfigOption = None,
    headline: Annotated[
        bool | None,
        typer.Option(
            "--summary/--json-only",
            help="Print a readable summary (uplink state first) on stderr before the JSON;"
            " default: when stderr is a terminal.",
        ),
    ] = None,
) -> None:
    """Print the status the local agent last wrote (JSON, from the file next to its spool),
    after a summary that leads with the uplink state. Name the file to read it without the
    agent's settings; otherwise the settings (--config, PANTAU_*) say where it is."""
    if file is not None and file_option is not None and file != file_option:
        typer.echo("pantau edge: give the status file once (FILE or --file)", err=True)
        raise typer.Exit(2)
    path = file if file is not None else file_option
    if path is None:
        # Reading a file needs no credentials; only locating it does, through the settings.
        try:
            path = load_settings(config).status_file
        except ConfigError as exc:
            typer.echo(f"pantau edge: {exc}", err=True)
            raise typer.Exit(2) from None
    try:
        doc = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        typer.echo(f"no status yet at {path}: is the agent running?", err=True)
        raise typer.Exit(1) from None
    except (OSError, orjson.JSONDecodeError) as exc:
        typer.echo(f"cannot read {path}: {exc}", err=True)
        raise typer.Exit(1) from None
    # The summary goes to stderr so stdout stays the JSON document scripts parse.
    if headline is None:
        headline = sys.stderr.isatty()
    if headline and isinstance(doc, dict):
        typer.echo(summary(doc), err=True)
    typer.echo(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode())


def _when(ms: object) -> str:
    if not isinstance(ms, int) or ms <= 0:
        return "?"
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def summary(doc: dict[str, Any]) -> str:
    """A few lines a technician reads first: agent state, uplink state and since when, spool,
    and which sensors are silent, skewed or losing readings."""
    stats = doc.get("stats") or {}
    link = str(stats.get("link", "unknown"))
    lines = [
        f"{doc.get('gw', '?')}: agent {doc.get('state', '?')},"
        f" status written {_when(doc.get('ts'))}",
        f"  UPLINK {link.upper()} since {_when(stats.get('link_since'))}"
        f" ({stats.get('link_for_s', '?')} s before that status);"
        f" {stats.get('link_reconnects', 0)} reconnect(s), {stats.get('link_losses', 0)} loss(es)"
        f" of which {stats.get('link_stalls', 0)} half-open",
    ]
    # Why the link was lost, and why the latest attempt to get it back failed: a half-open
    # link followed by "TLS: ..." retries are two different problems.
    lost, latest = stats.get("link_loss_reason"), stats.get("link_reason")
    if lost:
        lines.append(f"  last loss: {lost}")
    if latest and latest != lost:
        lines.append(f"  latest attempt: {latest}")
    lines.append(
        f"  spool: {stats.get('spool_depth', '?')} reading(s) waiting,"
        f" oldest {stats.get('spool_oldest_age_s', '?')} s"
    )
    offset = doc.get("clock_offset_ms")
    lines.append(
        "  gateway clock: "
        + ("NTP offset unknown" if offset is None else f"{offset:+d} ms from NTP time")
    )
    silent = doc.get("sensors_silent") or []
    lines.append(
        f"  sensors: {stats.get('sensors', 0)} heard, {len(silent)} silent"
        + (f" ({', '.join(silent)})" if silent else "")
        + f", {stats.get('sensors_skewed', 0)} skewed clock(s),"
        f" {stats.get('seq_gaps', 0)} missing reading(s), {stats.get('sensor_resets', 0)} reset(s)"
    )
    return "\n".join(lines)

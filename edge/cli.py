"""``pantau edge``: run the gateway agent, or show what it last reported."""

from __future__ import annotations

import logging
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import Annotated

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
    log_level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING...")] = "INFO",
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
def status(config: ConfigOption = None) -> None:
    """Print the status the local agent last wrote (JSON, from the file next to its spool)."""
    try:
        settings = load_settings(config)
    except ConfigError as exc:
        typer.echo(f"pantau edge: {exc}", err=True)
        raise typer.Exit(2) from None
    path = settings.status_file
    try:
        doc = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        typer.echo(f"no status yet at {path}: is the agent running?", err=True)
        raise typer.Exit(1) from None
    except (OSError, orjson.JSONDecodeError) as exc:
        typer.echo(f"cannot read {path}: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode())

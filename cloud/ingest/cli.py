"""``pantau ingest``: run the ingester, inspect its dead letters."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer
from pydantic import ValidationError

from cloud.ingest.deadletter import DeadLetterStore
from cloud.ingest.schema import apply_schema
from cloud.ingest.service import Ingester, influx_of
from cloud.ingest.settings import IngestSettings
from contract import StorageError

app = typer.Typer(no_args_is_help=True, help="The ingester: MQTT -> InfluxDB.")
log = logging.getLogger("cloud.ingest")


@app.command()
def run(
    log_level: Annotated[str, typer.Option(help="Python logging level")] = "INFO",
) -> None:
    """Run the ingester with settings from PANTAU_* environment variables (see README)."""
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        settings = IngestSettings()
    except ValidationError as exc:
        typer.echo(f"invalid settings: {exc}", err=True)
        raise typer.Exit(2) from None
    ingester = Ingester(settings=settings)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info(
            "signal %d: flushing and stopping (at most %.0f s)", signum, settings.shutdown_timeout_s
        )
        ingester.stop()
        _exit_at(time.monotonic() + settings.shutdown_timeout_s)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        ingester.run()
    except Exception:  # the process's outermost loop: log with traceback, exit non-zero
        log.exception("ingester failed")
        raise typer.Exit(1) from None


def _exit_at(deadline: float) -> None:
    """Whatever the ingester is waiting for (a hung InfluxDB request, a broker that stopped
    answering), end the process at ``deadline``. Nothing unstored was acknowledged, so the
    broker redelivers what was in hand: exiting hard loses nothing."""

    def watchdog() -> None:
        time.sleep(max(0.0, deadline - time.monotonic()))
        log.error("still stopping at the shutdown deadline: exiting now")
        logging.shutdown()
        os._exit(1)

    threading.Thread(target=watchdog, name="shutdown-watchdog", daemon=True).start()


@app.command("init-db")
def init_db() -> None:
    """Create the database, its retention policies and downsampling continuous queries
    (docs/schema.md) from PANTAU_* settings; idempotent. ``run`` does the same at start."""
    try:
        settings = IngestSettings()
    except ValidationError as exc:
        typer.echo(f"invalid settings: {exc}", err=True)
        raise typer.Exit(2) from None
    try:
        with influx_of(settings) as influx:
            influx.ensure_database()
            ran = apply_schema(influx, settings.storage_schema)
    except StorageError as exc:
        typer.echo(f"InfluxDB: {exc}", err=True)
        raise typer.Exit(1) from None
    for statement in ran:
        typer.echo(statement)
    typer.echo(f"{settings.influx_db}: {len(ran)} statement(s) applied", err=True)


@app.command("dead-letters")
def dead_letters(
    directory: Annotated[
        Path | None, typer.Option("--dir", help="dead-letter dir (default PANTAU_DEAD_LETTER_DIR)")
    ] = None,
    reason: Annotated[str | None, typer.Option(help="only this RejectReason value")] = None,
    show_payload: Annotated[bool, typer.Option("--payload", help="print raw payloads")] = False,
) -> None:
    """List dead-lettered messages and readings, oldest first."""
    if directory is None:
        directory = IngestSettings().dead_letter_dir
    count = 0
    for rec in DeadLetterStore(directory=directory).read(reason=reason):
        when = datetime.fromtimestamp(rec.received_at / 1000, tz=UTC).isoformat()
        at = "" if rec.index is None else f" reading {rec.index}"
        typer.echo(f"{when} {rec.reason} {rec.gateway or '-'} {rec.topic}{at}: {rec.detail}")
        if show_payload:
            typer.echo("  " + rec.payload.decode("utf-8", errors="backslashreplace"))
        count += 1
    typer.echo(f"{count} dead letter(s)", err=True)
    sys.stdout.flush()

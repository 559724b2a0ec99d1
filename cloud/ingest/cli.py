"""``pantau ingest``: run the ingester, inspect and replay its dead letters."""

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
from typing import Annotated, TypeVar

import typer
from pydantic import SecretStr

from city import load_registry
from cloud.ingest.accounts import InitDbSettings, init_database
from cloud.ingest.affinity import pin_to_one_cpu
from cloud.ingest.allocator import keep_heap_top
from cloud.ingest.deadletter import DeadLetterStore
from cloud.ingest.migrations import MigrationError
from cloud.ingest.readiness import readiness_problem
from cloud.ingest.replay import Broker, ReplayError, Selection, publish_all, select
from cloud.ingest.service import Ingester
from cloud.ingest.settings import IngestSettings
from cloud.ingest.writer import quiet_routine_requests
from contract import ConfigError, RejectReason, StorageError
from contract.secrets import DEV_REPLAY_MQTT_PASSWORD, settings_or_config_error

_S = TypeVar("_S", bound=IngestSettings)
KNOWN_REASONS = tuple(r.value for r in RejectReason)

app = typer.Typer(no_args_is_help=True, help="The ingester: MQTT -> InfluxDB.")
log = logging.getLogger("cloud.ingest")


def _settings() -> IngestSettings:
    """The ingester's settings from PANTAU_*."""
    return _load(IngestSettings)


def _load(kind: type[_S]) -> _S:
    """Settings from PANTAU_*; bad ones are one line on stderr and exit status 2."""
    try:
        return settings_or_config_error(kind, what="ingest settings")
    except ConfigError as exc:
        typer.echo(f"pantau ingest: {exc}", err=True)
        raise typer.Exit(2) from None


@app.command()
def run(
    log_level: Annotated[
        str, typer.Option(envvar="PANTAU_LOG_LEVEL", help="Python logging level")
    ] = "INFO",
) -> None:
    """Run the ingester with settings from PANTAU_* environment variables (see README). Bad
    settings or a bad city file: one line on stderr, exit 2."""
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    quiet_routine_requests(logging.getLogger().level)
    keep_heap_top()  # windows reuse freed heap pages instead of faulting them in (allocator.py)
    settings = _settings()
    try:
        registry = load_registry(settings.city_file)
    except ConfigError as exc:
        typer.echo(f"pantau ingest: {exc}", err=True)
        raise typer.Exit(2) from None
    # Once the configuration is known good (a bad one is one line and nothing else), and before
    # any thread starts: they inherit it (affinity.py).
    if settings.pin_one_cpu:
        pin_to_one_cpu(settings.cpu_claims_dir)
    ingester = Ingester(settings=settings, registry=registry)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info(
            "signal %d: flushing and stopping (at most %.0f s)", signum, settings.shutdown_timeout_s
        )
        ingester.stop()
        _exit_at(time.monotonic() + settings.shutdown_timeout_s)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    # SIGHUP: look at the city file now (swapped in between windows if valid; docs/adr/0018).
    signal.signal(signal.SIGHUP, lambda signum, frame: ingester.registry_watch.request())
    try:
        ingester.run()
    except (ConfigError, MigrationError) as exc:  # e.g. init-db never run; data too new
        typer.echo(f"pantau ingest: {exc}", err=True)
        raise typer.Exit(2) from None
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
    (docs/schema.md), migrates it to this release's version (cloud/ingest/migrations) and,
    given PANTAU_INFLUX_WRITER_PASSWORD / _READER_PASSWORD, makes the least-privilege accounts
    (docs/adr/0020), as the admin account PANTAU_INFLUX_USERNAME; idempotent, and re-run to
    rotate a password. ``run`` only checks what this creates."""
    settings = _load(InitDbSettings)
    try:
        ran, migrated = init_database(settings)
    except StorageError as exc:
        typer.echo(f"InfluxDB: {exc}", err=True)
        raise typer.Exit(1) from None
    for statement in ran:
        typer.echo(statement)
    typer.echo(f"{settings.influx_db}: {len(ran)} statement(s) applied", err=True)
    typer.echo(migrated, err=True)


@app.command()
def health(
    port: Annotated[
        int, typer.Option(envvar="PANTAU_METRICS_PORT", help="the ingester's metrics port")
    ],
) -> None:
    """Exit 0 when the ingester on this host is ready: connected with every subscription
    granted and its InfluxDB writes not failing (its /metrics). Otherwise say why, exit 1.
    Needs no settings or secrets: compose runs it as the healthcheck."""
    problem = readiness_problem(f"http://127.0.0.1:{port}/metrics")
    if problem is not None:
        typer.echo(f"not ready: {problem}", err=True)
        raise typer.Exit(1)
    typer.echo("ready")


def _store_of(directory: Path | None) -> DeadLetterStore:
    """The store ``--dir`` names, else the one the ingester's settings use."""
    if directory is not None:
        return DeadLetterStore(directory=directory)
    settings = _settings()
    return DeadLetterStore(
        directory=settings.dead_letter_dir, max_bytes=settings.dead_letter_max_bytes
    )


def _check_reason(reason: str | None) -> None:
    if reason is not None and reason not in KNOWN_REASONS:
        typer.echo(
            f"--reason {reason!r} is not a known RejectReason (known: "
            f"{', '.join(KNOWN_REASONS)}), so it matches no dead letter.",
            err=True,
        )
        raise typer.Exit(2)


def _ms(value: str | None, option: str) -> int | None:
    """ISO 8601 date or date-time (UTC unless it has an offset) -> ms since the epoch."""
    if value is None:
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not an ISO 8601 time", param_hint=option) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)


Dir = Annotated[
    Path | None,
    typer.Option("--dir", help="dead-letter dir (default: the ingester's, PANTAU_DEAD_LETTER_DIR)"),
]
Reason = Annotated[str | None, typer.Option(help="only this RejectReason value")]
Gateway = Annotated[str | None, typer.Option(help="only this gateway id")]
Since = Annotated[str | None, typer.Option(help="received at or after (ISO 8601, UTC default)")]
Until = Annotated[str | None, typer.Option(help="received before (ISO 8601, UTC default)")]


@app.command("dead-letters")
def dead_letters(
    directory: Dir = None,
    reason: Reason = None,
    gateway: Gateway = None,
    since: Since = None,
    until: Until = None,
    show_payload: Annotated[bool, typer.Option("--payload", help="print raw payloads")] = False,
) -> None:
    """List dead-lettered messages and readings, oldest received first, then a summary
    (including what rotation dropped) on stderr."""
    _check_reason(reason)
    store = _store_of(directory)
    records = store.read(
        reason=reason,
        gateway=gateway,
        since_ms=_ms(since, "--since"),
        until_ms=_ms(until, "--until"),
    )
    payloads = store.payloads({r.fingerprint for r in records}) if show_payload else {}
    for rec in records:
        when = datetime.fromtimestamp(rec.received_at / 1000, tz=UTC).isoformat()
        at = "" if rec.index is None else f" reading {rec.index}"
        typer.echo(f"{when} {rec.reason} {rec.gateway or '-'} {rec.topic}{at}: {rec.detail}")
        if show_payload and rec.fingerprint in payloads:
            raw = payloads[rec.fingerprint][1]
            typer.echo("  " + raw.decode("utf-8", errors="backslashreplace"))
    sys.stdout.flush()
    rotated = store.rotated()
    messages = len({r.fingerprint for r in records})
    typer.echo(
        f"{len(records)} dead letter(s) in {messages} message(s), oldest first; "
        f"{rotated.records} older record(s) dropped by rotation "
        f"({store.size_bytes()} of {store.max_bytes} bytes used)",
        err=True,
    )


@app.command()
def replay(
    directory: Dir = None,
    reason: Reason = None,
    gateway: Gateway = None,
    since: Since = None,
    until: Until = None,
    dry_run: Annotated[bool, typer.Option(help="only say what would be replayed")] = False,
) -> None:
    """Re-publish the selected dead-lettered messages (each once) to their original topics,
    so they go through the ingester again: e.g. after a sensor was added to the registry and
    the ingester restarted. Publishes as PANTAU_REPLAY_MQTT_USERNAME to PANTAU_MQTT_URL."""
    _check_reason(reason)
    store = _store_of(directory)
    selection = Selection(
        reason=reason,
        gateway=gateway,
        since_ms=_ms(since, "--since"),
        until_ms=_ms(until, "--until"),
    )
    messages = select(store, selection)
    if dry_run:
        for topic, payload in messages:
            typer.echo(f"{topic} ({len(payload)} bytes)")
        typer.echo(f"{len(messages)} message(s) would be replayed", err=True)
        return
    settings = _settings()
    password = settings.replay_mqtt_password
    if password is None:
        if settings.mode == "production":
            typer.echo("set PANTAU_REPLAY_MQTT_PASSWORD (the replay account's password)", err=True)
            raise typer.Exit(2)
        # The test broker's and the demo's account; production requires the setting.
        password = SecretStr(DEV_REPLAY_MQTT_PASSWORD)
    url = settings.mqtt_url
    broker = Broker(
        host=url.host,
        port=url.port,
        tls=url.tls,
        username=settings.replay_mqtt_username,
        password=password,
        tls_files=settings,
    )
    try:
        sent = publish_all(broker, messages)
    except ReplayError as exc:
        typer.echo(f"replay failed: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"replayed {sent} message(s)", err=True)

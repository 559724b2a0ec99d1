"""``pantau api run``: serve the read API with uvicorn."""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Generator
from types import FrameType
from typing import Annotated

import httpx
import typer
import uvicorn

from city import load_registry
from cloud.api.cli_keys import app as key_app
from cloud.api.config import ApiSettings
from cloud.api.live import LiveHub
from cloud.api.main import create_app
from contract.errors import ConfigError
from contract.secrets import settings_or_config_error

app = typer.Typer(no_args_is_help=True, help="The read API (beds, BOR, crowds, queues).")
app.add_typer(key_app, name="key")


class _Server(uvicorn.Server):
    """uvicorn re-raises SIGTERM/SIGINT after its graceful shutdown, which would end the
    process by the signal; a requested stop is a clean exit (status 0)."""

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # Live streams (/v1/stream) never end by themselves, and the graceful shutdown waits
        # for open responses: end them first.
        live = getattr(getattr(self.config.app, "state", None), "hub", None)
        if isinstance(live, LiveHub):
            live.end_streams()
        super().handle_exit(sig, frame)

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        handled = (signal.SIGINT, signal.SIGTERM)
        original = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)


@app.command()
def run(
    host: Annotated[
        str | None, typer.Option(help="bind address (default: PANTAU_API_HOST)")
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="port (default: PANTAU_API_PORT)", min=0, max=65535)
    ] = None,
    log_level: Annotated[
        str, typer.Option(envvar="PANTAU_LOG_LEVEL", help="debug, info, warning, error")
    ] = "info",
) -> None:
    """Serve the API (settings from PANTAU_* environment variables; docs at /docs).
    SIGTERM or Ctrl-C finishes open requests and exits 0. Bad settings or a bad city file:
    one line on stderr, exit 2."""
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        settings = settings_or_config_error(ApiSettings, what="API settings")
        # Read before uvicorn starts: a bad file is one line here, a traceback in a lifespan.
        registry = load_registry(settings.city_file)
    except ConfigError as exc:
        typer.echo(f"pantau api: {exc}", err=True)
        raise typer.Exit(2) from None
    updates: dict[str, object] = {}
    if host is not None:
        updates["api_host"] = host
    if port is not None:
        updates["api_port"] = port
    settings = settings.model_copy(update=updates)
    config = uvicorn.Config(
        create_app(settings, registry=registry),
        host=settings.api_host,
        port=settings.api_port,
        log_level=log_level.lower(),
        proxy_headers=True,
        lifespan="on",
    )
    server = _Server(config)
    server.run()
    if not server.started:
        # Start-up failed (port in use...): uvicorn has logged why.
        raise typer.Exit(1)


@app.command()
def health(
    port: Annotated[
        int, typer.Option(envvar="PANTAU_API_PORT", help="the API's port on this host")
    ] = 8000,
) -> None:
    """Exit 0 when the API on this host answers /healthz with 200 (it reaches InfluxDB);
    otherwise say why and exit 1. Needs no settings or secrets: compose's healthcheck."""
    url = f"http://127.0.0.1:{port}/healthz"
    try:
        resp = httpx.get(url, timeout=3.0)
    except httpx.HTTPError as exc:
        typer.echo(f"not ready: no answer at {url} ({type(exc).__name__})", err=True)
        raise typer.Exit(1) from None
    if resp.status_code != 200:
        typer.echo(f"not ready: {url} answered {resp.status_code}", err=True)
        raise typer.Exit(1)
    typer.echo("ready")

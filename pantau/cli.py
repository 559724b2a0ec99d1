"""The ``pantau`` command: one entry point, one sub-command per deployable."""

from __future__ import annotations

import sys
from typing import Any

import typer
from pydantic import ValidationError

from cloud.api.cli import app as api_app
from cloud.ingest.cli import app as ingest_app
from contract.errors import ConfigError
from contract.secrets import describe_settings_error
from edge.cli import app as edge_app
from firmware_sim.cli import app as fwsim_app
from pantau.admin import broker_app, city_app
from pantau.backup import backup
from pantau.demo import demo
from pantau.deploy import app as deploy_app
from pantau.gateway_cli import gateway_app
from pantau.grafana_push import app as grafana_app
from pantau.migrate import migrate
from pantau.migrate_broker import migrate_broker
from pantau.restore import restore


class _Pantau(typer.Typer):
    """The top-level command. Each sub-command turns its own bad configuration into one line
    and exit status 2; this is the net under all of them, so that no command (present or
    future) prints a traceback, or pydantic's echo of a secret, for a bad file or setting."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().__call__(*args, **kwargs)
        except ConfigError as exc:
            typer.echo(f"pantau: {exc}", err=True)
            sys.exit(2)
        except ValidationError as exc:
            typer.echo(
                f"pantau: {describe_settings_error(exc, what='settings', source='environment')}",
                err=True,
            )
            sys.exit(2)


app = _Pantau(
    name="pantau",
    help="Pantau: city telemetry from sensor to dashboard (beds, crowds, queues).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(edge_app, name="edge")
app.add_typer(ingest_app, name="ingest")
app.add_typer(api_app, name="api")
app.add_typer(fwsim_app, name="fwsim")
app.add_typer(broker_app, name="broker")
app.add_typer(city_app, name="city")
app.add_typer(gateway_app, name="gateway")
app.add_typer(grafana_app, name="grafana")
app.add_typer(deploy_app, name="deploy")
app.command()(demo)
app.command()(migrate)
app.command("migrate-broker")(migrate_broker)
app.command()(backup)
app.command()(restore)

if __name__ == "__main__":  # pragma: no cover
    app()

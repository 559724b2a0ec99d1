"""The ``pantau`` command: one entry point, one sub-command per deployable."""

from __future__ import annotations

import typer

from cloud.api.cli import app as api_app
from cloud.ingest.cli import app as ingest_app
from edge.cli import app as edge_app
from firmware_sim.cli import app as fwsim_app
from pantau.admin import broker_app, city_app
from pantau.demo import demo
from pantau.grafana_push import app as grafana_app

app = typer.Typer(
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
app.add_typer(grafana_app, name="grafana")
app.command()(demo)

if __name__ == "__main__":  # pragma: no cover
    app()

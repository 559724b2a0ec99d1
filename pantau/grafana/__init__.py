"""Pantau's Grafana boards and alert rules as code (grafana-foundation-sdk builders).

``python -m pantau.grafana`` regenerates grafana/dashboards/*.json and
grafana/provisioning/alerting/pantau-alerts.yaml; ``--check`` fails if the committed files
differ. Needs the ``grafana`` extra (installed with ``.[dev]``); the generated files do not.
"""

from pantau.grafana.render import generated_files, stale_files, write_files

__all__ = ["generated_files", "stale_files", "write_files"]

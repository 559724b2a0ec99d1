"""Where the repository's shared config files are, for a checkout (editable install)."""

from __future__ import annotations

import os
from pathlib import Path

#: The checkout root; PANTAU_HOME overrides it when the package is installed elsewhere.
ROOT = Path(os.environ.get("PANTAU_HOME", Path(__file__).resolve().parents[1]))
MOSQUITTO_DIR = ROOT / "mosquitto"
GRAFANA_DIR = ROOT / "grafana"
COMPOSE_FILE = ROOT / "docker-compose.yml"

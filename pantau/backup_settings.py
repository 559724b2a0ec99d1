"""Where ``pantau backup`` takes each part from and ``pantau restore`` puts it back: one
settings class, env prefix ``PANTAU_`` (the names the services already use where they share
one, e.g. PANTAU_CITY_FILE, PANTAU_DEAD_LETTER_DIR, PANTAU_INFLUX_DB)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from city import DEMO_CITY


class BackupSettings(BaseSettings):
    """Defaults are the production paths of mosquitto/mosquitto.conf and the ingester's."""

    model_config = SettingsConfigDict(env_prefix="PANTAU_", extra="ignore")

    #: InfluxDB's backup/restore (RPC) address: influxd's top-level ``bind-address``, port 8088
    #: by default, loopback only (it has no authentication).
    influx_rpc: str = Field(default="127.0.0.1:8088", pattern=r"^[^\s:]+:[0-9]{1,5}$")
    influx_db: str = "pantau"
    city_file: Path = DEMO_CITY
    #: A folder of further registry files (drop-ins), backed up and restored as a whole.
    city_dropin_dir: Path | None = None
    #: The dynamic security plugin's state (accounts, roles): ``plugin_opt_config_file``.
    broker_identity_file: Path = Path("/mosquitto/identity/dynamic-security.json")
    #: Sessions, queued messages and retained messages: ``persistence_location``/mosquitto.db.
    broker_persistence_file: Path = Path("/mosquitto/data/mosquitto.db")
    dead_letter_dir: Path = Path("./var/dead-letter")
    #: How long to wait for the broker to write its persistence file after SIGUSR1.
    broker_save_timeout_s: float = Field(default=30.0, gt=0)

"""Settings of the read API (``ApiSettings``), from ``PANTAU_*`` environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from city import DEMO_CITY
from contract.mqtttls import MqttTlsSettings
from contract.mqtturl import BrokerUrl, MqttUrl
from contract.secrets import SecretFileSettings, require_secret


class ApiSettings(MqttTlsSettings, SecretFileSettings):
    """Everything the API needs; validated when built, so a bad deployment fails at start-up.
    The broker's TLS settings (``mqtt_ca_file``, ...) come from :class:`MqttTlsSettings`."""

    model_config = SettingsConfigDict(env_prefix="PANTAU_", extra="ignore")

    mode: Literal["production", "development"] = "development"
    influx_url: str = "http://127.0.0.1:8086"
    influx_db: str = "pantau"
    influx_username: str | None = None
    influx_password: SecretStr | None = None
    influx_token: SecretStr | None = None
    influx_timeout_s: float = Field(default=5.0, gt=0)
    city_file: Path = DEMO_CITY
    #: Seconds between looks at ``city_file``; a changed, valid file is swapped in between
    #: requests without a restart. 0: never. docs/adr/0018-registry-hot-reload.md
    registry_poll_s: float = Field(default=5.0, ge=0)
    #: A reading older than this is flagged ``stale`` (a silent ward or gate).
    stale_after_s: float = Field(default=900.0, gt=0)
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=0, le=65535)
    mqtt_url: MqttUrl = BrokerUrl.parse("mqtt://127.0.0.1:1883")
    mqtt_username: str = "pantau-api"
    #: The broker binds every account to one client id (docs/adr/0010): the API's account is
    #: bound to ``pantau-api``; a second API copy needs an account (and id) of its own.
    mqtt_client_id: str = "pantau-api"
    mqtt_password: SecretStr | None = None
    #: The ingesters' PANTAU_MQTT_SHARED_GROUP, whose state topic the API follows for its
    #: current values (None: a lone ingester, contract.topics.LONE_INGEST_GROUP).
    ingest_group: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    #: Seconds of the queues' world per second of the readings' timestamps: 1 for real kiosks;
    #: a simulator that runs its models faster than its clock (the demo: 120) sets its speedup,
    #: so an estimated wait is in the time the people in the simulated queue would wait.
    queue_time_scale: float = Field(default=1.0, gt=0)
    #: SQLite file of API keys (``pantau api key create``). Unset: in development the API is
    #: open (no keys, no limits); in production every request is public.
    api_keys_db: Path | None = None
    #: Requests a minute per key (a key may set its own with ``--rate-per-min``).
    api_rate_per_min: int = Field(default=600, ge=1)
    #: Requests a minute per client address without a key (or with a bad one).
    api_anonymous_rate_per_min: int = Field(default=120, ge=1)
    #: Origins a browser may call the API from (CORS), e.g. ``["https://dinkes.example.go.id"]``;
    #: ``["*"]`` for any. Empty: no CORS headers.
    cors_origins: list[str] = Field(default_factory=list)
    #: Live stream (/v1/stream): events kept for clients that resume with Last-Event-ID.
    live_buffer: int = Field(default=4096, ge=16)
    #: Now-endpoints: how long a serialized answer is reused while the state has not changed
    #: (cloud/api/now_cache.py); 0 builds every answer afresh.
    now_cache_s: float = Field(default=1.0, ge=0, le=60)
    #: Now-endpoints: while state changes keep coming, the figures are rebuilt at most once per
    #: this many seconds, so an answer is at most this late (cloud/api/state.py, ADR 0025); 0
    #: rebuilds after every change.
    now_rebuild_s: float = Field(default=1.0, ge=0, le=60)

    @model_validator(mode="after")
    def _production_needs_secrets(self) -> Self:
        """In production InfluxDB must be reached with real credentials, and every secret that
        is set must pass the one secret policy (contract/secrets.py)."""
        if self.mode != "production":
            return self
        if self.influx_token is None and not self.influx_username:
            raise ValueError(
                "production mode needs InfluxDB credentials: set PANTAU_INFLUX_TOKEN, or "
                "PANTAU_INFLUX_USERNAME and PANTAU_INFLUX_PASSWORD"
            )
        if self.influx_token is not None:
            require_secret(self.influx_token, setting="PANTAU_INFLUX_TOKEN")
        if self.influx_username:
            require_secret(
                self.influx_password,
                setting="PANTAU_INFLUX_PASSWORD",
                identities=(self.influx_username,),
            )
        if self.mqtt_password is not None:
            require_secret(
                self.mqtt_password,
                setting="PANTAU_MQTT_PASSWORD",
                identities=(self.mqtt_username,),
            )
        return self

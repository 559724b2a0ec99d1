"""Settings of the read API (``ApiSettings``), from ``PANTAU_*`` environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from city import DEMO_CITY
from contract.secrets import require_secret


class ApiSettings(BaseSettings):
    """Everything the API needs; validated when built, so a bad deployment fails at start-up."""

    model_config = SettingsConfigDict(env_prefix="PANTAU_", extra="ignore")

    mode: Literal["production", "development"] = "development"
    influx_url: str = "http://127.0.0.1:8086"
    influx_db: str = "pantau"
    influx_username: str | None = None
    influx_password: SecretStr | None = None
    influx_token: SecretStr | None = None
    influx_timeout_s: float = Field(default=5.0, gt=0)
    city_file: Path = DEMO_CITY
    #: A reading older than this is flagged ``stale`` (a silent ward or gate).
    stale_after_s: float = Field(default=900.0, gt=0)
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=0, le=65535)
    mqtt_url: str = "mqtt://127.0.0.1:1883"
    mqtt_username: str = "pantau-api"
    mqtt_password: SecretStr | None = None
    #: Live stream (/v1/stream): events kept for clients that resume with Last-Event-ID.
    live_buffer: int = Field(default=4096, ge=16)

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

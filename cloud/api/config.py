"""Settings of the read API (``ApiSettings``), from ``PANTAU_*`` environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from city import DEMO_CITY

#: Passwords that ship in examples and test fixtures; never acceptable in production.
DEFAULT_PASSWORDS = frozenset({"", "changeme", "password", "admin", "pantau", "secret", "root"})


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

    @model_validator(mode="after")
    def _production_needs_secrets(self) -> Self:
        """In production InfluxDB must be reached with real credentials."""
        if self.mode != "production":
            return self
        token = self.influx_token.get_secret_value() if self.influx_token else ""
        password = self.influx_password.get_secret_value() if self.influx_password else ""
        if token and token not in DEFAULT_PASSWORDS:
            return self
        if not self.influx_username or password in DEFAULT_PASSWORDS:
            raise ValueError(
                "PANTAU_MODE=production needs InfluxDB credentials: set PANTAU_INFLUX_TOKEN, or "
                "PANTAU_INFLUX_USERNAME and a non-default PANTAU_INFLUX_PASSWORD"
            )
        return self

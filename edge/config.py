"""Settings of the edge agent: environment (``PANTAU_*``) over an optional YAML file.

The YAML file uses the field names below as keys (``gateway_id: gw-kariadi``); an environment
variable always wins over the file, so a systemd drop-in can override one value without
editing the file shipped with the gateway image.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from contract.errors import ConfigError, ConfigFileError
from contract.payload import MAX_READINGS_PER_BATCH
from contract.secrets import (
    FILE_SUFFIX,
    describe_settings_error,
    redact_url,
    refuse_url_credentials,
    require_secret,
    secret_file_values,
)
from contract.topics import ID_PATTERN, is_valid_id
from contract.yamlfile import read_yaml
from edge.spool import FullPolicy, SpoolLimits

ENV_PREFIX = "PANTAU_"


class EdgeSettings(BaseSettings):
    """Everything one gateway agent needs; validated when constructed."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Secrets may come from files: ``PANTAU_<NAME>_FILE`` (contract/secrets.py)."""
        files = InitSettingsSource(settings_cls, init_kwargs=secret_file_values(settings_cls))
        return (init_settings, env_settings, files, dotenv_settings, file_secret_settings)

    mode: Literal["production", "development"] = "development"
    gateway_id: str = Field(pattern=f"^{ID_PATTERN}$")
    site_id: str = Field(pattern=f"^{ID_PATTERN}$")
    mqtt_url: str = "mqtt://127.0.0.1:1883"
    #: Defaults to the gateway id: the broker ACL lets a gateway speak only as itself.
    mqtt_username: str | None = None
    mqtt_password: SecretStr | None = None
    #: Defaults to the gateway id. The broker binds every account to one client id (a device's
    #: is its own id) and refuses any other, so no one can take this gateway's session.
    mqtt_client_id: str | None = Field(default=None, pattern=f"^{ID_PATTERN}$")
    #: Port label -> serial URL (``/dev/ttyUSB0``, a PTY path, ``socket://host:port``).
    serial_ports: dict[str, str] = Field(min_length=1)
    serial_baudrate: int = Field(default=115200, gt=0)
    batch_max_readings: int = Field(default=200, ge=1, le=MAX_READINGS_PER_BATCH)
    batch_max_delay_s: float = Field(default=0.5, gt=0, le=3600)
    #: MQTT keepalive. The agent also watches the link itself: no packet from the broker for
    #: 1.5x this long (a half-open TCP link that passes no bytes) drops and reconnects.
    keepalive_s: int = Field(default=15, ge=2, le=3600)
    #: How long the broker keeps this gateway's session (its command subscription and queued
    #: commands) while the gateway is away.
    session_expiry_s: int = Field(default=7 * 24 * 3600, ge=0)
    status_interval_s: float = Field(default=30.0, gt=0)
    spool_path: Path = Path("pantau-edge.spool")
    #: Spool bounds (docs/adr/0005-edge-spool.md). A million readings is about 160 MB on disk
    #: and eight minutes of the largest gateway (2000 readings/s), hours of a typical one.
    spool_max_readings: int = Field(default=1_000_000, ge=1)
    #: Optional cap on the spool file in bytes (at least 1 MiB); a full file, or a full disk,
    #: gets the same policy as a spool over ``spool_max_readings``.
    spool_max_bytes: int | None = Field(default=None, ge=1 << 20)
    #: A batch spooled longer than this is dropped (counted as expired), sent or not.
    spool_max_age_s: float = Field(default=7 * 24 * 3600, gt=0)
    #: What a full spool drops: the oldest readings of the lowest-priority lane (crowd, then
    #: queue, beds last), or the new readings.
    spool_full_policy: FullPolicy = FullPolicy.DROP_OLDEST_LOWEST_LANE
    metrics_port: int | None = Field(default=None, ge=1, le=65535)
    reconnect_base_s: float = Field(default=0.5, gt=0)
    reconnect_cap_s: float = Field(default=30.0, gt=0)
    #: Sensors this gateway should hear; one never heard is reported silent like one that
    #: stopped. Sensors not listed are tracked from their first frame.
    sensors: list[str] = Field(default_factory=list)
    #: A sensor is silent when its last frame is older than this, and older than
    #: ``silent_intervals`` times its own usual reporting interval (so a sensor that reports
    #: every 10 minutes is not silent after one).
    silent_after_s: float = Field(default=60.0, gt=0)
    silent_intervals: float = Field(default=5.0, ge=1)
    #: A sensor clock further than this from the gateway's is skewed; a change larger than this
    #: between two of its frames counts as a clock jump.
    clock_jump_s: float = Field(default=60.0, gt=0)
    #: Where the gateway learns its own NTP offset: ``auto`` tries chrony then
    #: systemd-timesyncd; ``off`` reports it as unknown.
    clock_probe: Literal["auto", "chrony", "timesyncd", "off"] = "auto"
    clock_probe_interval_s: float = Field(default=64.0, gt=0)

    @field_validator("mqtt_url")
    @classmethod
    def _url_is_mqtt(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise ValueError(
                f"expected mqtt://host:port or mqtts://host:port, got {redact_url(value)!r}"
            )
        parts.port  # noqa: B018 - raises ValueError for a non-numeric port
        # The URL is logged on every (re)connect; the password has its own SecretStr setting.
        refuse_url_credentials(value, setting="PANTAU_MQTT_URL")
        return value

    @field_validator("serial_ports")
    @classmethod
    def _labels_are_ids(cls, value: dict[str, str]) -> dict[str, str]:
        for label, url in value.items():
            if not is_valid_id(label):
                raise ValueError(f"port label {label!r} must match {ID_PATTERN}")
            if not url:
                raise ValueError(f"port {label!r} has an empty serial URL")
        return value

    @field_validator("sensors")
    @classmethod
    def _sensors_are_ids(cls, value: list[str]) -> list[str]:
        for sensor in value:
            if not is_valid_id(sensor):
                raise ValueError(f"sensor id {sensor!r} must match {ID_PATTERN}")
        return value

    @model_validator(mode="after")
    def _production_needs_secret(self) -> EdgeSettings:
        """Production needs this gateway's own broker password (contract/secrets.py policy)."""
        if self.mode == "production":
            require_secret(
                self.mqtt_password,
                setting="PANTAU_MQTT_PASSWORD",
                identities=(self.username, self.gateway_id, self.site_id, self.client_id),
            )
        return self

    @property
    def username(self) -> str:
        """The broker username: explicit, else the gateway id."""
        return self.mqtt_username or self.gateway_id

    @property
    def client_id(self) -> str:
        """Stable MQTT client id, so the broker finds this gateway's persistent session:
        explicit, else the gateway id (the one the broker binds its account to)."""
        return self.mqtt_client_id or self.gateway_id

    @property
    def mqtt_host(self) -> str:
        """Broker host from ``mqtt_url``."""
        return urlsplit(self.mqtt_url).hostname or "127.0.0.1"

    @property
    def mqtt_port(self) -> int:
        """Broker port from ``mqtt_url`` (1883, or 8883 for mqtts)."""
        parts = urlsplit(self.mqtt_url)
        return parts.port or (8883 if parts.scheme == "mqtts" else 1883)

    @property
    def mqtt_tls(self) -> bool:
        """True for ``mqtts://``."""
        return urlsplit(self.mqtt_url).scheme == "mqtts"

    @property
    def spool_limits(self) -> SpoolLimits:
        """The spool bounds as the outbox takes them."""
        return SpoolLimits(
            max_readings=self.spool_max_readings,
            max_bytes=self.spool_max_bytes,
            max_age_ms=round(self.spool_max_age_s * 1000),
            policy=self.spool_full_policy,
        )

    @property
    def status_file(self) -> Path:
        """Where the agent writes its last status, next to the spool, for ``pantau edge
        status``."""
        return self.spool_path.with_name(self.spool_path.name + ".status.json")


def _read_yaml(path: Path) -> dict[str, Any]:
    doc = read_yaml(path, ConfigFileError)
    if doc is None:
        return {}
    if not isinstance(doc, dict) or not all(isinstance(k, str) for k in doc):
        raise ConfigFileError(str(path), "", "must be a mapping of setting names to values")
    return doc


def load_settings(config_file: Path | None = None) -> EdgeSettings:
    """Settings from the environment over ``config_file`` (if given) over the defaults.

    Raises :class:`ConfigError`: one line naming each bad setting's env variable and problem,
    never its value."""
    file_values = _read_yaml(config_file) if config_file is not None else {}
    env_names = {name.upper() for name in os.environ}
    # Values set in the environment are left out of the init arguments so that the env
    # source (lower priority than init arguments in pydantic-settings) supplies them.
    from_file = {
        key: value
        for key, value in file_values.items()
        if f"{ENV_PREFIX}{key.upper()}" not in env_names
        # A secret named by PANTAU_<NAME>_FILE overrides the config file like its variable.
        and f"{ENV_PREFIX}{key.upper()}{FILE_SUFFIX}" not in env_names
    }
    source = f"environment and {config_file}" if config_file is not None else "environment"
    try:
        return EdgeSettings(**from_file)
    except ValueError as exc:  # pydantic's ValidationError and pydantic-settings' SettingsError
        raise ConfigError(
            describe_settings_error(exc, what="edge settings", source=source)
        ) from None

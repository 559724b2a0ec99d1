"""Settings of the edge agent: environment (``PANTAU_*``) over an optional YAML file.

The YAML file uses the field names below as keys (``gateway_id: gw-kariadi``); an environment
variable always wins over the file, so a systemd drop-in can override one value without
editing the file shipped with the gateway image.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)
from pydantic_settings.sources.types import ConfigFileSourceType

from contract.errors import ConfigError, ConfigFileError
from contract.mqtttls import MqttTlsSettings
from contract.mqtturl import BrokerUrl, MqttUrl
from contract.payload import MAX_READINGS_PER_BATCH
from contract.secrets import SecretFileSettings, describe_settings_error, require_secret
from contract.topics import ID_PATTERN, is_valid_id
from contract.yamlfile import read_yaml
from edge.spool import FullPolicy, SpoolLimits

ENV_PREFIX = "PANTAU_"


class EdgeSettings(MqttTlsSettings, SecretFileSettings):
    """Everything one gateway agent needs; validated when constructed. The broker's TLS
    settings (``mqtt_ca_file``, ``mqtt_cert_file``, ``mqtt_key_file``) come from
    :class:`MqttTlsSettings`."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid")

    @classmethod
    def lower_sources(
        cls, settings_cls: type[BaseSettings]
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """The YAML file (``yaml_file``, set by :func:`load_settings`), below the environment
        and the secret files (contract.secrets.SecretFileSettings), above the defaults."""
        return (StrictYamlSource(settings_cls),)

    mode: Literal["production", "development"] = "development"
    gateway_id: str = Field(pattern=f"^{ID_PATTERN}$")
    site_id: str = Field(pattern=f"^{ID_PATTERN}$")
    #: ``mqtts://`` for TLS (port 8883 unless given), with PANTAU_MQTT_CA_FILE naming the CA.
    mqtt_url: MqttUrl = BrokerUrl.parse("mqtt://127.0.0.1:1883")
    #: Defaults to the gateway id: the broker ACL lets a gateway speak only as itself.
    mqtt_username: str | None = None
    mqtt_password: SecretStr | None = None
    #: The next password during a two-step rotation (docs/adr/0017-gateway-lifecycle.md): when
    #: the broker refuses the current one as bad credentials, the agent retries with this at
    #: once and keeps it. Set it before ``pantau gateway rotate --commit``.
    mqtt_password_next: SecretStr | None = None
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
            if self.mqtt_password_next is not None:
                require_secret(
                    self.mqtt_password_next,
                    setting="PANTAU_MQTT_PASSWORD_NEXT",
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


class StrictYamlSource(YamlConfigSettingsSource):
    """pydantic-settings' YAML source, reading through :func:`contract.yamlfile.read_yaml`: a
    repeated key, a bad byte or a missing file is one :class:`ConfigFileError` naming the
    file and line (``yaml.safe_load`` would keep the last of two repeated keys silently)."""

    def _read_files(
        self, files: ConfigFileSourceType | None, deep_merge: bool = False
    ) -> dict[str, Any]:
        if files is None:  # no file: environment and defaults only
            return {}
        # load_settings sets one path; anything else is a programming error.
        if not isinstance(files, Path):
            raise TypeError(f"yaml_file must be one Path, not {files!r}")
        return _read_yaml(files)


def load_settings(config_file: Path | None = None) -> EdgeSettings:
    """Settings from the environment over ``config_file`` (if given) over the defaults.

    Raises :class:`ConfigError`: one line naming each bad setting's env variable and problem,
    never its value."""
    settings_cls = EdgeSettings
    if config_file is not None:

        class FromFile(EdgeSettings):
            model_config = SettingsConfigDict(
                **{**EdgeSettings.model_config, "yaml_file": config_file}
            )

        settings_cls = FromFile
    source = f"environment and {config_file}" if config_file is not None else "environment"
    try:
        return settings_cls()
    except ValueError as exc:  # pydantic's ValidationError and pydantic-settings' SettingsError
        raise ConfigError(
            describe_settings_error(exc, what="edge settings", source=source)
        ) from None

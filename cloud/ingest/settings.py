"""Settings of the ingester (one pydantic-settings class; env prefix ``PANTAU_``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from city import DEMO_CITY
from cloud.ingest.affinity import DEFAULT_CLAIMS_DIR
from cloud.ingest.schema import StorageSchema
from contract.mqtttls import MqttTlsSettings
from contract.mqtturl import BrokerUrl, MqttUrl
from contract.secrets import (
    DEV_INGEST_MQTT_PASSWORD,
    SecretFileSettings,
    require_secret,
)

#: An InfluxQL retention duration (at least an hour, InfluxDB's minimum) or INF.
_DURATION = r"^([1-9][0-9]*[hdw]|INF)$"
#: Development password of the ``pantau-ingest`` account (the test broker and the demo use it);
#: refused in production like every well-known secret (contract/secrets.py).
DEV_MQTT_PASSWORD = DEV_INGEST_MQTT_PASSWORD


class IngestSettings(MqttTlsSettings, SecretFileSettings):
    """Everything ``pantau ingest run`` needs. In production, default or missing secrets are a
    start-up error. The broker's TLS settings (``mqtt_ca_file``, ...) come from
    :class:`MqttTlsSettings` and serve ``pantau ingest replay`` too."""

    model_config = SettingsConfigDict(env_prefix="PANTAU_", extra="ignore")

    mode: Literal["production", "development"] = "development"
    mqtt_url: MqttUrl = BrokerUrl.parse("mqtt://127.0.0.1:1883")
    mqtt_username: str = "pantau-ingest"
    mqtt_password: SecretStr = SecretStr(DEV_MQTT_PASSWORD)
    mqtt_client_id: str = "pantau-ingest-1"
    #: How long the broker keeps the session (and queues QoS 1 messages) while we are away.
    mqtt_session_expiry_s: int = Field(default=14 * 24 * 3600, ge=0)
    mqtt_keepalive_s: int = Field(default=30, ge=5)
    #: Unacknowledged messages the broker may send us (MQTT v5 Receive Maximum): this bounds
    #: the buffer, and therefore memory, while InfluxDB is slow or down.
    mqtt_receive_maximum: int = Field(default=10000, ge=1, le=65535)
    #: Scale-out: the MQTT v5 shared-subscription group the ingesters of one deployment join
    #: (``$share/<group>/...``). None: a plain subscription (one ingester). Each member needs its
    #: own PANTAU_MQTT_CLIENT_ID. See docs/adr/0006-ingester-scale-out.md.
    mqtt_shared_group: str | None = Field(
        default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
    )
    influx_url: str = "http://127.0.0.1:8086"
    influx_db: str = "pantau"
    influx_username: str | None = None
    influx_password: SecretStr | None = None
    influx_token: SecretStr | None = None
    city_file: Path = DEMO_CITY
    #: Seconds between looks at ``city_file``; a changed, valid file is swapped in without a
    #: restart (SIGHUP looks at once). 0: only on SIGHUP. docs/adr/0018-registry-hot-reload.md
    registry_poll_s: float = Field(default=5.0, ge=0)
    dead_letter_dir: Path = Path("./var/dead-letter")
    #: Bound of the dead-letter store on disk; past it the oldest records are dropped (and
    #: counted). See cloud/ingest/deadletter.py and docs/adr/0008.
    dead_letter_max_bytes: int = Field(default=1024**3, ge=1024 * 1024)
    #: Crash-loop guard: a message the ingester died on this many times is dead-lettered as
    #: ``poison`` instead of being processed again (cloud/ingest/guard.py).
    poison_max_attempts: int = Field(default=3, ge=1, le=100)
    #: ``pantau ingest replay`` publishes as this broker account (mosquitto/acl: it may write
    #: every gateway's data topics, so only operators hold its password).
    replay_mqtt_username: str = "pantau-replay"
    replay_mqtt_password: SecretStr | None = None
    flush_interval_s: float = Field(default=0.2, gt=0)
    window_max_messages: int = Field(default=5000, ge=1)
    #: A window also closes at this many payload bytes: a window's numpy columns and parsed
    #: JSON scale with its readings, and 5000 binary batches would be millions of them.
    #: Default 4 MiB storing raw points (its raw lines are the peak memory; docs/adr/0027),
    #: 8 MiB aggregates-only (:meth:`_aggregates_only_windows`).
    window_max_bytes: int = Field(default=4 * 1024 * 1024, ge=256 * 1024)
    #: Payload bytes received and not yet acknowledged, at most. Beyond it the MQTT network
    #: thread stops reading the socket until a window is done (TCP backpressure: the backlog
    #: waits at the broker), so memory is bounded in bytes, not only in messages (Receive
    #: Maximum x 256 KiB would be 2.5 GiB). Default 16 MiB, 32 MiB aggregates-only. JSON counts
    #: at half against both byte bounds (``consumer.window_bytes``).
    held_max_bytes: int = Field(default=16 * 1024 * 1024, ge=256 * 1024)
    write_chunk_lines: int = Field(default=5000, ge=1)
    #: Chunks written to InfluxDB at once (threads, one HTTP request each); a window is
    #: acknowledged only after all its chunks are stored.
    write_parallelism: int = Field(default=2, ge=1, le=16)
    #: False: "aggregates-only" mode, raw readings are validated, dead-lettered, folded into
    #: state and rollups, but not written as raw points.
    store_raw: bool = True
    #: Batches remembered per gateway to drop redelivered (gateway, batch seq) duplicates.
    dedup_per_gateway: int = Field(default=1024, ge=0)
    #: Rollup points are stamped at the start of aligned buckets of this length; a late
    #: reading rewrites the buckets it changes (docs/schema.md, "Late data").
    rollup_bucket_s: int = Field(default=60, ge=1)
    #: Readings kept in memory to recompute past buckets when late data arrives (about 56
    #: bytes each); 0 turns the correction of past buckets off.
    late_history_readings: int = Field(default=500_000, ge=0)
    #: How far back late data still corrects rollups (bounded by late_history_readings too).
    late_horizon_s: int = Field(default=6 * 3600, ge=0)
    #: Keep the process's threads on one CPU, so the GIL does not move between cores
    #: (cloud/ingest/affinity.py, docs/adr/0035); off where a CPU set is decided elsewhere.
    pin_one_cpu: bool = True
    #: Where the ingesters of one host claim a CPU each, so no two pin the same one
    #: (affinity.py, docs/adr/0044); share it between containers that share a host's CPUs.
    cpu_claims_dir: Path = DEFAULT_CLAIMS_DIR
    metrics_port: int | None = None
    #: Address the metrics endpoint listens on: loopback unless the operator opens it (in a
    #: container, 0.0.0.0 for a scraper on another host); the counters describe every device.
    metrics_host: str = "127.0.0.1"
    #: SIGTERM/SIGINT: the process exits within this many seconds. It finishes the window in
    #: hand, stores and acknowledges what it already received while time is left, and leaves
    #: the rest unacknowledged at the broker (redelivered on the next start); a watchdog ends
    #: the process at this bound whatever it is waiting for. docs/adr/0006.
    shutdown_timeout_s: float = Field(default=10.0, ge=3.0)
    #: How long raw readings and per-flush aggregates are kept (the default retention policy
    #: ``autogen``), and how long their downsampled copies (``downsampled``); InfluxQL
    #: durations, ``INF`` for ever. See docs/schema.md.
    influx_retention: str = Field(default="30d", pattern=_DURATION)
    influx_downsampled_retention: str = Field(default="730d", pattern=_DURATION)
    #: Bucket of the downsampling continuous queries (an InfluxQL duration).
    influx_downsample_every: str = Field(default="5m", pattern=r"^[1-9][0-9]*[smhd]$")

    @model_validator(mode="after")
    def _aggregates_only_windows(self) -> IngestSettings:
        """Aggregates-only, a window holds no raw lines, and its fixed cost (the rollup lines
        written, their InfluxDB round trip, the guard's commit, the acks) is most of what a
        binary window costs: unless set, windows and the held budget are twice the raw
        mode's (docs/adr/0031: 15 % less ingester CPU per binary reading, half of InfluxDB's,
        +20 MB peak). In both modes a JSON payload counts half its bytes against both
        (``consumer.window_bytes``, docs/adr/0051, 0053)."""
        if not self.store_raw:
            if "window_max_bytes" not in self.model_fields_set:
                self.window_max_bytes = 8 * 1024 * 1024
            if "held_max_bytes" not in self.model_fields_set:
                self.held_max_bytes = 32 * 1024 * 1024
        return self

    @model_validator(mode="after")
    def _refuse_unsafe(self) -> IngestSettings:
        """Production refuses weak secrets (contract/secrets.py)."""
        if self.mode == "production":
            require_secret(
                self.mqtt_password,
                setting="PANTAU_MQTT_PASSWORD",
                identities=(self.mqtt_username, self.mqtt_client_id),
            )
            if self.influx_token is not None:
                require_secret(self.influx_token, setting="PANTAU_INFLUX_TOKEN")
            elif not self.influx_username:
                raise ValueError(
                    "production mode: set PANTAU_INFLUX_TOKEN or PANTAU_INFLUX_USERNAME and "
                    "PANTAU_INFLUX_PASSWORD"
                )
            if self.influx_username:
                require_secret(
                    self.influx_password,
                    setting="PANTAU_INFLUX_PASSWORD",
                    identities=(self.influx_username,),
                )
            if self.replay_mqtt_password is not None:
                require_secret(
                    self.replay_mqtt_password,
                    setting="PANTAU_REPLAY_MQTT_PASSWORD",
                    identities=(self.replay_mqtt_username,),
                )
        return self

    @property
    def storage_schema(self) -> StorageSchema:
        """Retention policies and continuous queries the ingester (and ``init-db``) applies."""
        return StorageSchema(
            database=self.influx_db,
            retention=self.influx_retention,
            downsampled_retention=self.influx_downsampled_retention,
            every=self.influx_downsample_every,
        )

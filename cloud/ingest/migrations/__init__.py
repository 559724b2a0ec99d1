"""Versioned migrations of the data the ingester owns, applied at its start and by
``pantau migrate`` (docs/operations.md, "Upgrading"; docs/adr/0021-backup-restore-migrations.md).

Each store carries its own version marker where its data is: the dead-letter store a
``STORE_VERSION`` file in its directory, InfluxDB a point in its ``pantau_meta`` retention
policy. Steps are ordered, numbered and idempotent; a store newer than this release knows is
refused, never "migrated" backwards.
"""

from cloud.ingest.migrations.base import Applied, MigrationError, Step, run_steps
from cloud.ingest.migrations.deadletters import (
    DEAD_LETTER_STEPS,
    DEAD_LETTER_VERSION,
    dead_letter_version,
    migrate_dead_letters,
)
from cloud.ingest.migrations.influx import (
    INFLUX_STEPS,
    INFLUX_VERSION,
    influx_version,
    migrate_influx,
)

__all__ = [
    "DEAD_LETTER_STEPS",
    "DEAD_LETTER_VERSION",
    "INFLUX_STEPS",
    "INFLUX_VERSION",
    "Applied",
    "MigrationError",
    "Step",
    "dead_letter_version",
    "influx_version",
    "migrate_dead_letters",
    "migrate_influx",
    "run_steps",
]

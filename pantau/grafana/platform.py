"""The "Platform health" board for ops: is data flowing, how late, what is refused, which
gateways are offline or spooling, and which regions have gone quiet.

Ingest rate and lag come from the ingester's own ``ingest_health`` points
(cloud/ingest/health.py); gateways from their retained status (``gateway_status``, the stats of
contract.STAT_TYPES); freshness from the ``region_freshness`` points the ingester writes
(raw points carry only their sensor, so InfluxQL cannot count a region's sensors itself)."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard

from cloud.ingest.freshness_points import FRESH_WITHIN_MIN
from pantau.grafana.influxql import InfluxQL
from pantau.grafana.panels import board, history_panel, row, stat_panel, table_panel
from pantau.grafana.variables import kecamatan_variable


def _gateways(field: str, ref_id: str = "A") -> InfluxQL:
    return InfluxQL(
        f'SELECT last("{field}") AS "{field}" FROM "gateway_status" WHERE $timeFilter '
        'GROUP BY time($__interval), "gateway" fill(previous)',
        ref_id=ref_id,
        alias="$tag_gateway",
    )


def platform_health() -> dashboard.Dashboard:
    """Build the board (uid ``pantau-platform-health``)."""
    return (
        board(
            "Platform health",
            "pantau-platform-health",
            "Pantau's pipeline: ingest, refusals, gateways, freshness (docs/schema.md).",
            [kecamatan_variable()],
        )
        .with_panel(
            stat_panel(
                "Ingest rate",
                InfluxQL(
                    'SELECT sum("readings_per_s") AS "readings/s" FROM (SELECT '
                    'last("readings_per_s") AS "readings_per_s" FROM "ingest_health" WHERE '
                    '$timeFilter GROUP BY "ingester") WHERE $timeFilter'
                ),
                description="Readings stored per second, all ingesters, latest period.",
                steps=((None, "text"),),
                unit="short",
                decimals=1,
            )
        )
        .with_panel(
            stat_panel(
                "Ingest lag p99",
                InfluxQL(
                    'SELECT max("lag_p99_s") AS "lag p99" FROM (SELECT last("lag_p99_s") AS '
                    '"lag_p99_s" FROM "ingest_health" WHERE $timeFilter GROUP BY "ingester") '
                    "WHERE $timeFilter"
                ),
                description=(
                    "Storage time - observation time, 99th percentile of the readings of the "
                    "latest period (worst ingester). Minutes mean a spool is draining."
                ),
                steps=((None, "green"), (60, "orange"), (600, "red")),
                unit="s",
                decimals=1,
            )
        )
        .with_panel(
            stat_panel(
                "Gateways offline",
                InfluxQL(
                    'SELECT sum("offline") AS "offline" FROM (SELECT 1 - last("online") AS '
                    '"offline" FROM "gateway_status" WHERE $timeFilter GROUP BY "gateway") '
                    "WHERE $timeFilter"
                ),
                description="Gateways whose latest retained status is offline (last-will).",
                steps=((None, "green"), (1, "red")),
            )
        )
        .with_panel(
            stat_panel(
                "Dead letters in range",
                InfluxQL('SELECT sum("count") AS "refused" FROM "dead_letter" WHERE $timeFilter'),
                description="Messages and readings refused in the time range, all reasons.",
                steps=((None, "green"), (1, "orange")),
            )
        )
        .with_panel(
            history_panel(
                "Ingest rate per ingester",
                [
                    InfluxQL(
                        'SELECT mean("readings_per_s") AS "readings_per_s" FROM "ingest_health" '
                        'WHERE $timeFilter GROUP BY time($__interval), "ingester" fill(none)',
                        alias="$tag_ingester",
                    )
                ],
                description="Readings stored per second (ingest_health, every 10 s).",
            )
        )
        .with_panel(
            history_panel(
                "Ingest lag",
                [
                    InfluxQL(
                        'SELECT max("lag_p50_s") AS "p50", max("lag_p99_s") AS "p99" FROM '
                        '"ingest_health" WHERE $timeFilter GROUP BY time($__interval) fill(none)'
                    )
                ],
                description="Observation to storage, percentiles per period (worst ingester).",
                unit="s",
            )
        )
        .with_panel(
            history_panel(
                "Dead letters by reason",
                [
                    InfluxQL(
                        'SELECT sum("count") AS "count" FROM "dead_letter" WHERE $timeFilter '
                        'GROUP BY time($__interval), "reason" fill(none)',
                        alias="$tag_reason",
                    )
                ],
                description="Refusals per contract.RejectReason (payloads: dead-letter store).",
                bars=True,
            )
        )
        .with_panel(
            history_panel(
                "Unacknowledged messages",
                [
                    InfluxQL(
                        'SELECT max("unacked") AS "unacked" FROM "ingest_health" WHERE '
                        '$timeFilter GROUP BY time($__interval), "ingester" fill(none)',
                        alias="$tag_ingester",
                    )
                ],
                description="Held by the ingester, bounded by PANTAU_MQTT_RECEIVE_MAXIMUM.",
            )
        )
        .with_row(row("Gateways"))
        .with_panel(
            table_panel(
                "Gateways now",
                [
                    InfluxQL(
                        'SELECT last("online") AS "online", last("state") AS "state", '
                        'last("spool_depth") AS "spool_depth", last("spool_dropped_total") AS '
                        '"dropped", last("spool_oldest_age_s") AS "oldest_s", last("sensors") '
                        'AS "sensors", last("sensors_silent") AS "silent", '
                        'last("link_reconnects") AS "reconnects" FROM "gateway_status" WHERE '
                        '$timeFilter GROUP BY "gateway", "site"',
                        result_format="table",
                    )
                ],
                description=(
                    "Latest retained status: spool depth and drops, oldest spooled reading, "
                    "silent sensors, reconnects (contract.STAT_TYPES)."
                ),
                width=24,
            )
        )
        .with_panel(
            history_panel(
                "Spool depth",
                [_gateways("spool_depth")],
                description="Readings waiting in each gateway's spool; growth = link trouble.",
            )
        )
        .with_panel(
            history_panel(
                "Readings dropped by spools",
                [_gateways("spool_dropped_total")],
                description="Total readings a gateway's full spool had to drop (never resent).",
            )
        )
        .with_row(row("Freshness"))
        .with_panel(
            table_panel(
                f"Bed sensors reporting within {FRESH_WITHIN_MIN} min",
                [
                    InfluxQL(
                        'SELECT last("fresh") AS "fresh", last("sensors") AS "sensors", '
                        'last("share") AS "share" FROM "region_freshness" WHERE "level" = '
                        "'kecamatan' AND \"kind\" = 'bed' AND \"code\" =~ /^$kecamatan$/ AND "
                        '$timeFilter GROUP BY "name"',
                        result_format="table",
                    )
                ],
                description=(
                    f"Per kecamatan: fresh = bed sensors whose latest reading is under "
                    f"{FRESH_WITHIN_MIN} min old, of every bed sensor the registry lists; "
                    "share = fresh / sensors (the ingester's region_freshness, the API's "
                    "/v1/freshness formula)."
                ),
                steps=((None, "red"), (0.8, "orange"), (0.95, "green")),
            )
        )
        .with_panel(
            table_panel(
                "Latest bed reading per kecamatan",
                [
                    InfluxQL(
                        'SELECT max("newest_ms") AS "newest" FROM "bed_rollup" WHERE "level" = '
                        "'kecamatan' AND \"bed_type\" = 'all' AND \"facility\" = 'all' AND "
                        '"code" =~ /^$kecamatan$/ AND $timeFilter GROUP BY "name"',
                        result_format="table",
                    )
                ],
                description="How long ago the newest reading in each kecamatan was observed.",
                unit="dateTimeFromNow",
            )
        )
    )

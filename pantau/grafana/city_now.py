"""The "City now" board: where beds are free, how full the city is, crowds, queues, gateways.

The panels and their queries are the board ops staff already know (kept when the board moved
to code); the bed-type variable now filters the free-beds-by-type panel."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard

from pantau.grafana.influxql import (
    BED_TYPE_FILTER,
    KECAMATAN_OF_ROLLUP,
    KECAMATAN_OF_SITE,
    InfluxQL,
    bed_group_codes,
    bed_group_regex,
)
from pantau.grafana.panels import (
    BOR_STEPS,
    FREE_BED_STEPS,
    bar_panel,
    board,
    history_panel,
    stat_panel,
    table_panel,
)
from pantau.grafana.variables import bed_type_variable, kecamatan_variable, place_variable


def _group_free(group: str, label: str) -> InfluxQL:
    return InfluxQL(
        f'SELECT sum("free") AS "{label}_free", sum("capacity") AS "{label}_capacity" FROM '
        '(SELECT last("free") AS "free", last("capacity") AS "capacity" FROM "bed_rollup" '
        'WHERE "level" = \'site\' AND "facility" = \'hospital\' AND "bed_type" =~ '
        f'{bed_group_regex(group)} AND "code" =~ /^$bed_site$/ AND $timeFilter '
        'GROUP BY "code", "name", "bed_type") WHERE $timeFilter GROUP BY "name"',
        ref_id="A" if group == "icu" else "B",
        result_format="table",
    )


def city_now() -> dashboard.Dashboard:
    """Build the board (uid ``pantau-city-now``)."""
    return (
        board(
            "City now",
            "pantau-city-now",
            "Pantau: beds, crowds and queues of the city right now (docs/schema.md).",
            [
                kecamatan_variable(),
                bed_type_variable(),
                place_variable("bed_site", kind="bed", key="site", where=KECAMATAN_OF_SITE),
            ],
        )
        .with_panel(
            stat_panel(
                "City BOR (all beds, all facilities)",
                InfluxQL(
                    'SELECT last("bor") AS "BOR" FROM "bed_rollup" WHERE "level" = \'kota\' '
                    "AND \"bed_type\" = 'all' AND \"facility\" = 'all' AND $timeFilter"
                ),
                description=(
                    "Occupied / capacity x 100 over every bed in the city. 60 % = above the WHO "
                    "threshold (PPKM factor), 80 % = critical."
                ),
                steps=BOR_STEPS,
                unit="percent",
                decimals=1,
                background=True,
            )
        )
        .with_panel(
            stat_panel(
                "Gateways online",
                InfluxQL(
                    'SELECT sum("online") AS "online" FROM (SELECT last("online") AS "online" '
                    'FROM "gateway_status" WHERE $timeFilter GROUP BY "gateway") WHERE $timeFilter'
                ),
                description=(
                    "Gateways whose latest retained status is online (last-will turns it to "
                    "offline)."
                ),
                steps=((None, "red"), (1, "green")),
            )
        )
        .with_panel(
            table_panel(
                "Gateway status",
                [
                    InfluxQL(
                        'SELECT last("online") AS "online", last("state") AS "state" FROM '
                        '"gateway_status" WHERE $timeFilter GROUP BY "gateway", "site"',
                        result_format="table",
                    )
                ],
                description="The latest retained status of every gateway.",
                steps=((None, "red"), (1, "green")),
                height=6,
            )
        )
        .with_panel(
            bar_panel(
                "Free beds by bed type (city)",
                InfluxQL(
                    'SELECT last("free") AS "free" FROM "bed_rollup" WHERE "level" = \'kota\' '
                    "AND \"facility\" = 'all' AND \"bed_type\" != 'all' AND "
                    f'{BED_TYPE_FILTER} AND $timeFilter GROUP BY "bed_type"',
                    alias="SIRANAP $tag_bed_type",
                ),
                description=(
                    "Free beds per SIRANAP bed type code (id_tt), hospitals and isolation "
                    "centres together."
                ),
                steps=FREE_BED_STEPS,
            )
        )
        .with_panel(
            bar_panel(
                "BOR by kecamatan",
                InfluxQL(
                    'SELECT last("bor") AS "bor" FROM "bed_rollup" WHERE "level" = '
                    "'kecamatan' AND \"bed_type\" = 'all' AND \"facility\" = 'all' AND "
                    f'{KECAMATAN_OF_ROLLUP} AND $timeFilter GROUP BY "code", "name"',
                    alias="$tag_name",
                ),
                description="All beds of each kecamatan; colours are the BOR bands.",
                steps=BOR_STEPS,
                unit="percent",
                decimals=1,
                maximum=100,
            )
        )
        .with_panel(
            table_panel(
                "ICU and isolation free beds per hospital",
                [_group_free("icu", "icu"), _group_free("isolation", "isolation")],
                description=(
                    f"ICU: SIRANAP codes {bed_group_codes('icu')}. Isolation: "
                    f"{bed_group_codes('isolation')}. Sum of the hospital rollups' latest "
                    "free beds per bed type."
                ),
                steps=((None, "red"), (2, "orange"), (5, "green")),
            )
        )
        .with_panel(
            bar_panel(
                "Crowd occupancy vs health-protocol capacity",
                InfluxQL(
                    'SELECT last("ratio") AS "ratio" FROM "crowd_site" WHERE '
                    f'{KECAMATAN_OF_SITE} AND $timeFilter GROUP BY "site", "site_name"',
                    alias="$tag_site_name",
                ),
                description="People inside / people allowed at once. 1.0 = at capacity.",
                steps=((None, "green"), (0.8, "orange"), (1.0, "red")),
                unit="percentunit",
                maximum=1.2,
            )
        )
        .with_panel(
            table_panel(
                "Queues: waiting and estimated wait",
                [
                    InfluxQL(
                        'SELECT last("waiting") AS "waiting", last("wait_s") AS "wait_s", '
                        'last("counters_open") AS "counters_open" FROM "queue_site" WHERE '
                        f'{KECAMATAN_OF_SITE} AND $timeFilter GROUP BY "site", "site_name"',
                        result_format="table",
                    )
                ],
                description=(
                    "wait_s: Little's law estimate (waiting / recent service rate); empty until "
                    "a service rate is known."
                ),
                height=8,
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
                description=(
                    "Refused messages/readings per contract.RejectReason; raw payloads are in "
                    "the ingester's dead-letter store."
                ),
                bars=True,
            )
        )
    )

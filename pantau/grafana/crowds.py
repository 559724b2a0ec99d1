"""The "Crowds & queues" board: markets, stations and offices against their health-protocol
capacity, gate counts, queue lengths and estimated waits, now and over time."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard

from pantau.grafana.influxql import KECAMATAN_OF_SITE, InfluxQL
from pantau.grafana.panels import bar_panel, board, history_panel, row, table_panel
from pantau.grafana.variables import kecamatan_variable, place_variable

#: Crowd ratio colours: 1.0 is the site's health-protocol capacity.
CROWD_STEPS = ((None, "green"), (0.8, "orange"), (1.0, "red"))


def crowds_and_queues() -> dashboard.Dashboard:
    """Build the board (uid ``pantau-crowds-queues``)."""
    return (
        board(
            "Crowds & queues",
            "pantau-crowds-queues",
            "Crowds against capacity and public-service queues (docs/schema.md).",
            [
                kecamatan_variable(),
                place_variable("gate_sensor", kind="crowd", where=KECAMATAN_OF_SITE),
            ],
        )
        .with_panel(
            bar_panel(
                "Occupancy / capacity now",
                InfluxQL(
                    'SELECT last("ratio") AS "ratio" FROM "crowd_site" WHERE '
                    f'{KECAMATAN_OF_SITE} AND $timeFilter GROUP BY "site_name"',
                    alias="$tag_site_name",
                ),
                description="People inside / people allowed at once; 100 % = at capacity.",
                steps=CROWD_STEPS,
                unit="percentunit",
                maximum=1.2,
            )
        )
        .with_panel(
            table_panel(
                "Gates now",
                [
                    InfluxQL(
                        'SELECT last("entries") AS "entries", last("exits") AS "exits", '
                        'last("occupancy") AS "occupancy" FROM "crowd" WHERE '
                        '"sensor" =~ /^$gate_sensor$/ AND $timeFilter GROUP BY "sensor"',
                        result_format="table",
                    )
                ],
                description="Each gate counter's latest totals (occupancy = entries - exits).",
            )
        )
        .with_panel(
            history_panel(
                "Crowd ratio",
                [
                    InfluxQL(
                        'SELECT last("ratio") AS "ratio" FROM "crowd_site" WHERE '
                        f"{KECAMATAN_OF_SITE} AND $timeFilter "
                        'GROUP BY time($__interval), "site_name" fill(previous)',
                        alias="$tag_site_name",
                    )
                ],
                description="The alert fires above 1.0 and clears below its recovery level.",
                unit="percentunit",
                steps=CROWD_STEPS,
            )
        )
        .with_panel(
            history_panel(
                "People inside",
                [
                    InfluxQL(
                        'SELECT last("occupancy") AS "occupancy" FROM "crowd_site" WHERE '
                        f"{KECAMATAN_OF_SITE} AND $timeFilter "
                        'GROUP BY time($__interval), "site_name" fill(previous)',
                        alias="$tag_site_name",
                    )
                ],
                description="Occupancy of each site summed over its gates.",
            )
        )
        .with_row(row("Queues"))
        .with_panel(
            table_panel(
                "Queues now",
                [
                    InfluxQL(
                        'SELECT last("waiting") AS "waiting", last("wait_s") AS "wait_s", '
                        'last("counters_open") AS "counters_open", last("issued") AS "issued", '
                        'last("served") AS "served" FROM "queue_site" WHERE '
                        f'{KECAMATAN_OF_SITE} AND $timeFilter GROUP BY "site_name"',
                        result_format="table",
                    )
                ],
                description=(
                    "wait_s: Little's law estimate, waiting / recent service rate, in seconds; "
                    "empty until a service rate is known."
                ),
                width=24,
                height=8,
            )
        )
        .with_panel(
            history_panel(
                "People waiting",
                [
                    InfluxQL(
                        'SELECT last("waiting") AS "waiting" FROM "queue_site" WHERE '
                        f"{KECAMATAN_OF_SITE} AND $timeFilter "
                        'GROUP BY time($__interval), "site_name" fill(previous)',
                        alias="$tag_site_name",
                    )
                ],
                description="Tickets issued and not yet served.",
            )
        )
        .with_panel(
            history_panel(
                "Estimated wait",
                [
                    InfluxQL(
                        'SELECT last("wait_s") AS "wait_s" FROM "queue_site" WHERE '
                        f"{KECAMATAN_OF_SITE} AND $timeFilter "
                        'GROUP BY time($__interval), "site_name" fill(previous)',
                        alias="$tag_site_name",
                    )
                ],
                description="Little's law estimate of the wait of a ticket issued now.",
                unit="s",
            )
        )
    )

"""The "Hospital detail" board: each ward now and over time, per hospital and bed type.

Ward rows come from the raw ``bed`` readings (one series per ward sensor, selected through the
hidden ``$ward_sensor`` over ``sensor_place``); hospital-level numbers from the ``site``
rollups, so the BOR on this board is the ingester's BOR, never recomputed."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard

from pantau.grafana.influxql import BED_TYPE_FILTER, KECAMATAN_OF_SITE, InfluxQL, bed_group_regex
from pantau.grafana.panels import (
    BOR_STEPS,
    FREE_BED_STEPS,
    board,
    history_panel,
    row,
    stat_panel,
    table_panel,
)
from pantau.grafana.variables import (
    bed_type_variable,
    kecamatan_variable,
    place_variable,
    site_variable,
)

#: Wards in the selection (variables: region, hospital, bed type), as their sensors.
_WARDS = '"sensor" =~ /^$ward_sensor$/'
#: Hospital rollups in the selection (rollups carry the site id in "code").
_SITES = '"level" = \'site\' AND "facility" = \'all\' AND "code" =~ /^$site$/'


def _free_in_group(group: str, ref_id: str) -> InfluxQL:
    return InfluxQL(
        f'SELECT sum("free") AS "{group}" FROM (SELECT last("free") AS "free" FROM "bed_rollup" '
        f'WHERE {_SITES} AND "bed_type" =~ {bed_group_regex(group)} AND $timeFilter '
        'GROUP BY "code", "bed_type") WHERE $timeFilter',
        ref_id=ref_id,
    )


def hospital_detail() -> dashboard.Dashboard:
    """Build the board (uid ``pantau-hospital-detail``)."""
    return (
        board(
            "Hospital detail",
            "pantau-hospital-detail",
            "Per ward and per hospital: beds now and their history (docs/schema.md).",
            [
                kecamatan_variable(),
                site_variable(),
                bed_type_variable(),
                place_variable(
                    "ward_sensor",
                    kind="bed",
                    where=f'{KECAMATAN_OF_SITE} AND "site" =~ /^$site$/ AND {BED_TYPE_FILTER}',
                ),
            ],
        )
        .with_panel(
            stat_panel(
                "Free ICU, HCU and isolation beds",
                _free_in_group("icu", "A"),
                description=(
                    "Sum of each hospital's latest free beds (its site rollup) in the selected "
                    "hospitals, per bed group of contract.beds (the bed-type variable does not "
                    "apply here)."
                ),
                steps=FREE_BED_STEPS,
                width=24,
                height=5,
            )
            .with_target(_free_in_group("hcu", "B"))
            .with_target(_free_in_group("isolation", "C"))
        )
        .with_panel(
            table_panel(
                "Wards now",
                [
                    InfluxQL(
                        'SELECT last("capacity") AS "capacity", last("occupied") AS "occupied", '
                        'last("capacity") - last("occupied") AS "free", '
                        'last("suspect") AS "suspect", last("confirmed") AS "confirmed", '
                        f'last("waiting") AS "waiting" FROM "bed" WHERE {_WARDS} AND $timeFilter '
                        'GROUP BY "sensor"',
                        result_format="table",
                    )
                ],
                description=(
                    "The latest reading of each ward sensor: SIRANAP layout (terpakai = "
                    "occupied, suspek, konfirmasi, antrian = waiting; free = capacity - "
                    "occupied)."
                ),
                width=24,
            )
        )
        .with_row(row("History"))
        .with_panel(
            history_panel(
                "BOR per hospital",
                [
                    InfluxQL(
                        'SELECT last("bor") AS "bor" FROM "bed_rollup" WHERE '
                        f"{_SITES} AND \"bed_type\" = 'all' AND $timeFilter "
                        'GROUP BY time($__interval), "name" fill(previous)',
                        alias="$tag_name",
                    )
                ],
                description="All beds of each hospital; dashed lines are the BOR bands.",
                unit="percent",
                steps=BOR_STEPS,
            )
        )
        .with_panel(
            history_panel(
                "Occupied beds per ward",
                [
                    InfluxQL(
                        'SELECT last("occupied") AS "occupied" FROM "bed" WHERE '
                        f"{_WARDS} AND $timeFilter "
                        'GROUP BY time($__interval), "sensor" fill(previous)',
                        alias="$tag_sensor",
                    )
                ],
                description="Each ward's occupied beds as its sensor reported them.",
            )
        )
        .with_panel(
            history_panel(
                "Free beds per hospital and bed type",
                [
                    InfluxQL(
                        'SELECT last("free") AS "free" FROM "bed_rollup" WHERE '
                        f"{_SITES} AND \"bed_type\" != 'all' AND {BED_TYPE_FILTER} AND "
                        '$timeFilter GROUP BY time($__interval), "name", "bed_type" '
                        "fill(previous)",
                        alias="$tag_name / SIRANAP $tag_bed_type",
                    )
                ],
                description="Free beds from the hospital rollups, per SIRANAP bed type.",
            )
        )
        .with_panel(
            history_panel(
                "Patients waiting for a bed (antrian)",
                [
                    InfluxQL(
                        'SELECT last("waiting") AS "waiting" FROM "bed_rollup" WHERE '
                        f"{_SITES} AND \"bed_type\" = 'all' AND $timeFilter "
                        'GROUP BY time($__interval), "name" fill(previous)',
                        alias="$tag_name",
                    )
                ],
                description="Patients waiting for admission, all bed types of each hospital.",
            )
        )
    )

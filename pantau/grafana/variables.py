"""The dashboard variables: region (kecamatan code), bed type (SIRANAP code) and site, filled
from what InfluxDB holds, so a new region or bed type appears without editing a board.

Raw points carry only their sensor (docs/adr/0028-raw-points-tagged-by-sensor.md), and InfluxQL
cannot join, so where a panel reads raw points the region, site and bed-type choice is turned
into the list of sensors it selects by a hidden variable over ``sensor_place`` (the registry's
places, written by the ingester): ``"sensor" =~ /^$ward_sensor$/``. Hidden sensor variables have
no ``.*`` All value: All must mean "every sensor the choice selects", not every sensor."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.models import dashboard as dm

from pantau.grafana.influxql import datasource
from pantau.grafana.panels import query_variable

#: The measurement that says where each sensor is (cloud.storage_schema SENSOR_PLACE).
PLACES = '"sensor_place"'


def kecamatan_variable() -> cogbuilder.Builder[dm.VariableModel]:
    """``$kecamatan``: the kecamatan codes that have beds."""
    return query_variable(
        "kecamatan",
        label="Kecamatan",
        query='SHOW TAG VALUES FROM "bed_rollup" WITH KEY = "code" WHERE "level" = \'kecamatan\'',
    )


def bed_type_variable() -> cogbuilder.Builder[dm.VariableModel]:
    """``$bed_type``: the SIRANAP bed type codes the city's wards have."""
    return query_variable(
        "bed_type",
        label="Bed type (SIRANAP)",
        query=f'SHOW TAG VALUES FROM {PLACES} WITH KEY = "bed_type"',
    )


def site_variable() -> cogbuilder.Builder[dm.VariableModel]:
    """``$site``: hospitals and isolation centres in the selected kecamatan."""
    return query_variable(
        "site",
        label="Hospital / isolation centre",
        query=f'SHOW TAG VALUES FROM {PLACES} WITH KEY = "site" WHERE "kind" = \'bed\' '
        'AND "kecamatan" =~ /^$kecamatan$/',
    )


def place_variable(
    name: str, *, kind: str, where: str, key: str = "sensor"
) -> cogbuilder.Builder[dm.VariableModel]:
    """A hidden ``$<name>``: the ``key`` values (sensors, or their sites) of the sensors of
    ``kind`` matching ``where`` (conditions on ``sensor_place`` tags, e.g. ``"kecamatan" =~
    /^$kecamatan$/``), all selected."""
    return (
        dashboard.QueryVariable(name)
        .datasource(datasource())
        .query(
            f'SHOW TAG VALUES FROM {PLACES} WITH KEY = "{key}" WHERE "kind" = \'{kind}\' '
            f"AND {where}"
        )
        .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .multi(True)
        .include_all(True)
        .hide(dm.VariableHide.HIDE_VARIABLE)
        .current(dm.VariableOption(selected=True, text=["All"], value=["$__all"]))
    )

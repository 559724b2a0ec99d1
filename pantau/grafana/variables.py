"""The dashboard variables: region (kecamatan code) and bed type (SIRANAP code), both filled
from what InfluxDB holds, so a new region or bed type appears without editing a board."""

from __future__ import annotations

from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.models import dashboard as dm

from pantau.grafana.panels import query_variable


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
        query='SHOW TAG VALUES FROM "bed" WITH KEY = "bed_type"',
    )


def site_variable() -> cogbuilder.Builder[dm.VariableModel]:
    """``$site``: hospitals and isolation centres in the selected kecamatan."""
    return query_variable(
        "site",
        label="Hospital / isolation centre",
        query='SHOW TAG VALUES FROM "bed" WITH KEY = "site" WHERE "kecamatan" =~ /^$kecamatan$/',
    )

"""Raw-InfluxQL targets for Grafana's typed builders, and the query pieces every board shares.

grafana-foundation-sdk has builders for many datasources but none for InfluxDB, so this module
supplies the one piece it lacks: a ``Dataquery`` that serialises exactly as Grafana's InfluxDB
plugin stores a raw InfluxQL query (``rawQuery: true``). Everything else on the boards comes
from the SDK. Bed-group regexes are derived from ``contract.beds.BED_GROUPS``, never retyped.
"""

from __future__ import annotations

from typing import Literal

from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models import dashboard as dm

from contract.beds import BED_GROUPS

#: The one provisioned datasource (grafana/provisioning/datasources/pantau.yaml).
DATASOURCE_UID = "pantau-influxdb"
DATASOURCE_TYPE = "influxdb"

ResultFormat = Literal["time_series", "table"]


def datasource() -> dm.DataSourceRef:
    """A reference to the provisioned InfluxDB datasource."""
    return dm.DataSourceRef(type_val=DATASOURCE_TYPE, uid=DATASOURCE_UID)


class InfluxQLQuery(cogvariants.Dataquery):
    """One raw InfluxQL target, in the shape Grafana's InfluxDB plugin saves."""

    def __init__(
        self,
        *,
        ref_id: str,
        query: str,
        result_format: ResultFormat = "time_series",
        alias: str | None = None,
    ) -> None:
        self.ref_id = ref_id
        self.query = query
        self.result_format = result_format
        self.alias = alias

    def to_json(self) -> dict[str, object]:
        """The target as it appears in a dashboard's ``targets`` or an alert rule's ``model``."""
        payload: dict[str, object] = {
            "refId": self.ref_id,
            "datasource": {"type": DATASOURCE_TYPE, "uid": DATASOURCE_UID},
            "rawQuery": True,
            "resultFormat": self.result_format,
            "query": self.query,
        }
        if self.alias is not None:
            payload["alias"] = self.alias
        return payload


class InfluxQL(cogbuilder.Builder[cogvariants.Dataquery]):
    """Builder wrapper so panels and alert rules take an :class:`InfluxQLQuery` like any
    SDK dataquery."""

    def __init__(
        self,
        query: str,
        *,
        ref_id: str = "A",
        result_format: ResultFormat = "time_series",
        alias: str | None = None,
    ) -> None:
        self._query = InfluxQLQuery(
            ref_id=ref_id, query=query, result_format=result_format, alias=alias
        )

    def build(self) -> InfluxQLQuery:
        """The target."""
        return self._query


def bed_group_regex(group: str) -> str:
    """``/^(6|8|...)$/``: the SIRANAP codes of a bed group, for ``"bed_type" =~``."""
    codes = "|".join(str(c) for c in sorted(BED_GROUPS[group]))
    return f"/^({codes})$/"


def bed_group_codes(group: str) -> str:
    """The codes of a bed group as text for panel descriptions (``6, 8, 9``)."""
    return ", ".join(str(c) for c in sorted(BED_GROUPS[group]))


#: Filters that follow the dashboard variables (Grafana regex-escapes selected values; All is
#: ``.*``).
KECAMATAN_OF_ROLLUP = '"code" =~ /^$kecamatan$/'
KECAMATAN_OF_SITE = '"kecamatan" =~ /^$kecamatan$/'
BED_TYPE_FILTER = '"bed_type" =~ /^$bed_type$/'

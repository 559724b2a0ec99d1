"""The few panel shapes Pantau's boards use, built with grafana-foundation-sdk's typed panel
builders. Each helper fixes the datasource and the options every board wants (latest value,
not a mean over the range), so a board module reads as a list of questions and queries."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from grafana_foundation_sdk.builders import bargauge, common, dashboard, stat, table, timeseries
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm

from contract.beds import BOR_CRITICAL, BOR_HIGH
from pantau.grafana.influxql import InfluxQL, datasource

#: (value, colour) steps; the first value is None (from minus infinity).
Steps = Sequence[tuple[float | None, str]]

#: Colours of the BOR bands of contract.beds: normal, high (>= 60 %), critical (>= 80 %).
BOR_STEPS: Steps = ((None, "green"), (BOR_HIGH, "orange"), (BOR_CRITICAL, "red"))
#: Free beds: none left is red, a few is orange.
FREE_BED_STEPS: Steps = ((None, "red"), (3, "orange"), (10, "green"))


def thresholds(steps: Steps) -> dashboard.ThresholdsConfig:
    """Absolute thresholds from (value, colour) steps."""
    return (
        dashboard.ThresholdsConfig()
        .mode(dm.ThresholdsMode.ABSOLUTE)
        .steps([dm.Threshold(value=v, color=c) for v, c in steps])
    )


_Panel = TypeVar("_Panel", stat.Panel, bargauge.Panel, table.Panel)


def _framed(
    panel: _Panel, title: str, description: str, steps: Steps, width: int, height: int
) -> _Panel:
    """What every single-value and table panel sets: titles, the datasource, thresholds and
    its place on the grid."""
    return (
        panel.title(title)
        .description(description)
        .datasource(datasource())
        .thresholds(thresholds(steps))
        .span(width)
        .height(height)
    )


def _latest() -> common.ReduceDataOptions:
    # The latest value, not a mean over the range: an officer asks "how many are free now".
    return common.ReduceDataOptions().calcs(["lastNotNull"]).values(False)


def stat_panel(
    title: str,
    target: InfluxQL,
    *,
    description: str,
    steps: Steps,
    unit: str = "none",
    decimals: int = 0,
    width: int = 6,
    height: int = 6,
    background: bool = False,
) -> stat.Panel:
    """One big number: the latest value of each series."""
    return (
        _framed(stat.Panel(), title, description, steps, width, height)
        .with_target(target)
        .reduce_options(_latest())
        .color_mode(cm.BigValueColorMode.BACKGROUND if background else cm.BigValueColorMode.VALUE)
        .graph_mode(cm.BigValueGraphMode.AREA if background else cm.BigValueGraphMode.NONE)
        .text_mode(cm.BigValueTextMode.VALUE_AND_NAME)
        .unit(unit)
        .decimals(decimals)
    )


def bar_panel(
    title: str,
    target: InfluxQL,
    *,
    description: str,
    steps: Steps,
    unit: str = "none",
    decimals: int = 0,
    maximum: float | None = None,
    width: int = 12,
    height: int = 9,
) -> bargauge.Panel:
    """Horizontal bars, one per series, at its latest value."""
    panel = (
        _framed(bargauge.Panel(), title, description, steps, width, height)
        .with_target(target)
        .reduce_options(_latest())
        .orientation(cm.VizOrientation.HORIZONTAL)
        .display_mode(cm.BarGaugeDisplayMode.GRADIENT)
        .show_unfilled(True)
        .unit(unit)
        .decimals(decimals)
        .min(0)
    )
    return panel if maximum is None else panel.max(maximum)


def table_panel(
    title: str,
    targets: Sequence[InfluxQL],
    *,
    description: str,
    steps: Steps = ((None, "text"),),
    unit: str | None = None,
    width: int = 12,
    height: int = 9,
) -> table.Panel:
    """Rows of tag values and latest fields (targets use ``result_format="table"``)."""
    panel = _framed(table.Panel(), title, description, steps, width, height).show_header(True)
    if unit is not None:
        panel = panel.unit(unit)
    for target in targets:
        panel = panel.with_target(target)
    return panel


def history_panel(
    title: str,
    targets: Sequence[InfluxQL],
    *,
    description: str,
    unit: str = "short",
    bars: bool = False,
    steps: Steps | None = None,
    width: int = 12,
    height: int = 8,
) -> timeseries.Panel:
    """A time series over the dashboard's range (``GROUP BY time($__interval)`` in the query)."""
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(datasource())
        .unit(unit)
        .legend(
            common.VizLegendOptions()
            .show_legend(True)
            .display_mode(cm.LegendDisplayMode.TABLE)
            .placement(cm.LegendPlacement.RIGHT)
            .calcs(["lastNotNull", "max"])
        )
        .tooltip(common.VizTooltipOptions().mode(cm.TooltipDisplayMode.MULTI))
        .span(width)
        .height(height)
    )
    if bars:
        panel = (
            panel.draw_style(cm.GraphDrawStyle.BARS)
            .fill_opacity(60)
            .stacking(common.StackingConfig().mode(cm.StackingMode.NORMAL))
        )
    if steps is not None:
        panel = panel.thresholds(thresholds(steps)).thresholds_style(
            common.GraphThresholdsStyleConfig().mode(cm.GraphTresholdsStyleMode.LINE)
        )
    for target in targets:
        panel = panel.with_target(target)
    return panel


def board(
    title: str,
    uid: str,
    description: str,
    variables: Sequence[cogbuilder.Builder[dm.VariableModel]],
) -> dashboard.Dashboard:
    """A dashboard with its title, stable uid (links and alerts use it), description and
    variables; the caller adds the panels."""
    out = dashboard.Dashboard(title).uid(uid).description(description)
    for variable in variables:
        out = out.with_variable(variable)
    return out


def row(title: str) -> dashboard.Row:
    """A section heading."""
    return dashboard.Row(title)


def query_variable(name: str, *, label: str, query: str) -> cogbuilder.Builder[dm.VariableModel]:
    """A multi-select variable filled from InfluxDB, with All meaning ``.*``."""
    return (
        dashboard.QueryVariable(name)
        .label(label)
        .datasource(datasource())
        .query(query)
        .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dm.VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .all_value(".*")
        .current(dm.VariableOption(selected=True, text=["All"], value=["$__all"]))
    )

"""Helpers shared by the dashboard definitions, on top of grafana-foundation-sdk builders.

Every panel reads the Prometheus data source chosen by the ``datasource``
variable; the JSON is rendered with sorted keys so regenerating it is
byte-for-byte stable.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from typing import Any

from grafana_foundation_sdk.builders import bargauge, prometheus, stat, statetimeline, timeseries
from grafana_foundation_sdk.builders.common import ReduceDataOptions, VizLegendOptions, VizTooltipOptions
from grafana_foundation_sdk.builders.dashboard import (
    Dashboard,
    DatasourceVariable,
    QueryVariable,
    Row,
    ThresholdsConfig,
)
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.common import (
    BarGaugeDisplayMode,
    LegendDisplayMode,
    LegendPlacement,
    SortOrder,
    TooltipDisplayMode,
    VisibilityMode,
    VizOrientation,
)
from grafana_foundation_sdk.models.dashboard import (
    DataSourceRef,
    Threshold,
    ThresholdsMode,
    VariableOption,
    VariableRefresh,
    VariableSort,
)

DS = DataSourceRef(type_val="prometheus", uid="${datasource}")


class Panels:
    """Numbers panels in the order they are made (Grafana wants ids unique per dashboard)."""

    def __init__(self) -> None:
        self._ids = itertools.count(1)

    def next_id(self) -> int:
        return next(self._ids)


def query(expr: str, legend: str = "__auto", ref: str = "A", instant: bool = False) -> prometheus.Dataquery:
    """A PromQL target; ``instant`` for panels that show the latest value."""
    q = prometheus.Dataquery().expr(expr).legend_format(legend).ref_id(ref).datasource(DS)
    return q.instant() if instant else q.range()


def _targets(panel: Any, targets: list[prometheus.Dataquery]) -> None:
    for i, t in enumerate(targets):
        panel.with_target(t.ref_id(chr(ord("A") + i)))


def framed(panel: Any, ids: Panels, title: str, description: str, w: int, h: int) -> Any:
    """What every panel sets: its id, title, description, data source and size."""
    return panel.id(ids.next_id()).title(title).description(description).datasource(DS).span(w).height(h)


def thresholds(*steps: tuple[float | None, str]) -> ThresholdsConfig:
    """Absolute thresholds, the first with value None (the base colour)."""
    return ThresholdsConfig().mode(ThresholdsMode.ABSOLUTE).steps(
        [Threshold(value=v, color=c) for v, c in steps]  # type: ignore[arg-type]
    )


def ts(
    ids: Panels,
    title: str,
    description: str,
    unit: str,
    targets: list[prometheus.Dataquery],
    *,
    w: int = 12,
    h: int = 8,
    min_val: float | None = None,
    fill: float = 10,
) -> timeseries.Panel:
    """A time series panel with a table legend (last, max) under it."""
    p = (
        framed(timeseries.Panel(), ids, title, description, w, h)
        .unit(unit)
        .fill_opacity(fill)
        .line_width(1)
        .legend(
            VizLegendOptions()
            .display_mode(LegendDisplayMode.TABLE)
            .placement(LegendPlacement.BOTTOM)
            .show_legend(True)
            .calcs(["lastNotNull", "max"])
        )
        .tooltip(VizTooltipOptions().mode(TooltipDisplayMode.MULTI).sort(SortOrder.DESCENDING))
    )
    if min_val is not None:
        p = p.min(min_val)
    _targets(p, targets)
    return p


def bars(
    ids: Panels,
    title: str,
    description: str,
    unit: str,
    targets: list[prometheus.Dataquery],
    *,
    w: int = 12,
    h: int = 8,
    min_val: float | None = 0,
) -> bargauge.Panel:
    """Horizontal bars of the latest value of each series (instant queries)."""
    p = (
        framed(bargauge.Panel(), ids, title, description, w, h)
        .unit(unit)
        .orientation(VizOrientation.HORIZONTAL)
        .display_mode(BarGaugeDisplayMode.GRADIENT)
        .reduce_options(ReduceDataOptions().calcs(["lastNotNull"]).values(False))
    )
    if min_val is not None:
        p = p.min(min_val)
    _targets(p, targets)
    return p


def stat_panel(
    ids: Panels,
    title: str,
    description: str,
    unit: str,
    targets: list[prometheus.Dataquery],
    steps: ThresholdsConfig,
    *,
    w: int = 6,
    h: int = 5,
) -> stat.Panel:
    """Latest value per series, coloured by thresholds."""
    p = (
        framed(stat.Panel(), ids, title, description, w, h)
        .unit(unit)
        .thresholds(steps)
        .reduce_options(ReduceDataOptions().calcs(["lastNotNull"]).values(False))
    )
    _targets(p, targets)
    return p


def timeline(
    ids: Panels,
    title: str,
    description: str,
    targets: list[prometheus.Dataquery],
    steps: ThresholdsConfig,
    *,
    w: int = 12,
    h: int = 8,
) -> statetimeline.Panel:
    """A state timeline: one lane per series, coloured by thresholds."""
    p = (
        framed(statetimeline.Panel(), ids, title, description, w, h)
        .thresholds(steps)
        .show_value(VisibilityMode.NEVER)
        .merge_values(True)
    )
    _targets(p, targets)
    return p


def with_sections(
    dash: Dashboard,
    ids: Panels,
    sections: list[tuple[str, Callable[[Panels], list[Any]]]],
    pending: list[tuple[str, str, Callable[[Panels], Any]]],
    include_pending: bool,
) -> Dashboard:
    """A row per section with its panels, then, for the pending view, the panels whose metrics have no values yet."""
    for title, panels in sections:
        dash = dash.with_row(Row(title))
        for p in panels(ids):
            dash = dash.with_panel(p)
    if include_pending:
        dash = dash.with_row(Row("Not shipped yet: metrics defined, no values today"))
        for _title, _why, make in pending:
            dash = dash.with_panel(make(ids))
    return dash


def datasource_variable() -> DatasourceVariable:
    return DatasourceVariable("datasource").label("Data source").type("prometheus")


def label_variable(
    name: str, label: str, metric: str, *, current: str | None = None, include_all: bool = False,
    of_label: str | None = None,
) -> QueryVariable:
    """A variable over the values of one label (``of_label``, default ``name``): ``label_values(metric, label)``."""
    var = (
        QueryVariable(name)
        .label(label)
        .datasource(DS)
        .query(f"label_values({metric}, {of_label or name})")
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(VariableSort.ALPHABETICAL_ASC)
    )
    if include_all:
        var = var.include_all(True).multi(True).all_value(".+")
        current = "$__all"
    if current is not None:
        text = "All" if current == "$__all" else current
        var = var.current(VariableOption(selected=True, text=text, value=current))
    return var


def new_dashboard(uid: str, title: str, description: str) -> Dashboard:
    return (
        Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(["volcast"])
        .refresh("10s")
        .time("now-1h", "now")
        .timezone("utc")
        .editable()
    )


def render(dashboard: Dashboard) -> str:
    """The dashboard's JSON model, stable across runs."""
    return json.dumps(dashboard.build(), cls=JSONEncoder, sort_keys=True, indent=2) + "\n"

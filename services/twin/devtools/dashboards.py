"""Grafana dashboards as code: :mod:`twin.devtools.dashboard_defs` rendered with Grafana's own
foundation SDK (``grafana-foundation-sdk``) into ``charts/twin/dashboards/<uid>.json``.

The chart turns each file into a ConfigMap with the label Grafana's dashboard sidecar discovers
(``grafana_dashboard: "1"``; ``templates/dashboards.yaml``, switched by
``monitoring.dashboards.enabled``); the same files import by hand into any Grafana. Every panel
reads the Prometheus chosen in the ``datasource`` variable. ``python -m twin.devtools.dashboards
--write`` writes them, ``--check`` exits 1 when the committed files differ
(``tests/unit/test_dashboards.py`` fails then too). Rendering is deterministic: panel ids in order,
keys sorted, no timestamps.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from twin.devtools import dashboard_defs as defs
from twin.devtools import generated

ROOT = Path(__file__).resolve().parents[3]
DASHBOARDS = ROOT / "charts" / "twin" / "dashboards"
DATASOURCE = "${datasource}"


def _target(query: defs.Query, ref: str) -> Any:
    from grafana_foundation_sdk.builders import prometheus
    from grafana_foundation_sdk.models.dashboard import DataSourceRef

    target = prometheus.Dataquery().expr(query.expr).ref_id(ref).range()
    target = target.datasource(DataSourceRef(type_val="prometheus", uid=DATASOURCE))
    return target.legend_format(query.legend) if query.legend else target


def _panel(spec: defs.Panel, panel_id: int) -> Any:
    from grafana_foundation_sdk.builders import common, stat, table, timeseries
    from grafana_foundation_sdk.models import common as common_models
    from grafana_foundation_sdk.models.dashboard import DataSourceRef

    description = spec.description
    if spec.needs == defs.CLUSTER:
        description = f"{description} Fed only on a cluster (Ray Serve, kube-state-metrics, Kafka).".strip()
    elif spec.needs == defs.OPERATOR:
        description = f"{description} Fed by the operator (a cluster).".strip()
    elif spec.needs == defs.GPU:
        description = f"{description} Fed only by vLLM on GPUs.".strip()
    if spec.kind == "stat":
        builder: Any = stat.Panel().reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]))
    elif spec.kind == "table":
        builder = table.Panel()
    else:
        legend = (
            common.VizLegendOptions()
            .show_legend(True)
            .display_mode(common_models.LegendDisplayMode.LIST)
            .placement(common_models.LegendPlacement.BOTTOM)
        )
        builder = timeseries.Panel().legend(legend).fill_opacity(10).line_width(1)
    builder = (
        builder.id(panel_id)
        .title(spec.title)
        .unit(spec.unit)
        .span(spec.width)
        .height(spec.height)
        .datasource(DataSourceRef(type_val="prometheus", uid=DATASOURCE))
    )
    if description:
        builder = builder.description(description)
    refs = "ABCDEFGHIJ"
    for i, query in enumerate(spec.queries):
        target = _target(query, refs[i])
        if spec.kind in ("stat", "table"):
            target = target.instant()
        builder = builder.with_target(target)
    return builder


def _variables(spec: defs.Dashboard) -> list[Any]:
    from grafana_foundation_sdk.builders import dashboard
    from grafana_foundation_sdk.models.dashboard import DataSourceRef, VariableRefresh, VariableSort

    variables: list[Any] = [dashboard.DatasourceVariable("datasource").label("Prometheus").type("prometheus")]
    if spec.profile_variable:
        variables.append(
            dashboard.QueryVariable("profile")
            .label("TwinProfile")
            .description("The profile shown: every value of the profile label Prometheus holds.")
            .datasource(DataSourceRef(type_val="prometheus", uid=DATASOURCE))
            .query("label_values(profile)")
            .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
            .sort(VariableSort.ALPHABETICAL_ASC)
        )
    return variables


def build(spec: defs.Dashboard) -> dict[str, Any]:
    """One dashboard as Grafana's JSON model."""
    from grafana_foundation_sdk.builders import dashboard
    from grafana_foundation_sdk.cog.encoder import JSONEncoder

    board = (
        dashboard.Dashboard(spec.title)
        .uid(spec.uid)
        .description(spec.description)
        .tags(list(spec.tags))
        .time("now-6h", "now")
        .refresh("1m")
        .timezone("browser")
        .editable()
        .variables(_variables(spec))
    )
    panel_id = 0
    for row in spec.rows:
        panel_id += 1
        board = board.with_row(dashboard.Row(row.title).id(panel_id))
        for panel in row.panels:
            panel_id += 1
            board = board.with_panel(_panel(panel, panel_id))
    data: dict[str, Any] = json.loads(json.dumps(board.build(), cls=JSONEncoder))
    return data


def render(spec: defs.Dashboard) -> str:
    return json.dumps(build(spec), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def files() -> dict[Path, str]:
    return {DASHBOARDS / f"{d.uid}.json": render(d) for d in defs.dashboards()}


def stale() -> list[str]:
    """Files that differ from what is rendered now (or should not be there)."""
    return generated.stale(files(), DASHBOARDS, "*.json")


def write() -> None:
    generated.write(files(), DASHBOARDS, "*.json")


def _listing() -> list[str]:
    return [f"{d.uid}: {d.title} ({sum(len(r.panels) for r in d.rows)} panels)" for d in defs.dashboards()]


def main(argv: list[str] | None = None) -> int:
    return generated.main(
        argv,
        module="twin.devtools.dashboards",
        description=__doc__,
        files=files,
        folder=DASHBOARDS,
        pattern="*.json",
        listing=lambda: (
            f"{d.uid}: {d.title} ({sum(len(r.panels) for r in d.rows)} panels)" for d in defs.dashboards()
        ),
    )


if __name__ == "__main__":
    sys.exit(main())

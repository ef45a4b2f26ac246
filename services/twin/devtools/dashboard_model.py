"""The vocabulary of the dashboards' definitions: dashboards of rows of panels of PromQL, as plain data
(see :mod:`twin.devtools.dashboard_defs` for the dashboards, :mod:`twin.devtools.dashboards` for
their rendering), and the query helpers the definitions share.
"""

from __future__ import annotations

from dataclasses import dataclass, field

CLUSTER = "cluster"  # fed only on Kubernetes: KubeRay/Ray Serve, kube-state-metrics, Kafka
OPERATOR = "operator"  # fed by the operator, which needs a Kubernetes API server
GPU = "gpu"  # fed only by vLLM on GPUs


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str = ""


@dataclass(frozen=True)
class Panel:
    title: str
    queries: tuple[Query, ...]
    unit: str = "short"
    description: str = ""
    kind: str = "timeseries"  # timeseries | stat | table
    width: int = 12
    height: int = 8
    needs: str | None = None  # CLUSTER, OPERATOR or GPU: why a single machine cannot feed it


@dataclass(frozen=True)
class Row:
    title: str
    panels: tuple[Panel, ...]


@dataclass(frozen=True)
class Dashboard:
    uid: str
    title: str
    description: str
    rows: tuple[Row, ...]
    profile_variable: bool = False
    tags: tuple[str, ...] = field(default=("llm-twin",))


def q(expr: str, legend: str = "") -> Query:
    return Query(expr, legend)


def p95(metric: str, by: str = "", where: str = "") -> str:
    keys = f"le, {by}" if by else "le"
    return f"histogram_quantile(0.95, sum by ({keys}) (rate({metric}_bucket{where}[$__rate_interval])))"


def p50(metric: str, by: str = "", where: str = "") -> str:
    return p95(metric, by, where).replace("histogram_quantile(0.95,", "histogram_quantile(0.5,", 1)

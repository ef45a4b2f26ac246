"""Run the dashboards' PromQL against a Prometheus as Grafana would: Grafana's variables expanded,
time-series panels as range queries over the dashboard's window, stat and table panels as instant
queries at its end. :mod:`twin.devtools.dashboard_png` draws what comes back, and the live
integration test (``tests/integration/test_dashboards_live.py``) checks every panel returns series.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from twin.devtools.dashboard_model import Panel, Query


@dataclass(frozen=True)
class Window:
    """The dashboard's time range and the values Grafana gives its variables for it."""

    start: float  # unix seconds
    end: float
    step: float = 2.0  # seconds between points of a range query
    rate_interval: str = "1m"  # Grafana: max(4 x scrape interval, step + scrape interval)
    profile: str = ".*"  # the profile overview's variable (a regex, as Grafana's "All" is)

    def expand(self, expr: str) -> str:
        """``expr`` with Grafana's variables replaced by this window's values."""
        return (
            expr.replace("$__rate_interval", self.rate_interval)
            .replace("$__range", f"{max(1, round(self.end - self.start))}s")
            .replace("$profile", self.profile)
        )


@dataclass(frozen=True)
class Series:
    labels: dict[str, str]
    points: list[tuple[float, float]]  # (unix seconds, value); one point for an instant query

    def legend(self, template: str) -> str:
        """The series' name as Grafana's legend format renders it (``{{label}}`` substituted)."""
        if not template:
            return ", ".join(f"{k}={v}" for k, v in sorted(self.labels.items())) or "value"
        out = template
        for key, value in self.labels.items():
            out = out.replace("{{" + key + "}}", value)
        return out


class PrometheusError(RuntimeError):
    """Prometheus refused a query (a syntax error, a bad range) or could not be reached."""


class Prometheus:
    """The two calls of Prometheus' HTTP API a dashboard makes (``/api/v1/query``, ``query_range``)."""

    def __init__(self, url: str, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.Client(timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Prometheus:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _get(self, path: str, params: dict[str, Any]) -> Any:
        try:
            response = self._http.get(f"{self.url}{path}", params=params)
        except httpx.HTTPError as exc:
            raise PrometheusError(f"{self.url}{path}: {exc}") from exc
        body = (
            response.json() if response.headers.get("content-type", "").startswith("application/json") else {}
        )
        if response.status_code != 200 or body.get("status") != "success":
            raise PrometheusError(f"{params.get('query')!r}: {body.get('error') or response.text[:300]}")
        return body["data"]

    def instant(self, expr: str, at: float) -> list[Series]:
        data = self._get("/api/v1/query", {"query": expr, "time": at})
        if data["resultType"] == "scalar":
            return [Series({}, [(float(data["result"][0]), float(data["result"][1]))])]
        return [Series(r["metric"], [(float(r["value"][0]), float(r["value"][1]))]) for r in data["result"]]

    def range(self, expr: str, window: Window) -> list[Series]:
        params = {"query": expr, "start": window.start, "end": window.end, "step": window.step}
        data = self._get("/api/v1/query_range", params)
        return [Series(r["metric"], [(float(t), float(v)) for t, v in r["values"]]) for r in data["result"]]

    def ready(self) -> bool:
        try:
            return self._http.get(f"{self.url}/-/ready").status_code == 200
        except httpx.HTTPError:
            return False


def run_query(prometheus: Prometheus, panel: Panel, query: Query, window: Window) -> list[Series]:
    """One of a panel's queries, the way Grafana runs it for that kind of panel."""
    expr = window.expand(query.expr)
    if panel.kind in ("stat", "table"):
        return prometheus.instant(expr, window.end)
    return prometheus.range(expr, window)

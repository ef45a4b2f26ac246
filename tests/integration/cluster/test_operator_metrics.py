"""The operator's panels against a real Prometheus: the operator of this package's installation
(the real ``python -m twin_operator`` under the chart's ServiceAccount, a real kube-apiserver, a
real Postgres and MLflow) reconciles a profile with stored writing, Debian's Prometheus scrapes
its ``/metrics`` with the chart's rules loaded, and every panel fed by the operator (``needs=
OPERATOR`` in the dashboards' definitions) must return a finite series for that profile, as
``tests/integration/test_dashboards_live.py`` requires of the panels a single machine feeds.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from support.operator_data import store_documents
from support.operator_e2e import Installation, get, sample
from support.processes import wait_for
from support.prometheus import PrometheusServer
from twin.devtools.dashboard_defs import OPERATOR, Dashboard, Row, panels
from twin.devtools.dashboard_png import render
from twin.devtools.dashboard_queries import Window, run_query

PROFILE = "gwen"  # a name no other test of the package uses (the gauges are per namespace and name)
FED_BY_OPERATOR = [(board, panel) for board, panel in panels() if panel.needs == OPERATOR]


@dataclass
class Scraped:
    prometheus: PrometheusServer
    window: Window
    documents: int
    selector: str  # the profile's namespace and name as PromQL label matchers


@pytest.fixture(scope="module")
def scraped(installation: Installation, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scraped]:
    kube, ns = installation.kube, installation.namespaces[0]
    docs = store_documents(installation.dsn, PROFILE)
    kube.apply(sample(PROFILE), "-n", ns)
    prom = PrometheusServer(tmp_path_factory.mktemp("operator-prometheus"), ("twin-operator",))
    prom.start()
    started = time.time()
    try:
        with prom.target("twin-operator", installation.metrics_port):
            selector = f'profile="{PROFILE}",namespace="{ns}"'
            wait_for(
                lambda: prom.value(f"max(twin_profile_documents{{{selector}}})") == len(docs),
                120,
                f"Prometheus to scrape {PROFILE}'s documents from the operator",
            )
            seen = time.time()
            wait_for(
                lambda: prom.value('timestamp(up{job="twin-operator"})') > seen + 4, 60, "four more scrapes"
            )
            yield Scraped(prom, Window(started, time.time(), 1.0, "15s", PROFILE), len(docs), selector)
    finally:
        prom.stop()
        kube.kubectl("delete", "twinprofile", PROFILE, "-n", ns, "--wait=false")
        wait_for(lambda: get(kube, "twinprofile", ns, PROFILE) is None, 120, f"{PROFILE} to be gone")


@pytest.mark.parametrize(
    ("board", "panel"), FED_BY_OPERATOR, ids=[f"{b.uid}:{p.title}" for b, p in FED_BY_OPERATOR]
)
def test_every_operator_panel_returns_series(scraped: Scraped, board: Any, panel: Any) -> None:
    for query in panel.queries:
        found = run_query(scraped.prometheus.client, panel, query, scraped.window)
        expr = scraped.window.expand(query.expr)
        assert found, f"{board.uid} / {panel.title}: no series for {expr}"
        assert any(math.isfinite(v) for s in found for _, v in s.points), (
            f"{panel.title}: only NaN for {expr}"
        )


def test_the_gauges_are_the_profiles_own(scraped: Scraped) -> None:
    p, sel = scraped.prometheus, scraped.selector
    assert p.value(f"max(twin_profile_documents{{{sel}}})") == scraped.documents
    assert p.value(f"max(twin_profile_chunks{{{sel}}})") > 0
    assert p.value(f"max(twin_profile_champion_version{{{sel}}})") == 0  # none trained yet
    # no trained version: every document is new to the model
    assert p.value(f"max(twin_profile_changed_documents{{{sel}}})") == scraped.documents
    # one current phase, and the conditions that are not True say why
    assert p.value(f"sum(twin_profile_phase{{{sel}}})") == 1
    assert p.value(f'count(twin_profile_condition{{{sel},status!="True"}})') >= 1
    assert p.value('sum(twin_operator_reconciles_total{outcome="ok"})') > 0


def test_the_operator_panels_draw_from_the_live_prometheus(scraped: Scraped, tmp_path: Path) -> None:
    """Their picture for docs/observability.md (``TWIN_DASHBOARD_PICTURES=docs/img`` keeps it)."""
    board = Dashboard(
        "operator-panels",
        "LLM Twin / The operator's panels (from the dashboards above)",
        "",
        (Row(f"Fed by the operator: profile {PROFILE}", tuple(p for _, p in FED_BY_OPERATOR)),),
    )
    out = Path(os.environ.get("TWIN_DASHBOARD_PICTURES") or tmp_path)
    drawn = render(board, scraped.prometheus.client, scraped.window, out)
    assert drawn.name == "dashboard-operator-panels.png" and drawn.stat().st_size > 20_000

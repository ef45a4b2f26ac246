"""Every dashboard panel against a real Prometheus scraping the real services.

One short end-to-end run on this machine, watched the way a cluster's Prometheus would watch it:
Debian's Prometheus (scraping every second, with the chart's alert and recording rules loaded)
scrapes ``twin features`` (embedded Debezium, Ray, the real embedder), a ``twin crawl`` of the
fixture sites (with one source that 404s), a short ``twin train`` (Ray Train, SmolLM2, MLflow)
and ``twin serve`` (transformers engine) answering chat requests through the real ``openai``
client, good and bad. Then every query of every panel runs as Grafana runs it and must return
at least one series, except the panels that say they need a cluster or a GPU
(``Panel.needs``; docs/observability.md lists them and why). Each panel's PNG is drawn from the
same Prometheus (``TWIN_DASHBOARD_PICTURES=docs/img`` keeps them for the docs).
"""

from __future__ import annotations

import json
import math
import os
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
import psycopg
import pytest
import yaml

from support.features import drop_slot, start_features
from support.processes import free_port, run_twin, wait_for
from support.prometheus import PrometheusServer
from support.serving import KEY, twin_server
from support.twin_cli import sample_profile
from twin.adapters.postgres import connect, migrate
from twin.demo.content import load_demo_content
from twin.demo.sites import DEMO_PORTS, serve_demo_sites
from twin.devtools.dashboard_defs import panels
from twin.devtools.dashboard_png import render_all
from twin.devtools.dashboard_queries import Prometheus, Window, run_query
from twin.domain.documents import Platform

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1500)]

ROOT = Path(__file__).resolve().parents[2]
PROFILE = "watched"
MODEL = f"twin-{PROFILE}"  # the served model id of a profile (its champion)
RATE_INTERVAL = "15s"  # Grafana's $__rate_interval for a 1 s scrape: at least 4 scrapes
LINGER = "60"  # seconds a finished crawl or training run waits for Prometheus' last scrape


@dataclass
class Run:
    server: PrometheusServer
    prometheus: Prometheus
    window: Window
    ports: dict[str, int]
    crawl: dict[str, Any]
    train: dict[str, Any]


JOBS = ("twin-features", "twin-crawl", "twin-train", "twin-serve")


def _profile(home: Path, servers: dict[Platform, Any]) -> Path:
    data = sample_profile(servers)
    data["metadata"]["name"] = PROFILE
    # One source that answers 404: the crawl-error panels need an error to show.
    web = servers[Platform.WEB].base_url
    data["spec"]["sources"].append({"url": f"{web}/no-such-blog/", "platform": "web"})
    data["spec"]["training"] = {"maxLength": 160, "batchSize": 4, "learningRate": 0.001, "gpus": 0}
    path = home / f"{PROFILE}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _last_json(out: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


@pytest.fixture(scope="module")
def run(pg_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    home = tmp_path_factory.mktemp("dashboards-live")
    ports = {name: free_port() for name in ("features", "crawl", "train", "serve")}
    with connect(pg_dsn) as conn:  # a clean store: the worker's snapshot reads only this run's writing
        migrate(conn)
        conn.execute(
            "TRUNCATE raw_documents, crawl_runs, cleaned_documents, chunks, document_tombstones, dead_letters"
            " CASCADE"
        )
        conn.commit()
    slot = f"dl_{uuid.uuid4().hex[:10]}"
    env = {
        "TWIN_DATABASE__DSN": pg_dsn,
        "TWIN_HOME": str(home / "home"),
        "TWIN_CRAWLER__ALLOWED_NETWORKS": '["127.0.0.1/32"]',
        "TWIN_LINKEDIN__EMAIL": "alice@example.com",
        "TWIN_LINKEDIN__PASSWORD": "correct horse",
        "TWIN_FEATURES__SLOT_NAME": slot,
        "TWIN_FEATURES__PUBLICATION": slot,
        "TWIN_FEATURES__METRICS_PORT": str(ports["features"]),
        "TWIN_RAY__NUM_CPUS": "2",
        # a short run (test_train.py's sizes): the panels need a run, not a good adapter
        "TWIN_TRAINING__MAX_STEPS": "6",
        "TWIN_TRAINING__CPUS_PER_WORKER": "2",
        "TWIN_TRAINING__STYLE_SAMPLES": "2",
        "TWIN_TRAINING__STYLE_MAX_NEW_TOKENS": "24",
        "TWIN_TRAINING__EVAL_MAX_SAMPLES": "16",
        "TWIN_SERVING__API_KEYS": f'["{KEY}"]',
        "TWIN_SERVING__ENGINE": "transformers",
        "TWIN_SERVING__MAX_TOKENS_LIMIT": "64",
        "TWIN_SERVING__DEFAULT_MAX_TOKENS": "8",
        "TWIN_SERVING__RAG_MAX_CONTEXT_CHARS": "800",
        "TWIN_SERVING__ADAPTER_CACHE_DIR": str(home / "adapters"),
    }
    prom = PrometheusServer(home / "prometheus", JOBS)
    prometheus = prom.start()
    started = time.time()
    features = start_features(env, home)
    try:
        live = ExitStack()
        live.enter_context(prom.target("twin-features", ports["features"]))
        with (
            serve_demo_sites(load_demo_content(), ports=dict.fromkeys(DEMO_PORTS, 0)) as servers,
            prom.target("twin-crawl", ports["crawl"]),
        ):
            profile = _profile(home, servers)
            crawled = run_twin(
                "crawl", "-p", str(profile), "--json", "--metrics-port", str(ports["crawl"]),
                "--metrics-linger", LINGER, env=env, cwd=home, timeout=600,
            )  # fmt: skip
        assert crawled.returncode == 0, crawled.stderr[-4000:]
        crawl = _last_json(crawled.stdout)

        def embedded() -> bool:
            if not features.running():
                raise RuntimeError(f"twin features exited:\n{features.output()}")
            with psycopg.connect(pg_dsn) as conn:
                raw, cleaned, chunked = conn.execute(
                    "SELECT (SELECT count(*) FROM raw_documents WHERE profile = %(p)s),"
                    " (SELECT count(*) FROM cleaned_documents WHERE profile = %(p)s),"
                    " (SELECT count(DISTINCT document_id) FROM chunks c JOIN cleaned_documents d"
                    "  ON d.id = c.document_id WHERE d.profile = %(p)s)",
                    {"p": PROFILE},
                ).fetchone() or (0, 0, 0)
            return raw > 0 and cleaned == raw and chunked > 0

        wait_for(embedded, 600, f"the crawl's documents in the feature store\n{features.output()}")

        with prom.target("twin-train", ports["train"]):
            trained = run_twin(
                "train", "-p", str(profile), "--json", "--metrics-port", str(ports["train"]),
                "--metrics-linger", LINGER, env=env, cwd=home, timeout=1200,
            )  # fmt: skip
        assert trained.returncode == 0, trained.stderr[-4000:]
        train = _last_json(trained.stdout)

        with (
            live,
            twin_server(profile, env, home, ports["serve"]) as server,
            # a serving replica serves one profile: a target label, as the chart's PodMonitor sets it
            prom.target("twin-serve", ports["serve"], profile=PROFILE),
        ):
            client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=KEY, timeout=300, max_retries=0)
            ask = [{"role": "user", "content": "What do you write about testing in production?"}]
            client.chat.completions.create(model=MODEL, messages=ask)  # type: ignore[arg-type]
            stream = client.chat.completions.create(model=MODEL, messages=ask, stream=True)  # type: ignore[arg-type]
            assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
            with pytest.raises(openai.BadRequestError):  # over the server's max_tokens limit: a 400
                client.chat.completions.create(model=MODEL, messages=ask, max_tokens=10_000)  # type: ignore[arg-type]
            with pytest.raises(openai.AuthenticationError):  # a wrong key: a 401
                openai.OpenAI(base_url=f"{server.url}/v1", api_key="wrong", max_retries=0).models.list()
            # Every request is in Prometheus, and the recording rules have run over them.
            wait_for(
                lambda: (
                    prom.value("sum(twin_serve_requests_total)") >= 3
                    and bool(prometheus.instant("twin:serve_error_ratio:rate5m", time.time()))
                ),
                60,
                "Prometheus to scrape the served requests",
            )
            # ...and has scraped a few more times since (a rate needs two samples in its window,
            # and a range query's last point must come after the newest series was born).
            seen = time.time()
            wait_for(
                lambda: prom.value('min(timestamp(up{job=~"twin-(serve|features)"}))') > seen + 4,
                60,
                "four more scrapes",
            )
            window = Window(started, time.time(), step=1.0, rate_interval=RATE_INTERVAL, profile=PROFILE)
            yield Run(prom, prometheus, window, ports, crawl, train)
    finally:
        try:
            features.stop()
        finally:
            prom.stop()
            drop_slot(pg_dsn, slot)


LIVE = [(board, panel) for board, panel in panels() if panel.needs is None]
NEEDS = [(board, panel) for board, panel in panels() if panel.needs is not None]


@pytest.mark.parametrize(("board", "panel"), LIVE, ids=[f"{b.uid}:{p.title}" for b, p in LIVE])
def test_every_panel_query_returns_series(run: Run, board: Any, panel: Any) -> None:
    for query in panel.queries:
        found = run_query(run.prometheus, panel, query, run.window)
        expr = run.window.expand(query.expr)
        assert found, f"{board.uid} / {panel.title}: no series for {expr}"
        # A series of NaN (a quantile of no observations, 0/0) draws nothing: not good enough.
        assert any(math.isfinite(v) for s in found for _, v in s.points), (
            f"{panel.title}: only NaN for {expr}"
        )


def test_the_figures_are_the_runs_own(run: Run) -> None:
    """Not just any series: the ones this run made, with the values it reported."""
    p, end = run.server, run.window.end
    new = sum(source["new"] for source in run.crawl["sources"])
    span = f"{int(end - run.window.start) + 60}s"
    written = p.value(f'sum(max_over_time(twin_crawl_documents_total{{outcome="new"}}[{span}]))')
    assert new > 0 and written == new, (written, run.crawl)
    assert p.value('sum(max_over_time(twin_crawl_errors_total{kind="HttpError"}[1h]))') >= 1
    assert p.value("sum(twin_feature_chunks_written_total)") > 0
    assert p.value('sum(twin_serve_requests_total{status="200"})') >= 2
    assert p.value('sum(twin_serve_errors_total{status="400"})') >= 1
    version = run.train["version"]
    assert (
        p.value(
            f'max(max_over_time(twin_training_heldout_perplexity{{model="candidate",version="{version}"}}[1h]))',
        )
        > 1
    )
    assert p.value(f'max(twin_serve_model_version{{profile="{PROFILE}"}})') == version


def test_the_alert_and_recording_rules_evaluate_without_error(run: Run) -> None:
    groups = run.prometheus._get("/api/v1/rules", {})["groups"]
    rules = [r for g in groups for r in g["rules"]]
    assert rules and all(r["health"] == "ok" for r in rules), [
        (r["name"], r.get("lastError")) for r in rules if r["health"] != "ok"
    ]
    firing = {
        a["labels"]["alertname"]
        for a in run.prometheus._get("/api/v1/alerts", {})["alerts"]
        if a["state"] == "firing"
    }
    # Healthy run: nothing of ours pages, except that no operator runs here (its absence alert).
    assert firing <= {"TwinOperatorMetricsAbsent"}, firing


def test_every_dashboard_draws_from_the_live_prometheus(run: Run, tmp_path: Path) -> None:
    out = Path(os.environ.get("TWIN_DASHBOARD_PICTURES") or tmp_path)
    drawn = render_all(run.prometheus, run.window, out)
    assert [p.name for p in drawn] == [
        f"dashboard-{b}.png" for b in ("twin-pipeline", "twin-training", "twin-serving", "twin-profile")
    ]
    assert all(p.stat().st_size > 20_000 for p in drawn)


@pytest.mark.parametrize(("board", "panel"), NEEDS, ids=[f"{b.uid}:{p.title}" for b, p in NEEDS])
def test_panels_a_single_machine_cannot_feed_say_why(board: Any, panel: Any) -> None:
    """Listed, not skipped: each names what feeds it, and docs/observability.md lists it."""
    assert panel.needs in ("cluster", "operator", "gpu")
    doc = (ROOT / "docs" / "observability.md").read_text()
    assert f"| {board.uid} | {panel.title} |" in doc, f"docs/observability.md must list {panel.title!r}"

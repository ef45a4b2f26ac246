"""The metrics the code exports (``twin.observability``): the naming convention holds for every
family, the inventory in docs/observability.md lists exactly the registry's, and the helpers that
crawls, training runs and the operator call set the series they promise (read back from the real
prometheus-client registry, not a mock)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from twin import observability as obs
from twin.domain.crawl import PageError, SourceReport
from twin.domain.documents import Platform
from twin.observability import crawl, training

DOC = Path(__file__).resolve().parents[2] / "docs" / "observability.md"
BASE_UNITS = ("_seconds", "_bytes")
FORBIDDEN_LABELS = {"url", "source_url", "prompt", "message", "query", "title", "document_id"}


def value(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


@pytest.mark.parametrize("name", sorted(obs.inventory()))
def test_every_family_follows_the_naming_convention(name: str) -> None:
    kind, help_text, labels = obs.inventory()[name]
    assert name.startswith("twin_") and re.fullmatch(r"[a-z][a-z0-9_]*", name)
    assert name.endswith("_total") == (kind == "counter"), "counters, and only counters, end in _total"
    assert not re.search(r"_(ms|milliseconds|minutes|hours|kb|mb|gb|kib|mib)(_|$)", name), "base units only"
    if kind == "histogram":
        assert name.endswith(BASE_UNITS) or name.endswith("_per_second"), "a histogram names its unit"
    assert help_text.strip(), "every metric says what it measures"
    assert not FORBIDDEN_LABELS & set(labels), "nothing unbounded is a label"


def test_the_docs_inventory_lists_exactly_the_registry() -> None:
    text = DOC.read_text(encoding="utf-8")
    documented = set(re.findall(r"^\| `(twin_[a-z0-9_]+)` \|", text, flags=re.MULTILINE))
    assert documented == set(obs.inventory()), "update docs/observability.md's Metrics table"


def test_a_crawl_run_creates_its_series_at_zero_then_counts_outcomes() -> None:
    crawl.crawl_started("obs-test", ["medium"])
    assert value("twin_crawl_pages_total", profile="obs-test", platform="medium", outcome="failed") == 0
    assert value("twin_crawl_sources_total", profile="obs-test", platform="medium", status="failed") == 0
    # an error kind's first occurrence must show as an increase: the common kinds start at zero
    assert value("twin_crawl_errors_total", profile="obs-test", platform="medium", kind="HttpError") == 0
    assert value("twin_crawl_run_seconds_count", profile="obs-test") == 0
    crawl.page("obs-test", "medium", "ok")
    crawl.document("obs-test", "medium", "new", 2)
    crawl.error("obs-test", "medium", "HttpError")
    crawl.error("obs-test", "medium", "not a class name: https://example.com/?q=secret")
    ok = SourceReport(source_url="https://a.example", platform=Platform.MEDIUM, new=2)
    failed = SourceReport(
        source_url="https://b.example",
        platform=Platform.MEDIUM,
        errors=[PageError(url="https://b.example", error="HttpError", message="HTTP 500")],
    )
    crawl.crawl_finished("obs-test", [ok, failed], 12.5)
    assert value("twin_crawl_pages_total", profile="obs-test", platform="medium", outcome="ok") == 1
    assert value("twin_crawl_documents_total", profile="obs-test", platform="medium", outcome="new") == 2
    assert value("twin_crawl_errors_total", profile="obs-test", platform="medium", kind="HttpError") == 1
    assert value("twin_crawl_errors_total", profile="obs-test", platform="medium", kind="Other") == 1
    assert value("twin_crawl_sources_total", profile="obs-test", platform="medium", status="ok") == 1
    assert value("twin_crawl_sources_total", profile="obs-test", platform="medium", status="failed") == 1
    assert value("twin_crawl_runs_total", profile="obs-test", outcome="partial") == 1
    assert value("twin_crawl_run_seconds_count", profile="obs-test") == 1


def test_a_feature_worker_starts_its_event_series_at_zero() -> None:
    from twin.observability import features

    features.worker_started()
    for op in features.CHANGE_OPS:
        assert value("twin_feature_events_total", op=op, outcome="applied") is not None
    assert value("twin_feature_events_total", op="tombstone", outcome="tombstone") is not None


def test_a_training_run_counts_steps_loss_figures_and_promotion() -> None:
    training.run_started("obs-start")  # every outcome and promotion series exists from the start
    for outcome in training.RUN_OUTCOMES:
        assert value("twin_training_runs_total", profile="obs-start", outcome=outcome) == 0
    assert value("twin_training_promotions_declined_total", profile="obs-start") == 0
    assert value("twin_training_promotions_total", profile="obs-start", by="gate") == 0
    meter = training.StepMeter("obs-test")
    for step, loss in ((5, 2.0), (10, 1.5), (10, 1.5)):  # a repeated report does not double-count
        meter(step, 20, loss)
    assert value("twin_training_steps_total", profile="obs-test") == 10
    assert value("twin_training_loss", profile="obs-test") == 1.5
    training.evaluated(
        "obs-test",
        7,
        {"heldout_ppl_candidate": 12.0, "heldout_ppl_base": 15.0, "style_fidelity_candidate": 0.8},
    )
    assert value("twin_training_heldout_perplexity", profile="obs-test", version="7", model="base") == 15.0
    assert value("twin_training_style_fidelity", profile="obs-test", version="7", model="candidate") == 0.8
    training.promotion("obs-test", promoted=True)
    training.promotion("obs-test", promoted=False)
    training.run_finished("obs-test", "trained", 60.0)
    assert value("twin_training_promotions_total", profile="obs-test", by="gate") == 1
    assert value("twin_training_promotions_declined_total", profile="obs-test") == 1
    assert value("twin_training_runs_total", profile="obs-test", outcome="trained") == 1


def _status(reason: str, phase: str) -> dict[str, object]:
    return {"phase": phase, "conditions": [{"type": "SourcesCrawled", "status": "False", "reason": reason}]}


def test_profile_gauges_replace_a_changed_reason_and_forget_a_deleted_profile() -> None:
    gauges = obs.ProfileGauges()
    counts = {"documents": 3, "chunks": 9, "champion_version": 0, "changed_documents": None}
    gauges.observe("ns", "obs-test", _status("Crawling", "Crawling"), counts=counts, retrain_threshold=5)
    crawling = {"namespace": "ns", "profile": "obs-test", "condition": "SourcesCrawled", "status": "False"}
    assert value("twin_profile_condition", **crawling, reason="Crawling") == 1
    assert value("twin_profile_documents", namespace="ns", profile="obs-test") == 3
    assert value("twin_profile_changed_documents", namespace="ns", profile="obs-test") is None

    gauges.observe("ns", "obs-test", _status("CrawlFailed", "Degraded"), counts=None, retrain_threshold=5)
    assert value("twin_profile_condition", **crawling, reason="Crawling") is None, "no stale reason"
    assert value("twin_profile_condition", **crawling, reason="CrawlFailed") == 1
    assert value("twin_profile_phase", namespace="ns", profile="obs-test", phase="Degraded") == 1
    assert value("twin_profile_phase", namespace="ns", profile="obs-test", phase="Crawling") is None
    assert value("twin_profile_documents", namespace="ns", profile="obs-test") is None, "unreadable: dropped"

    gauges.forget("ns", "obs-test")
    assert value("twin_profile_condition", **crawling, reason="CrawlFailed") is None
    assert value("twin_profile_retrain_threshold_documents", namespace="ns", profile="obs-test") is None


def test_sample_names_cover_what_prometheus_stores() -> None:
    names = obs.sample_names()
    assert {
        "twin_serve_requests_total",
        "twin_serve_request_seconds_bucket",
        "twin_profile_condition",
    } <= names
    assert "twin_serve_requests" not in names

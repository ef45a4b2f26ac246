"""Every Prometheus metric, defined once. Dashboards and alerts may name only these (and the
external sets listed in :mod:`twin.devtools.external_metrics`).

One module per part that exports them: :mod:`.features`, :mod:`.serving`, :mod:`.crawl`,
:mod:`.training`, :mod:`.profiles` (the operator's per-profile gauges). Names follow one
convention: the ``twin_`` prefix, then the part, then what is measured; base units in the name
(``_seconds``, ``_bytes``); counters end in ``_total``. Labels are bounded vocabularies (outcome,
status, platform, condition) or the profile; nothing unbounded (URLs, prompts, messages) is ever a
label. The inventory with types, labels and ports is in docs/observability.md.

Defining a metric registers it with prometheus-client's default registry, which connects to
nothing; :func:`serve_metrics` (in :mod:`.endpoint`) opens the HTTP endpoint when a command asks for it.
"""

from __future__ import annotations

from prometheus_client import REGISTRY

from twin.observability.crawl import (
    CRAWL_DOCUMENTS,
    CRAWL_ERRORS,
    CRAWL_PAGES,
    CRAWL_RUN_SECONDS,
    CRAWL_RUNS,
    CRAWL_SOURCES,
)
from twin.observability.endpoint import MetricsEndpoint, metrics_while_running, serve_metrics
from twin.observability.features import (
    EMBEDDING_BATCH_SECONDS,
    FEATURE_CHUNKS_WRITTEN,
    FEATURE_CONSUMER_LAG,
    FEATURE_DEAD_LETTERS,
    FEATURE_EVENTS,
    FEATURE_FRESHNESS,
    FEATURE_LAG_SECONDS,
)
from twin.observability.profiles import (
    OPERATOR_RECONCILE_SECONDS,
    OPERATOR_RECONCILES,
    PROFILE_CHAMPION_VERSION,
    PROFILE_CHANGED_DOCUMENTS,
    PROFILE_CHUNKS,
    PROFILE_CONDITION,
    PROFILE_DOCUMENTS,
    PROFILE_PHASE,
    PROFILE_RETRAIN_THRESHOLD,
    ProfileGauges,
)
from twin.observability.serving import (
    SERVE_ERRORS,
    SERVE_INFLIGHT,
    SERVE_LATENCY,
    SERVE_MODEL_VERSION,
    SERVE_REQUESTS,
    SERVE_RETRIEVAL,
    SERVE_TOKENS,
    SERVE_TOKENS_PER_S,
    SERVE_TTFT,
)
from twin.observability.training import (
    TRAINING_HELDOUT_PERPLEXITY,
    TRAINING_LOSS,
    TRAINING_PROMOTIONS,
    TRAINING_PROMOTIONS_DECLINED,
    TRAINING_RUN_SECONDS,
    TRAINING_RUNS,
    TRAINING_STEPS,
    TRAINING_STYLE_FIDELITY,
    StepMeter,
)

# The series a family's samples are named by, from its name (a counter's _created is exported too).
_SAMPLE_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "gauge": ("",),
}


def inventory() -> dict[str, tuple[str, str, tuple[str, ...]]]:
    """Every ``twin_`` metric family this package defines: name -> (type, help, label names).

    Read from the registry itself, so the docs' table and the dashboards' check cannot name a
    metric the code does not export."""
    found: dict[str, tuple[str, str, tuple[str, ...]]] = {}
    # The registry has no public walk of its collectors, and a labelled metric with no children yet
    # collects no samples: its label names are only on the collector.
    for collector in list(REGISTRY._collector_to_names):
        describe = getattr(collector, "describe", None)
        if describe is None or not hasattr(collector, "_labelnames"):
            continue
        for family in describe():
            if family.name.startswith("twin_"):
                name = family.name + ("_total" if family.type == "counter" else "")
                found[name] = (family.type, family.documentation, tuple(collector._labelnames))
    return dict(sorted(found.items()))


def sample_names() -> set[str]:
    """Every series name the ``twin_`` families export (a histogram's ``_bucket``, a counter's
    ``_total``...): what a PromQL selector may name."""
    names: set[str] = set()
    for name, (kind, _, _) in inventory().items():
        base = name.removesuffix("_total") if kind == "counter" else name
        names.update(base + suffix for suffix in _SAMPLE_SUFFIXES.get(kind, ("",)))
    return names


__all__ = [
    "CRAWL_DOCUMENTS",
    "CRAWL_ERRORS",
    "CRAWL_PAGES",
    "CRAWL_RUNS",
    "CRAWL_RUN_SECONDS",
    "CRAWL_SOURCES",
    "EMBEDDING_BATCH_SECONDS",
    "FEATURE_CHUNKS_WRITTEN",
    "FEATURE_CONSUMER_LAG",
    "FEATURE_DEAD_LETTERS",
    "FEATURE_EVENTS",
    "FEATURE_FRESHNESS",
    "FEATURE_LAG_SECONDS",
    "OPERATOR_RECONCILES",
    "OPERATOR_RECONCILE_SECONDS",
    "PROFILE_CHAMPION_VERSION",
    "PROFILE_CHANGED_DOCUMENTS",
    "PROFILE_CHUNKS",
    "PROFILE_CONDITION",
    "PROFILE_DOCUMENTS",
    "PROFILE_PHASE",
    "PROFILE_RETRAIN_THRESHOLD",
    "SERVE_ERRORS",
    "SERVE_INFLIGHT",
    "SERVE_LATENCY",
    "SERVE_MODEL_VERSION",
    "SERVE_REQUESTS",
    "SERVE_RETRIEVAL",
    "SERVE_TOKENS",
    "SERVE_TOKENS_PER_S",
    "SERVE_TTFT",
    "TRAINING_HELDOUT_PERPLEXITY",
    "TRAINING_LOSS",
    "TRAINING_PROMOTIONS",
    "TRAINING_PROMOTIONS_DECLINED",
    "TRAINING_RUNS",
    "TRAINING_RUN_SECONDS",
    "TRAINING_STEPS",
    "TRAINING_STYLE_FIDELITY",
    "MetricsEndpoint",
    "ProfileGauges",
    "StepMeter",
    "inventory",
    "metrics_while_running",
    "sample_names",
    "serve_metrics",
]

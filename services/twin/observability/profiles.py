"""Each TwinProfile's state as the operator sees it, as gauges (in the manner of kube-state-metrics).

The crawl Jobs and training runs are short processes; the operator is not, and it already reads,
on every reconcile, each profile's conditions, counts and champion. So the alerts that must hold
for hours ("the crawl failed", "the champion is older than the retraining policy allows") read
these gauges instead of the short-lived processes' counters. The operator serves them on
``TWIN_OPERATOR_METRICS_PORT``. Every series is labelled by the profile's namespace and name
(bounded: TwinProfile objects); conditions and phases by their bounded vocabularies.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

PROFILE_CONDITION = Gauge(
    "twin_profile_condition",
    "1 for each TwinProfile condition's current status and reason (as in status.conditions).",
    ["namespace", "profile", "condition", "status", "reason"],
)
PROFILE_PHASE = Gauge(
    "twin_profile_phase", "1 for the TwinProfile's current phase.", ["namespace", "profile", "phase"]
)
PROFILE_DOCUMENTS = Gauge(
    "twin_profile_documents", "Raw documents stored for the profile.", ["namespace", "profile"]
)
PROFILE_CHUNKS = Gauge(
    "twin_profile_chunks", "Embedded chunks in the feature store for the profile.", ["namespace", "profile"]
)
PROFILE_CHAMPION_VERSION = Gauge(
    "twin_profile_champion_version",
    "The registry's champion version for the profile (0: none yet).",
    ["namespace", "profile"],
)
PROFILE_CHANGED_DOCUMENTS = Gauge(
    "twin_profile_changed_documents",
    "Documents new, changed or deleted since the newest trained version's dataset (every document "
    "while none is trained: all of them are new to the model).",
    ["namespace", "profile"],
)
PROFILE_RETRAIN_THRESHOLD = Gauge(
    "twin_profile_retrain_threshold_documents",
    "spec.training.retraining.minChangedDocuments: changed documents that call for a new run.",
    ["namespace", "profile"],
)
OPERATOR_RECONCILES = Counter(
    "twin_operator_reconciles_total",
    "Reconcile passes, by outcome (ok, invalid, dependency_missing, error).",
    ["outcome"],
)
OPERATOR_RECONCILE_SECONDS = Histogram(
    "twin_operator_reconcile_seconds",
    "Wall time of one reconcile pass: gather, decide, apply.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)

_PER_PROFILE = (
    PROFILE_DOCUMENTS,
    PROFILE_CHUNKS,
    PROFILE_CHAMPION_VERSION,
    PROFILE_CHANGED_DOCUMENTS,
    PROFILE_RETRAIN_THRESHOLD,
)


class ProfileGauges:
    """Sets and clears one operator's ``twin_profile_*`` series. It remembers which condition and
    phase series it set per profile, so a reason that changed (or a deleted profile) leaves no
    stale series behind. Thread-safe: kopf runs handlers on a pool."""

    def __init__(self) -> None:
        self._labelled: dict[tuple[str, str], list[tuple[Gauge, tuple[str, ...]]]] = {}
        self._lock = threading.Lock()

    def observe(
        self,
        namespace: str,
        profile: str,
        status: Mapping[str, Any],
        *,
        counts: Mapping[str, int | None] | None,
        retrain_threshold: int,
    ) -> None:
        """Record one reconcile's view: ``status`` is the rendered status (``phase``,
        ``conditions``); ``counts`` holds documents, chunks, champion_version and
        changed_documents (None: the stores could not be read, so the counts are dropped rather
        than left at their last value)."""
        key = (namespace, profile)
        series: list[tuple[Gauge, tuple[str, ...]]] = []
        conditions: Sequence[Mapping[str, Any]] = status.get("conditions") or []
        for c in conditions:
            condition = (namespace, profile, str(c.get("type")), str(c.get("status")), str(c.get("reason")))
            series.append((PROFILE_CONDITION, condition))
        if status.get("phase"):
            series.append((PROFILE_PHASE, (namespace, profile, str(status["phase"]))))
        with self._lock:
            self._clear(key)
            for gauge, labels in series:
                gauge.labels(*labels).set(1)
            self._labelled[key] = series
            PROFILE_RETRAIN_THRESHOLD.labels(namespace, profile).set(retrain_threshold)
            values = {
                PROFILE_DOCUMENTS: (counts or {}).get("documents"),
                PROFILE_CHUNKS: (counts or {}).get("chunks"),
                PROFILE_CHAMPION_VERSION: (counts or {}).get("champion_version"),
                PROFILE_CHANGED_DOCUMENTS: (counts or {}).get("changed_documents"),
            }
            for gauge, value in values.items():
                if value is None:
                    _remove(gauge, (namespace, profile))
                else:
                    gauge.labels(namespace, profile).set(value)

    def forget(self, namespace: str, profile: str) -> None:
        """Drop every series of a deleted profile."""
        with self._lock:
            self._clear((namespace, profile))
            for gauge in _PER_PROFILE:
                _remove(gauge, (namespace, profile))

    def _clear(self, key: tuple[str, str]) -> None:
        for gauge, labels in self._labelled.pop(key, []):
            _remove(gauge, labels)


def _remove(gauge: Gauge, labels: tuple[str, ...]) -> None:
    with contextlib.suppress(KeyError):  # never set
        gauge.remove(*labels)

"""The profile's conditions and phase, computed from what was observed, never assumed.

Five conditions, each with a reason (CamelCase, for machines), a message (for people) and the
generation it describes: ``SourcesCrawled`` (the current crawl Job), ``FeaturesReady`` (the
change-capture path and the chunks it wrote), ``DatasetReady`` (a stored dataset version),
``ModelTrained`` (the registry's champion and the training RayJob) and ``Serving`` (the
RayService). ``lastTransitionTime`` moves only when a condition's status changes, as Kubernetes
tools expect. A dependency that is missing (Postgres, KubeRay) is a condition with its own
reason and a retry with backoff, so ``kubectl get twin`` says what is wrong instead of the
operator crash-looping.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from twin.domain.profile_status import CONDITION_TYPES
from twin_operator.model import JobState

Status = Literal["True", "False", "Unknown"]

# Reasons that mean something needs attention: the phase is Degraded while any condition has one.
FAILURES = frozenset(
    {
        "CrawlFailed",
        "FeaturePipelineDown",
        "StoreUnreachable",
        "KubeRayMissing",
        "TrainingFailed",
        "RetrainingFailed",
    }
)
# Reasons of a dependency that is absent: retried with backoff rather than at the timer's pace.
MISSING = frozenset({"StoreUnreachable", "KubeRayMissing"})


@dataclass(frozen=True)
class Condition:
    type: str
    status: Status
    reason: str
    message: str


def rfc3339(moment: datetime) -> str:
    """Kubernetes' time format: UTC, whole seconds, ``Z``."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def previous_conditions(previous_status: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    found = previous_status.get("conditions") or []
    return {c["type"]: c for c in found if isinstance(c, Mapping) and "type" in c}


def render(
    conditions: Sequence[Condition], generation: int, previous_status: Mapping[str, Any], now: datetime
) -> list[dict[str, Any]]:
    """The conditions as the status holds them, keeping each one's ``lastTransitionTime`` while
    its status is unchanged."""
    before = previous_conditions(previous_status)
    out = []
    for c in conditions:
        old = before.get(c.type)
        since = old.get("lastTransitionTime") if old and old.get("status") == c.status else None
        out.append(
            {
                "type": c.type,
                "status": c.status,
                "reason": c.reason,
                "message": c.message[:32768],  # metav1.Condition's limit
                "observedGeneration": generation,
                "lastTransitionTime": since if isinstance(since, str) and since else rfc3339(now),
            }
        )
    return out


# ------------------------------------------------------------------------------ the five


def sources_crawled(crawl: JobState | None, documents: int | None) -> Condition:
    kind = "SourcesCrawled"
    if crawl is None:
        return Condition(kind, "False", "NotCrawled", "no crawl has run for this spec yet")
    if crawl.phase == "Succeeded":
        stored = "" if documents is None else f"; {documents} document(s) stored"
        return Condition(kind, "True", "Crawled", f"crawl {crawl.name} succeeded{stored}")
    if crawl.phase == "Failed":
        detail = f": {crawl.message}" if crawl.message else ""
        return Condition(kind, "False", "CrawlFailed", f"crawl {crawl.name} failed{detail}")
    verb = "is running" if crawl.phase == "Running" else "is waiting to start"
    return Condition(kind, "False", "Crawling", f"crawl {crawl.name} {verb}")


def features_ready(
    pipeline_ready: bool,
    pipeline_message: str,
    documents: int | None,
    chunks: int | None,
    store_error: str | None,
) -> Condition:
    kind = "FeaturesReady"
    if store_error is not None:
        return Condition(kind, "Unknown", "StoreUnreachable", store_error)
    if not pipeline_ready:
        return Condition(
            kind, "False", "FeaturePipelineDown", pipeline_message or "the change-capture path is not ready"
        )
    if not documents:
        return Condition(kind, "False", "NoDocuments", "no documents stored yet")
    if not chunks:
        return Condition(
            kind, "False", "Processing", f"{documents} document(s) waiting to be chunked and embedded"
        )
    return Condition(kind, "True", "ChunksStored", f"{chunks} chunk(s) from {documents} document(s)")


def dataset_ready(dataset_version: str | None, store_error: str | None) -> Condition:
    kind = "DatasetReady"
    if store_error is not None:
        return Condition(kind, "Unknown", "StoreUnreachable", store_error)
    if dataset_version is None:
        return Condition(kind, "False", "NoDataset", "no dataset built yet: a training run builds it")
    return Condition(kind, "True", "DatasetBuilt", f"dataset {dataset_version}")


def model_trained(
    champion: int | None,
    last_run: JobState | None,
    plan_reason: str,
    *,
    store_error: str | None,
    kuberay_installed: bool,
    creating: str | None,
) -> Condition:
    kind = "ModelTrained"
    if store_error is not None:
        return Condition(kind, "Unknown", "StoreUnreachable", store_error)
    run = last_run.name if last_run else ""
    failed = last_run is not None and last_run.phase == "Failed"
    detail = f": {last_run.message}" if last_run and last_run.message else ""
    if champion is not None:
        if failed:
            return Condition(
                kind, "True", "RetrainingFailed", f"champion version {champion}; run {run} failed{detail}"
            )
        if creating or (last_run and last_run.phase in ("Pending", "Running")):
            return Condition(
                kind, "True", "Retraining", f"champion version {champion}; {creating or run} training"
            )
        return Condition(kind, "True", "ChampionRegistered", f"champion version {champion}; {plan_reason}")
    if creating:
        return Condition(kind, "False", "Training", f"starting training run {creating}: {plan_reason}")
    if last_run is not None and last_run.phase in ("Pending", "Running"):
        return Condition(kind, "False", "Training", f"training run {run} is {last_run.phase.lower()}")
    if failed:
        return Condition(kind, "False", "TrainingFailed", f"training run {run} failed{detail}")
    if not kuberay_installed:
        return Condition(
            kind, "False", "KubeRayMissing", "KubeRay's CRDs (ray.io/v1 RayJob) are not installed"
        )
    if last_run is not None and last_run.phase == "Succeeded":
        return Condition(
            kind, "False", "NotPromoted", f"run {run} finished without a champion: {plan_reason}"
        )
    return Condition(kind, "False", "NotTrained", plan_reason)


def serving(
    champion: int | None,
    ready: bool | None,
    message: str,
    endpoint: str | None,
    *,
    store_error: str | None,
    kuberay_installed: bool,
) -> Condition:
    kind = "Serving"
    if ready:
        return Condition(kind, "True", "EndpointReady", f"serving at {endpoint}" if endpoint else "serving")
    if store_error is not None and ready is None:
        return Condition(kind, "Unknown", "StoreUnreachable", store_error)
    if champion is None:
        return Condition(kind, "False", "NoChampion", "no model version to serve yet")
    if not kuberay_installed:
        return Condition(
            kind, "False", "KubeRayMissing", "KubeRay's CRDs (ray.io/v1 RayService) are not installed"
        )
    return Condition(kind, "False", "Deploying", message or f"deploying champion version {champion}")


# ------------------------------------------------------------------------------ phase and retry


def phase(conditions: Sequence[Condition], *, crawling: bool, training: bool) -> str:
    """One word for ``kubectl get twin``: Degraded while something needs attention, else how far
    the profile got (Ready once it serves), with work in flight named (Crawling, Training)."""
    by_type = {c.type: c for c in conditions}
    if any(c.reason in FAILURES for c in conditions):
        return "Degraded"
    if by_type["Serving"].status == "True":
        return "Ready"
    if training:
        return "Training"
    if crawling:
        return "Crawling"
    if by_type["SourcesCrawled"].status == "True" or by_type["FeaturesReady"].status == "True":
        return "Processing"
    return "Pending"


def backoff(
    conditions: Sequence[Condition],
    previous_status: Mapping[str, Any],
    now: datetime,
    *,
    base_s: float,
    max_s: float,
) -> float | None:
    """Seconds to the next try while a dependency is missing: half the time it has been missing,
    between ``base_s`` and ``max_s`` (so the waits grow geometrically, and nothing needs counting)."""
    before = previous_conditions(previous_status)
    waits = []
    for c in conditions:
        if c.reason not in MISSING:
            continue
        old = before.get(c.type)
        since = parse_time(old.get("lastTransitionTime")) if old and old.get("reason") == c.reason else None
        elapsed = (now - since).total_seconds() if since else 0.0
        waits.append(min(max_s, max(base_s, elapsed / 2)))
    return min(waits) if waits else None


def invalid_status(
    error_message: str, generation: int, previous: Mapping[str, Any], now: datetime
) -> dict[str, Any]:
    """The status of a spec that can never work: phase Invalid, every condition False with reason
    InvalidSpec and the message that says why. What was observed before (counts, champion,
    endpoint) stays: the profile's data and endpoint are not gone because its spec is wrong."""
    conditions = [Condition(t, "False", "InvalidSpec", error_message) for t in CONDITION_TYPES]
    status = {
        k: v
        for k, v in previous.items()
        if k in ("sources", "crawl", "dataset", "champion", "training", "endpoint")
    }
    status.update(
        {
            "observedGeneration": generation,
            "phase": "Invalid",
            "conditions": render(conditions, generation, previous, now),
        }
    )
    return status


__all__ = [
    "CONDITION_TYPES",
    "Condition",
    "backoff",
    "invalid_status",
    "phase",
    "render",
    "rfc3339",
]

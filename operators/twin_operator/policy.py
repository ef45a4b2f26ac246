"""The operator's decisions that are not object shapes: which crawl is current, when to train.

Pure functions of the profile and what was observed. The retraining rule itself is the domain's
(:func:`twin.domain.training.retraining_decision`, the one ``twin train --if-needed`` applies);
this module adds what only a cluster has: Jobs in flight, the retraining schedule, and names that
make a decision idempotent (one crawl Job per spec and crawl-now value, one RayJob per snapshot).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from cronsim import CronSim, CronSimError

from twin.domain.errors import InvalidSpec
from twin.domain.profile import TwinProfile
from twin.domain.training import Hardware, RetrainDecision, plan_training, retraining_decision
from twin_operator.model import JobState, Observed

IN_FLIGHT = ("Pending", "Running")
_HEX8 = re.compile(r"^[0-9a-f]{8}")
_HEX8_ONLY = re.compile(r"^[0-9a-f]{8}$")


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# ----------------------------------------------------------------------------------------- names


def bounded_name(profile: str, suffix: str = "", *, limit: int = 63) -> str:
    """``twin-<profile><suffix>`` within ``limit`` characters (a DNS-1035 label: it starts with a
    letter, and KubeRay caps RayJob and RayService names at 47). A long profile name is cut and
    a hash of the whole name appended, so two long names never collide."""
    name = f"twin-{profile}{suffix}"
    if len(name) <= limit:
        return name
    tag = _digest(profile)[:6]
    room = limit - len("twin-") - len(suffix) - len(tag) - 1
    return f"twin-{profile[:room].rstrip('-')}-{tag}{suffix}"


def crawl_hash(profile: TwinProfile, crawl_now: str | None) -> str:
    """8 hex of sha256 over the spec's sources and crawl settings and the crawl-now annotation: a
    spec change or a new annotation value names a new crawl Job, an unchanged one the same Job."""
    spec = profile.spec
    payload = json.dumps(
        {
            "sources": [s.model_dump(mode="json", by_alias=True) for s in spec.sources],
            "crawl": spec.crawl.model_dump(mode="json", by_alias=True),
            "crawlNow": crawl_now,
        },
        sort_keys=True,
        separators=(",", ":"),
    )
    return _digest(payload)[:8]


def crawl_job_name(profile: TwinProfile, crawl_now: str | None) -> str:
    return bounded_name(profile.name, f"-crawl-{crawl_hash(profile, crawl_now)}")


def cron_job_name(profile: TwinProfile) -> str:
    """``twin-<name>-crawl-cron``: its Jobs (``<cronjob>-<minutes since epoch>``) can never be
    mistaken for an on-demand crawl (``twin-<name>-crawl-<8 hex>``), whose hash may be all digits.
    52 characters at most: the CronJob controller appends 11 to name its Jobs."""
    return bounded_name(profile.name, "-crawl-cron", limit=52)


def snapshot_tag(snapshot: str) -> str:
    """The snapshot's first 8 hex (the port gives a sha256 hex), or a hash of any other form."""
    lowered = snapshot.lower()
    return lowered[:8] if _HEX8.match(lowered) else _digest(snapshot)[:8]


def training_job_name(profile: TwinProfile, snapshot: str) -> str:
    return bounded_name(profile.name, f"-train-{snapshot_tag(snapshot)}", limit=47)


def serving_name(profile: TwinProfile) -> str:
    return bounded_name(profile.name, "-serve", limit=47)


# ----------------------------------------------------------------------------------------- crawl


def _started(job: JobState) -> datetime:
    # A Job not started yet is the newest of all: it was created last.
    return job.started or datetime.max.replace(tzinfo=UTC)


def is_scheduled_crawl(job: JobState, profile: TwinProfile) -> bool:
    """A Job the CronJob made: ``<cronjob>-<digits>``."""
    prefix = cron_job_name(profile) + "-"
    return job.name.startswith(prefix) and job.name[len(prefix) :].isdigit()


def is_on_demand_crawl(job: JobState, profile: TwinProfile) -> bool:
    """A crawl Job reconcile created, for this or an earlier spec: ``twin-<name>-crawl-<8 hex>``."""
    prefix = bounded_name(profile.name, "-crawl-" + "0" * 8)[:-8]  # the same cut as crawl_job_name
    return job.name.startswith(prefix) and bool(_HEX8_ONLY.match(job.name[len(prefix) :]))


def current_crawl(profile: TwinProfile, observed: Observed) -> JobState | None:
    """The crawl whose outcome the status reports: the on-demand Job for the current spec and
    annotation, or a scheduled one that started after it (it crawled the same spec, later). Jobs of
    an earlier spec never count: their documents are not what the spec asks for now."""
    wanted = crawl_job_name(profile, observed.crawl_now)
    on_demand = next((j for j in observed.crawl_jobs if j.name == wanted), None)
    scheduled = [j for j in observed.crawl_jobs if is_scheduled_crawl(j, profile)]
    if on_demand is not None:
        scheduled = [
            j for j in scheduled if j.started and on_demand.started and j.started > on_demand.started
        ]
    candidates = ([on_demand] if on_demand else []) + scheduled
    return max(candidates, key=_started, default=None)


def crawl_history(profile: TwinProfile, observed: Observed, keep: int) -> tuple[str, ...]:
    """Earlier on-demand crawl Jobs to keep (the ``keep`` newest), so ``kubectl logs`` still finds
    the last few crawls; older ones are pruned. Scheduled Jobs are the CronJob's to clean up."""
    wanted = crawl_job_name(profile, observed.crawl_now)
    earlier = [j for j in observed.crawl_jobs if j.name != wanted and is_on_demand_crawl(j, profile)]
    earlier.sort(key=_started, reverse=True)
    return tuple(j.name for j in earlier[:keep])


# -------------------------------------------------------------------------------------- training


def latest(jobs: Iterable[JobState]) -> JobState | None:
    return max(jobs, key=_started, default=None)


def check_schedule(expression: str | None, field: str) -> None:
    """Raise :class:`InvalidSpec` for a cron expression that can never fire (``61 * * * *``)."""
    if expression is None:
        return
    if len(expression.split()) != 5:
        raise InvalidSpec(f"{field}: {expression!r} must be a five-field cron expression")
    try:
        CronSim(expression, datetime(2000, 1, 1, tzinfo=UTC))
    except CronSimError as exc:
        raise InvalidSpec(f"{field}: {expression!r} is not a valid cron expression ({exc})") from exc


def next_window(schedule: str, last_start: datetime) -> datetime:
    """The first scheduled time strictly after ``last_start`` (UTC, as the CronJob's timeZone)."""
    return next(CronSim(schedule, last_start.astimezone(UTC)))


def validate(profile: TwinProfile) -> None:
    """Raise :class:`InvalidSpec` for what the CRD's schema cannot catch: a training spec no
    hardware can run (``plan_training`` on the GPUs the spec asks for, with 4-bit kernels, as the
    training image has), inverted replica bounds, a cron expression that never fires."""
    spec = profile.spec
    plan_training(spec.training, Hardware(gpus=spec.training.gpus, bf16=True, bitsandbytes=True))
    if spec.serving.min_replicas > spec.serving.max_replicas:
        raise InvalidSpec(
            f"serving.minReplicas ({spec.serving.min_replicas}) exceeds serving.maxReplicas "
            f"({spec.serving.max_replicas})"
        )
    check_schedule(spec.crawl.schedule, "crawl.schedule")
    check_schedule(spec.training.retraining.schedule, "training.retraining.schedule")


def retrain(profile: TwinProfile, changed_since_champion: int | None) -> RetrainDecision:
    """The domain's retraining rule on what the port reports: the count of documents new, changed
    or deleted since the newest trained dataset (``None``: nothing trained yet), computed as
    ``twin train --if-needed`` computes it. The port gives counts, not the documents, so each moved
    document stands in as one entry the rule counts; the threshold and the wording stay the
    domain's."""
    threshold = profile.spec.training.retraining.min_changed_documents
    if changed_since_champion is None:
        return retraining_decision(None, {}, min_changed_documents=threshold)
    moved = {f"moved-{i}": "" for i in range(max(0, changed_since_champion))}
    return retraining_decision({}, moved, min_changed_documents=threshold)


@dataclass(frozen=True)
class TrainingPlan:
    """What reconcile does about training this time."""

    create: str | None  # the RayJob to create now, if any
    keep: str | None  # the latest existing RayJob (kept, never re-applied: KubeRay owns its run)
    reason: str  # why (or why not), for the ModelTrained condition's message


def plan(profile: TwinProfile, observed: Observed, features_ready: bool) -> TrainingPlan:
    """Whether to create a training RayJob now: KubeRay installed, the stores reachable, documents
    and features ready, no crawl or training in flight, the retraining rule says so, and the
    schedule's window (if any) has opened since the last run started."""
    last = latest(observed.training_jobs)
    keep = last.name if last else None
    store = observed.store

    def no(reason: str) -> TrainingPlan:
        return TrainingPlan(None, keep, reason)

    if store is None:
        return no("the stores cannot be read")
    if not observed.kuberay_installed:
        return no("KubeRay's CRDs are not installed")
    if store.snapshot is None or store.documents == 0:
        return no("no documents stored yet")
    if not features_ready:
        return no("waiting for the feature pipeline")
    crawl = current_crawl(profile, observed)
    if crawl is not None and crawl.phase in IN_FLIGHT:
        return no(f"waiting for crawl {crawl.name}")
    if last is not None and last.phase in IN_FLIGHT:
        return no(f"training run {last.name} is in progress")
    name = training_job_name(profile, store.snapshot)
    if any(j.name == name for j in observed.training_jobs):
        return no(f"this snapshot of the documents was trained by {name}")
    decision = retrain(profile, store.changed_since_champion)
    if not decision.retrain:
        return no(decision.reason)
    schedule = profile.spec.training.retraining.schedule
    if schedule and last is not None and last.started is not None:
        opens = next_window(schedule, last.started)
        if observed.now < opens:
            return no(f"{decision.reason}; the retraining schedule opens at {opens.isoformat()}")
    return TrainingPlan(name, keep, decision.reason)


__all__ = [
    "TrainingPlan",
    "bounded_name",
    "crawl_hash",
    "crawl_history",
    "crawl_job_name",
    "cron_job_name",
    "current_crawl",
    "plan",
    "retrain",
    "serving_name",
    "training_job_name",
    "validate",
]

"""``reconcile(profile, observed, config) -> Desired``: the operator's whole decision, as a pure function.

The kopf handlers gather an :class:`~twin_operator.model.Observed` (Jobs, RayJobs and the
RayService from the API server; counts, dataset and champion through the ports), call this, and
apply the :class:`~twin_operator.model.Desired` it returns: server-side apply of ``children`` in
their order, pruning of the owned children neither listed nor in ``retain``, a status patch, and
the next look after ``requeue_after`` seconds. Nothing here talks to a cluster or a store, so the
whole behaviour is unit-tested as plain functions over observed states.

Children, in apply order (the NetworkPolicy before any crawl pod can start):

- always: the profile ConfigMap, the crawl NetworkPolicy, the endpoint Service, the CronJob
  (with ``crawl.schedule``), and the crawl Job for the current spec and crawl-now value (created
  once; an existing one is retained, as its pod template is immutable);
- a training RayJob when :func:`twin_operator.policy.plan` says so; the latest one is retained;
- the RayService once the registry has a champion (and KubeRay is installed).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from twin.domain.errors import InvalidSpec
from twin.domain.profile import TwinProfile
from twin_operator import children, conditions, policy, raycluster
from twin_operator.config import OperatorConfig
from twin_operator.model import Desired, JobState, Observed, StoreState


def reconcile(profile: TwinProfile, observed: Observed, config: OperatorConfig) -> Desired:
    """The children, status and next look for ``profile`` given what was ``observed``.

    An invalid spec (one the schema let through but no run can satisfy) returns the Invalid status
    and ``prune=False``: nothing on the cluster changes until the spec is fixed.
    """
    try:
        policy.validate(profile)
    except InvalidSpec as exc:
        status = conditions.invalid_status(
            str(exc), observed.generation, observed.previous_status, observed.now
        )
        return Desired(children=(), status=status, requeue_after=None, retain=(), prune=False)
    return _reconcile(profile, observed, config)


def _reconcile(profile: TwinProfile, observed: Observed, config: OperatorConfig) -> Desired:
    uid = observed.uid
    store = observed.store
    store_error = observed.store_error if store is None else None
    if store is None and store_error is None:
        store_error = "the stores were not read"
    out: list[Mapping[str, Any]] = [
        children.profile_config_map(profile, uid),
        children.crawl_network_policy(profile, uid, config),
        children.endpoint_service(profile, uid, config),
    ]
    retain: list[tuple[str, str]] = []

    cron = children.crawl_cron_job(profile, uid, config)
    if cron is not None:
        out.append(cron)
    crawl_name = policy.crawl_job_name(profile, observed.crawl_now)
    if any(j.name == crawl_name for j in observed.crawl_jobs):
        retain.append(("Job", crawl_name))
    else:
        out.append(children.crawl_job(profile, uid, config, observed.crawl_now))
    retain += [("Job", name) for name in policy.crawl_history(profile, observed, config.crawl_job_history)]

    crawl = policy.current_crawl(profile, observed)
    documents = store.documents if store else _previous(observed, "crawl", "documents")
    chunks = store.chunks if store else _previous(observed, "crawl", "chunks")
    features = conditions.features_ready(
        observed.features.ready, observed.features.message, documents, chunks, store_error
    )

    training = policy.plan(profile, observed, features.status == "True")
    if training.keep:
        retain.append(("RayJob", training.keep))
    if training.create and store is not None and store.snapshot is not None:
        out.append(raycluster.training_ray_job(profile, uid, config, store.snapshot))
    last_run = policy.latest(observed.training_jobs)

    champion = store.champion.version if store and store.champion else None
    endpoint: str | None = None
    if champion is not None and observed.kuberay_installed:
        out.append(raycluster.serving_ray_service(profile, uid, config, champion))
        endpoint = children.endpoint_url(profile, config)
    elif store is None and observed.serving is not None:
        # The stores are unreachable: keep serving what was served rather than tear it down.
        retain.append(("RayService", observed.serving.name))
        endpoint = children.endpoint_url(profile, config)

    found = [
        conditions.sources_crawled(crawl, documents),
        features,
        conditions.dataset_ready(store.dataset_version if store else None, store_error),
        conditions.model_trained(
            champion,
            last_run,
            training.reason,
            store_error=store_error,
            kuberay_installed=observed.kuberay_installed,
            creating=training.create,
        ),
        conditions.serving(
            champion,
            observed.serving.ready if observed.serving else None,
            observed.serving.message if observed.serving else "",
            endpoint,
            store_error=store_error,
            kuberay_installed=observed.kuberay_installed,
        ),
    ]
    crawling = crawl is not None and crawl.phase in policy.IN_FLIGHT
    in_training = training.create is not None or (last_run is not None and last_run.phase in policy.IN_FLIGHT)
    status: dict[str, Any] = {
        "observedGeneration": observed.generation,
        "phase": conditions.phase(found, crawling=crawling, training=in_training),
        "sources": len(profile.spec.sources),
        "conditions": conditions.render(found, observed.generation, observed.previous_status, observed.now),
        "crawl": _crawl_status(observed, crawl, documents, chunks),
        "dataset": _dataset_status(observed, store),
        "training": _training_status(training.create, last_run),
    }
    champion_status = _champion_status(observed, store)
    if champion_status is not None:
        status["champion"] = champion_status
    if endpoint is not None:
        status["endpoint"] = endpoint

    return Desired(
        children=tuple(out),
        status=status,
        requeue_after=_requeue(found, observed, config, busy=crawling or in_training),
        retain=tuple(retain),
    )


def _previous(observed: Observed, section: str, key: str) -> int | None:
    value = (observed.previous_status.get(section) or {}).get(key)
    return value if isinstance(value, int) else None


def _crawl_status(
    observed: Observed, crawl: JobState | None, documents: int | None, chunks: int | None
) -> dict[str, Any]:
    out: dict[str, Any] = {"documents": documents or 0, "chunks": chunks or 0}
    if crawl is not None:
        out["job"] = crawl.name
    finished = [j.finished for j in observed.crawl_jobs if j.phase == "Succeeded" and j.finished]
    if finished:
        out["lastCrawlTime"] = conditions.rfc3339(max(finished))
    elif last := (observed.previous_status.get("crawl") or {}).get("lastCrawlTime"):
        out["lastCrawlTime"] = last
    return out


def _dataset_status(observed: Observed, store: StoreState | None) -> dict[str, Any]:
    if store is None:
        return dict(observed.previous_status.get("dataset") or {})
    return {"version": store.dataset_version} if store.dataset_version else {}


def _champion_status(observed: Observed, store: StoreState | None) -> dict[str, Any] | None:
    if store is None:
        previous = observed.previous_status.get("champion")
        return dict(previous) if isinstance(previous, Mapping) else None
    if store.champion is None:
        return None
    return {
        "version": store.champion.version,
        "heldOut": {k: float(v) for k, v in store.champion.figures.items()},
    }


def _training_status(creating: str | None, last_run: JobState | None) -> dict[str, Any]:
    if creating:
        return {"job": creating, "phase": "Pending"}
    if last_run is None:
        return {}
    return {"job": last_run.name, "phase": last_run.phase}


def _requeue(
    found: list[conditions.Condition], observed: Observed, config: OperatorConfig, *, busy: bool
) -> float | None:
    """Back off while a dependency is missing; look again soon while work is in flight or the
    endpoint is rolling out; else leave it to the timer."""
    waits = []
    missing = conditions.backoff(
        found,
        observed.previous_status,
        observed.now,
        base_s=config.backoff_base_s,
        max_s=config.backoff_max_s,
    )
    if missing is not None:
        waits.append(missing)
    deploying = any(c.type == "Serving" and c.reason == "Deploying" for c in found)
    if busy or deploying:
        waits.append(config.progress_interval_s)
    return min(waits) if waits else None


__all__ = ["reconcile"]

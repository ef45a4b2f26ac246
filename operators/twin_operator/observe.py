"""Gather an :class:`~twin_operator.model.Observed` for one profile: the API server and the stores.

Every field comes from an answer, never from an assumption:

- crawl Jobs (``batch/v1``, labelled for the profile, component ``crawl``): their phase from the
  status conditions (``Complete``/``Failed`` True), else ``active`` pods, else Pending;
- training RayJobs (``ray.io/v1``, component ``train``): ``.status.jobStatus`` (SUCCEEDED,
  FAILED, STOPPED) and ``.status.jobDeploymentStatus`` (Complete, Failed, Running...), KubeRay's own;
- the RayService (component ``serve``): ready when its ``Ready`` condition is True, or, for KubeRay
  versions without conditions, when ``.status.serviceStatus`` is ``Running``;
- KubeRay: installed when the ``rayjobs.ray.io`` and ``rayservices.ray.io`` CRDs exist and are
  Established;
- the change-capture path (installation-wide, the same for every profile): the Deployments named in
  the operator's settings (the feature workers, Kafka Connect) each have an available replica. An
  empty list means this installation does not run change capture itself; the profile's chunk
  count (``FeaturesReady`` needs chunks) is then the only evidence, and the message says so;
- the stores through :class:`twin.ports.ProfileData`: an error there (Postgres or the registry
  unreachable) becomes ``store_error``, never an exception out of here.

Only objects whose controller is this profile (by uid) count, and crawl Jobs the profile's CronJob
made: a deleted and re-created profile of the same name does not inherit the old one's children.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from twin.ports import ProfileData
from twin_operator.conditions import parse_time
from twin_operator.kube import Kube, KubeError
from twin_operator.model import (
    COMPONENT_LABEL,
    CRAWL_NOW,
    PROFILE_LABEL,
    ChampionState,
    FeaturesHealth,
    JobPhase,
    JobState,
    Observed,
    ServingState,
    StoreState,
)

log = logging.getLogger(__name__)
KUBERAY_CRDS = ("rayjobs.ray.io", "rayservices.ray.io")


def gather(
    kube: Kube,
    data: ProfileData,
    body: Mapping[str, Any],
    *,
    features_deployments: Sequence[str],
    now: datetime | None = None,
) -> Observed:
    """Everything ``reconcile`` may base a decision on, read fresh for the profile ``body``."""
    meta = body.get("metadata") or {}
    namespace, name, uid = str(meta.get("namespace")), str(meta["name"]), str(meta.get("uid", ""))
    kuberay = kuberay_installed(kube)
    where = (namespace, name, uid)
    crawls = [job_state(j) for j in owned(kube, "Job", where, "crawl", via="CronJob")]
    runs = [ray_job_state(j) for j in owned(kube, "RayJob", where, "train")] if kuberay else []
    services = [serving_state(s) for s in owned(kube, "RayService", where, "serve")] if kuberay else []
    store, store_error = store_state(data, name)
    return Observed(
        now=now or datetime.now(UTC),
        generation=int(meta.get("generation") or 0),
        uid=uid,
        crawl_now=(meta.get("annotations") or {}).get(CRAWL_NOW),
        crawl_jobs=tuple(crawls),
        training_jobs=tuple(runs),
        serving=services[0] if services else None,
        store=store,
        store_error=store_error,
        kuberay_installed=kuberay,
        features=features_health(kube, features_deployments),
        previous_status=dict(body.get("status") or {}),
    )


def owned(
    kube: Kube, kind: str, where: tuple[str, str, str], component: str, *, via: str | None = None
) -> list[dict[str, Any]]:
    """The children of ``kind`` and ``component`` of the profile ``where`` (namespace, name, uid),
    and those a ``via`` child of the profile made."""
    namespace, profile, uid = where
    try:
        found = kube.list(kind, namespace, labels={PROFILE_LABEL: profile, COMPONENT_LABEL: component})
    except KubeError as exc:
        if exc.status == 404:  # the kind's CRD went away between the check and the list
            return []
        raise
    return [obj for obj in found if _controlled_by(obj, uid, via)]


def _controlled_by(obj: Mapping[str, Any], uid: str, via: str | None) -> bool:
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller") and (ref.get("uid") == uid or (via is not None and ref.get("kind") == via)):
            return True
    return False


def _condition(obj: Mapping[str, Any], kind: str) -> Mapping[str, Any] | None:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == kind and c.get("status") == "True":
            return dict(c)
    return None


def job_state(job: Mapping[str, Any]) -> JobState:
    """A crawl Job's phase, as its status says."""
    status = job.get("status") or {}
    name = str((job.get("metadata") or {}).get("name"))
    started = parse_time(status.get("startTime"))
    if done := _condition(job, "Complete"):
        finished = parse_time(status.get("completionTime")) or parse_time(done.get("lastTransitionTime"))
        return JobState(name, "Succeeded", str(done.get("message") or ""), started, finished)
    if failed := _condition(job, "Failed"):
        message = str(failed.get("message") or failed.get("reason") or "")
        return JobState(name, "Failed", message, started, parse_time(failed.get("lastTransitionTime")))
    phase: JobPhase = "Running" if int(status.get("active") or 0) > 0 else "Pending"
    return JobState(name, phase, "", started)


# KubeRay's RayJob: jobStatus is Ray's own job state; jobDeploymentStatus is KubeRay's lifecycle.
_RAY_SUCCEEDED = {"SUCCEEDED"}
_RAY_FAILED = {"FAILED", "STOPPED"}
_DEPLOYMENT_FAILED = {"Failed", "ValidationFailed"}
_DEPLOYMENT_RUNNING = {"Running"}


def ray_job_state(ray_job: Mapping[str, Any]) -> JobState:
    """A training RayJob's phase from KubeRay's status fields."""
    status = ray_job.get("status") or {}
    name = str((ray_job.get("metadata") or {}).get("name"))
    job_status = str(status.get("jobStatus") or "")
    deployment = str(status.get("jobDeploymentStatus") or "")
    message = str(status.get("message") or "")
    started, finished = parse_time(status.get("startTime")), parse_time(status.get("endTime"))
    phase: JobPhase
    if job_status in _RAY_SUCCEEDED:
        phase = "Succeeded"
    elif job_status in _RAY_FAILED or deployment in _DEPLOYMENT_FAILED:
        phase = "Failed"
        message = message or f"jobStatus {job_status or '-'}, jobDeploymentStatus {deployment or '-'}"
    elif deployment == "Complete":  # finished, but Ray did not report success
        phase, message = "Failed", message or f"the job ended with jobStatus {job_status or 'unknown'}"
    elif job_status == "RUNNING" or deployment in _DEPLOYMENT_RUNNING:
        phase = "Running"
    else:
        phase = "Pending"
    return JobState(name, phase, message, started, finished if phase in ("Succeeded", "Failed") else None)


def serving_state(service: Mapping[str, Any]) -> ServingState:
    """The RayService's readiness, as KubeRay reports it."""
    status = service.get("status") or {}
    name = str((service.get("metadata") or {}).get("name"))
    conditions = {c.get("type"): c for c in status.get("conditions") or []}
    ready_condition = conditions.get("Ready")
    if ready_condition is not None:
        ready = ready_condition.get("status") == "True"
        message = str(ready_condition.get("message") or ready_condition.get("reason") or "")
    else:
        ready = status.get("serviceStatus") == "Running"
        message = str(status.get("serviceStatus") or "no status from KubeRay yet")
    return ServingState(name, ready, message)


def kuberay_installed(kube: Kube) -> bool:
    """KubeRay's RayJob and RayService CRDs exist and are Established."""
    for name in KUBERAY_CRDS:
        crd = kube.get("CustomResourceDefinition", None, name)
        if crd is None or _condition(crd, "Established") is None:
            return False
    return True


def features_health(kube: Kube, deployments: Sequence[str]) -> FeaturesHealth:
    """The change-capture path: each named Deployment (``namespace/name``) has an available replica."""
    if not deployments:
        return FeaturesHealth(
            True, "change capture is not run by this installation (no feature Deployments configured)"
        )
    down = []
    for ref in deployments:
        namespace, _, name = ref.partition("/")
        try:
            deployment = kube.get("Deployment", namespace, name)
        except KubeError as exc:
            down.append(f"{ref}: cannot be read ({exc.status} {exc.reason})")
            continue
        if deployment is None:
            down.append(f"{ref}: not found")
            continue
        available = int((deployment.get("status") or {}).get("availableReplicas") or 0)
        wanted = (deployment.get("spec") or {}).get("replicas", 1)
        if available < 1:
            down.append(f"{ref}: {available}/{wanted} replicas available")
    if down:
        return FeaturesHealth(False, "; ".join(down))
    return FeaturesHealth(True, f"{', '.join(deployments)} available")


def store_state(data: ProfileData, profile: str) -> tuple[StoreState | None, str | None]:
    """The profile's stored data, or why it could not be read (any failure: the stores are
    someone else's processes, and an operator that crashes on them helps nobody)."""
    try:
        state = data.state(profile)
    except Exception as exc:
        log.warning("the stores of profile %s could not be read: %s", profile, exc)
        return None, str(exc) or type(exc).__name__
    champion = state.champion
    return (
        StoreState(
            documents=state.documents,
            chunks=state.chunks,
            snapshot=state.snapshot,
            changed_since_champion=state.changed_since_champion,
            dataset_version=state.dataset_version,
            champion=None
            if champion is None
            else ChampionState(champion.version, dict(champion.figures), champion.dataset_version),
        ),
        None,
    )

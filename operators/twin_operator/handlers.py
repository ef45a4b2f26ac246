"""The kopf handlers: every trigger runs the same gather -> reconcile -> apply; deletion purges.

- ``on.create``, ``on.resume`` (each profile when the operator starts), ``on.update`` of the spec
  and ``on.field`` of the ``llmtwin.dev/crawl-now`` annotation (``kubectl annotate`` asks for a
  crawl) reconcile at once;
- a timer reconciles every profile again (drift repair, new data in the stores, Jobs and RayJobs
  finishing), each as soon as its last pass's ``requeue_after`` is due;
- ``on.delete`` is the finalizer: children first, then the profile's stored data through the
  :class:`twin.ports.ProfileData` port, unless ``spec.retainDataOnDelete``.

Errors, as kopf understands them: an invalid spec is a :class:`kopf.PermanentError` (the status
says why; nothing is retried until the spec changes); a missing dependency (Postgres, the
registry, KubeRay) or a failed API call is a :class:`kopf.TemporaryError` with a growing delay, so
the operator retries with backoff instead of crash-looping. The handlers are sync: kopf runs them
in its thread pool, where the blocking ``kubernetes`` client and psycopg belong.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf

from twin.domain.profile import API_GROUP
from twin_operator.apply import ApplyError
from twin_operator.kube import KubeError
from twin_operator.model import CRAWL_NOW
from twin_operator.runtime import DependencyMissing, InvalidProfile, Runtime

VERSION = "v1alpha1"
PLURAL = "twinprofiles"
# kopf keeps its bookkeeping in annotations under this prefix (never in status, which is ours).
KOPF_PREFIX = "kopf.llmtwin.dev"
FINALIZER = "llmtwin.dev/finalizer"

log = logging.getLogger(__name__)


def configure(settings: kopf.OperatorSettings, *, workers: int = 8) -> None:
    """kopf's settings: our finalizer name, progress in annotations, warnings as Events.

    Only warnings and errors of the handlers' loggers become Kubernetes Events (a timer succeeding
    every few seconds must not flood ``kubectl describe``); what a person wants to see happen (a
    crawl requested, data purged or kept) is posted explicitly."""
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=KOPF_PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=KOPF_PREFIX, key="last-handled-configuration"
    )
    settings.posting.enabled = True
    settings.posting.loggers = True
    settings.posting.level = logging.WARNING
    settings.posting.reporting_component = "twin-operator"
    settings.execution.max_workers = workers
    # A watch that hangs silently would stop all reconciling: the server ends it, the client gives up later.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 30
    settings.networking.request_timeout = 60


def _backoff(runtime: Runtime, retry: int) -> float:
    c = runtime.config
    return float(min(c.backoff_max_s, c.backoff_base_s * 2 ** min(retry, 16)))


def _run(runtime: Runtime, body: Any, retry: int, logger: Any) -> None:
    """One pass for a change handler, with kopf's error semantics."""
    try:
        desired = runtime.reconcile(body)
    except InvalidProfile as exc:
        raise kopf.PermanentError(f"invalid TwinProfile: {exc}") from exc
    except DependencyMissing as exc:
        raise kopf.TemporaryError(f"waiting for a dependency: {exc}", delay=exc.delay) from exc
    except (ApplyError, KubeError) as exc:
        raise kopf.TemporaryError(str(exc), delay=_backoff(runtime, retry)) from exc
    if desired is not None:
        logger.debug("reconciled: phase %s", desired.status.get("phase"))


def register(runtime: Runtime, registry: kopf.OperatorRegistry | None = None) -> None:
    """Register the handlers on ``registry`` (kopf's default one unless given)."""
    registry = registry or kopf.get_default_registry()
    resource = (API_GROUP, VERSION, PLURAL)

    # One id for the three causes: a profile seen for the first time is reconciled once.
    @kopf.on.resume(*resource, id="reconcile", registry=registry)
    @kopf.on.create(*resource, id="reconcile", registry=registry)
    @kopf.on.update(*resource, id="reconcile", field="spec", registry=registry)
    def reconcile_on_change(body: kopf.Body, retry: int, logger: kopf.Logger, **_: Any) -> None:
        _run(runtime, body, retry, logger)

    @kopf.on.field(*resource, id="crawl-now", field=("metadata", "annotations", CRAWL_NOW), registry=registry)
    def crawl_now(body: kopf.Body, retry: int, logger: kopf.Logger, new: Any, **_: Any) -> None:
        if new and not retry:
            kopf.event(
                body, type="Normal", reason="CrawlRequested", message=f"{CRAWL_NOW}={new}: a new crawl Job"
            )
        _run(runtime, body, retry, logger)

    @kopf.timer(
        *resource, id="timer", interval=runtime.tick_s, initial_delay=runtime.tick_s, registry=registry
    )
    def reconcile_on_timer(body: kopf.Body, uid: str, logger: kopf.Logger, **_: Any) -> None:
        if not runtime.due(uid):
            return
        try:
            runtime.reconcile(body)
        except (InvalidProfile, DependencyMissing) as exc:
            logger.debug("timer pass: %s", exc)  # the status says it; the change handlers raise it
        except (ApplyError, KubeError) as exc:
            # Once per distinct failure: the timer retries every few seconds.
            if runtime.new_failure(uid, str(exc)):
                logger.warning("reconcile failed: %s", exc)
            return
        runtime.new_failure(uid, None)

    @kopf.on.delete(*resource, id="purge", registry=registry)
    def finalize(body: kopf.Body, retry: int, logger: kopf.Logger, **_: Any) -> None:
        try:
            purged = runtime.finalize(body)
        except (ApplyError, KubeError) as exc:
            raise kopf.TemporaryError(
                f"children not removed yet: {exc}", delay=_backoff(runtime, retry)
            ) from exc
        except Exception as exc:  # the stores: Postgres or the registry unreachable
            raise kopf.TemporaryError(
                f"stored data not purged yet: {exc}", delay=_backoff(runtime, retry)
            ) from exc
        if purged is None:
            kopf.event(body, type="Normal", reason="DataKept", message="the profile's stored data is kept")
        else:
            kopf.event(
                body,
                type="Normal",
                reason="DataPurged",
                message=f"the profile's stored data is deleted: {purged}",
            )

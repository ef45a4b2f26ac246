"""One reconcile pass (gather -> reconcile -> apply) and one finalizer pass, with the process's state.

The kopf handlers (:mod:`twin_operator.handlers`) are thin: every trigger (create, spec change,
resume, the crawl-now annotation, the timer) calls :meth:`Runtime.reconcile`, and the delete
handler calls :meth:`Runtime.finalize`. Outcomes the handlers must treat differently are
exceptions of their own: :class:`InvalidProfile` (permanent until the spec changes),
:class:`DependencyMissing` (retry with backoff). Passes for one profile never overlap (a lock per
uid: the timer and a watch event may fire together), and the timer skips a profile until the
``requeue_after`` of its last pass is due.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from twin.domain.errors import InvalidSpec
from twin.domain.profile import API_VERSION, KIND, TwinProfile, parse_profile
from twin.observability import OPERATOR_RECONCILE_SECONDS, OPERATOR_RECONCILES, ProfileGauges
from twin.ports import ProfileData, PurgeReport
from twin_operator import conditions
from twin_operator.apply import ApplyError, ProfileRef, apply_desired, patch_status, prune
from twin_operator.config import OperatorConfig
from twin_operator.kube import Kube, KubeError
from twin_operator.model import Desired, StoreState
from twin_operator.observe import gather
from twin_operator.reconcile import reconcile

log = logging.getLogger(__name__)


class RuntimeSettings(BaseSettings):
    """The operator process's own settings beside :class:`~twin_operator.config.OperatorSettings`
    (same ``TWIN_OPERATOR_`` prefix): what only observation and the process need."""

    model_config = SettingsConfigDict(
        env_prefix="TWIN_OPERATOR_", env_nested_delimiter="__", extra="ignore", frozen=True
    )

    features_deployments: tuple[str, ...] = Field(
        default=(),
        description='The change-capture Deployments ("namespace/name": the feature workers, Kafka Connect) '
        "whose availability is each profile's FeaturesReady; empty: this installation does not run them.",
    )
    liveness_port: int = Field(default=8080, ge=0, le=65535, description="kopf's /healthz port (0: none).")
    metrics_port: int = Field(
        default=0, ge=0, le=65535, description="Prometheus /metrics (twin_profile_*...) port (0: none)."
    )
    api_timeout_s: float = Field(default=30.0, gt=0, description="Seconds one API server request may take.")
    verbose: bool = Field(default=False, description="kopf's debug log (every event, patch and decision).")


class InvalidProfile(Exception):
    """The spec can never work; the status says why. Permanent until the spec changes."""


class DependencyMissing(Exception):
    """Postgres, the registry or KubeRay is missing; the status says which. Retry after ``delay``."""

    def __init__(self, message: str, delay: float) -> None:
        super().__init__(message)
        self.delay = delay


@dataclass
class Runtime:
    """What every handler shares: the API client, the stores' port, the configuration."""

    kube: Kube
    data: ProfileData
    config: OperatorConfig
    features_deployments: tuple[str, ...] = ()
    _locks: dict[str, threading.Lock] = field(default_factory=dict)
    _due: dict[str, float] = field(default_factory=dict)  # uid -> monotonic time of the next timer pass
    _failures: dict[str, str] = field(default_factory=dict)  # uid -> the last timer failure
    # Profiles whose finalizer ran: a pass started from an older body must not re-create children.
    _finalized: set[str] = field(default_factory=set)
    _guard: threading.Lock = field(default_factory=threading.Lock)
    # Each profile's conditions, counts and champion as gauges (served on the metrics port).
    gauges: ProfileGauges = field(default_factory=ProfileGauges)

    @property
    def tick_s(self) -> float:
        """The timer's interval: short enough to honour the shortest requeue reconcile asks for."""
        c = self.config
        return max(1.0, min(c.timer_interval_s, c.progress_interval_s, c.backoff_base_s))

    def _lock(self, uid: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(uid, threading.Lock())

    def due(self, uid: str) -> bool:
        return time.monotonic() >= self._due.get(uid, 0.0)

    def new_failure(self, uid: str, message: str | None) -> bool:
        """Record the timer's last failure for ``uid`` (None: it succeeded); True when it differs
        from the one before (worth a log line and an Event)."""
        with self._guard:
            before = self._failures.pop(uid, None)
            if message is not None:
                self._failures[uid] = message
        return message is not None and message != before

    def _forget(self, uid: str) -> None:
        """Drop the timer's state of a deleted profile (the uid is never seen again; its lock and
        its place in ``_finalized`` stay, a few bytes, so a late pass still finds them)."""
        with self._guard:
            self._due.pop(uid, None)
            self._failures.pop(uid, None)

    # -------------------------------------------------------------------------------- reconcile

    def reconcile(self, body: Mapping[str, Any]) -> Desired | None:
        """Gather, reconcile and apply for the profile ``body``. None when it is being deleted."""
        meta = body.get("metadata") or {}
        if meta.get("deletionTimestamp"):
            return None
        ref = ProfileRef(str(meta.get("namespace")), str(meta["name"]), str(meta["uid"]))
        with self._lock(ref.uid):
            if ref.uid in self._finalized:
                return None
            started, outcome = time.monotonic(), "error"
            try:
                desired = self._reconcile(ref, body)
                outcome = "ok"
                return desired
            except InvalidProfile:
                outcome = "invalid"
                raise
            except DependencyMissing:
                outcome = "dependency_missing"
                raise
            finally:
                OPERATOR_RECONCILES.labels(outcome).inc()
                OPERATOR_RECONCILE_SECONDS.observe(time.monotonic() - started)

    def _reconcile(self, ref: ProfileRef, body: Mapping[str, Any]) -> Desired:
        now = datetime.now(UTC)
        try:
            profile = _profile(body)
        except InvalidSpec as exc:
            previous = dict(body.get("status") or {})
            generation = int((body.get("metadata") or {}).get("generation") or 0)
            patch_status(self.kube, ref, conditions.invalid_status(str(exc), generation, previous, now))
            self._schedule(ref.uid, None)
            raise InvalidProfile(str(exc)) from exc
        observed = gather(self.kube, self.data, body, features_deployments=self.features_deployments, now=now)
        desired = reconcile(profile, observed, self.config)
        apply_desired(self.kube, ref, desired, kuberay_installed=observed.kuberay_installed)
        self._record(ref, profile, observed.store, desired)
        self._schedule(ref.uid, desired.requeue_after)
        if desired.status.get("phase") == "Invalid":
            raise InvalidProfile(_message(desired, "InvalidSpec") or "the spec is invalid")
        missing: dict[str, list[str]] = {}  # message -> the conditions that say it
        for c in desired.status.get("conditions") or []:
            if c.get("reason") in conditions.MISSING:
                missing.setdefault(str(c.get("message")), []).append(str(c.get("type")))
        if missing:
            message = "; ".join(f"{', '.join(types)}: {text}" for text, types in missing.items())
            raise DependencyMissing(message, desired.requeue_after or self.config.backoff_base_s)
        return desired

    def _record(
        self, ref: ProfileRef, profile: TwinProfile, store: StoreState | None, desired: Desired
    ) -> None:
        """The pass's view as ``twin_profile_*`` gauges (counts dropped while the stores are unreadable)."""
        counts = None
        if store is not None:
            counts = {
                "documents": store.documents,
                "chunks": store.chunks,
                "champion_version": store.champion.version if store.champion else 0,
                # no trained version yet: every document is new to the model (the retraining
                # policy reads it the same way), so the pressure panel is never empty
                "changed_documents": store.documents
                if store.changed_since_champion is None
                else store.changed_since_champion,
            }
        threshold = profile.spec.training.retraining.min_changed_documents
        self.gauges.observe(
            ref.namespace, ref.name, desired.status, counts=counts, retrain_threshold=threshold
        )

    def _schedule(self, uid: str, requeue_after: float | None) -> None:
        wait = self.config.timer_interval_s if requeue_after is None else requeue_after
        self._due[uid] = time.monotonic() + wait

    # -------------------------------------------------------------------------------- finalizer

    def finalize(self, body: Mapping[str, Any]) -> PurgeReport | None:
        """Remove the profile's children (so no crawl or training writes after the purge), then
        its stored data unless ``spec.retainDataOnDelete``. None when the data was kept."""
        meta = body.get("metadata") or {}
        ref = ProfileRef(str(meta.get("namespace")), str(meta["name"]), str(meta["uid"]))
        with self._lock(ref.uid):
            self._finalized.add(ref.uid)
            self._forget(ref.uid)
            self.gauges.forget(ref.namespace, ref.name)
            report = prune(self.kube, ref, ())
            if report.failures:
                raise ApplyError("; ".join(report.failures))
            if (body.get("spec") or {}).get("retainDataOnDelete"):
                log.info("profile %s/%s deleted; its stored data is kept (retainDataOnDelete)", *_ns(ref))
                return None
            others = self._namesakes(ref)
            if others:
                log.warning(
                    "profile %s/%s deleted; its stored data is kept: profiles of the same name share it (%s)",
                    *_ns(ref),
                    ", ".join(others),
                )
                return None
            purged = self.data.purge(ref.name)
        log.info("profile %s/%s deleted; its stored data is purged: %s", *_ns(ref), purged)
        return purged

    def _namesakes(self, ref: ProfileRef) -> list[str]:
        """Other TwinProfiles of the same name (in other namespaces): the stores key data by the
        profile's name, so their data is the same rows."""
        try:
            found = self.kube.list("TwinProfile", None, fields={"metadata.name": ref.name})
        except KubeError as exc:
            if exc.status == 403:  # watching some namespaces only: the others cannot be checked
                return []
            raise
        return [
            f"{o['metadata'].get('namespace')}/{ref.name}"
            for o in found
            if o["metadata"].get("uid") != ref.uid and not o["metadata"].get("deletionTimestamp")
        ]


def _profile(body: Mapping[str, Any]) -> TwinProfile:
    meta = body.get("metadata") or {}
    return parse_profile(
        {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "metadata": {"name": meta.get("name"), "namespace": meta.get("namespace")},
            "spec": dict(body.get("spec") or {}),
        }
    )


def _message(desired: Desired, reason: str) -> str:
    for c in desired.status.get("conditions") or []:
        if c.get("reason") == reason:
            return str(c.get("message") or "")
    return ""


def _ns(ref: ProfileRef) -> tuple[str, str]:
    return ref.namespace, ref.name

"""What the operator observes and what it decides: the plain data between kopf and ``reconcile``.

The kopf handlers (``handlers.py``) only *gather* an :class:`Observed` (from the API server and, through
the ports, from the stores) and *apply* the :class:`Desired` that the pure
``reconcile(profile, observed, config)`` returns. Everything here is immutable data with no client in
it, so ``reconcile`` is tested as a plain function, table-driven over observed states.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

# The labels every child carries: how the operator finds (and prunes) what it owns for a profile.
MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGER = "twin-operator"
PROFILE_LABEL = "llmtwin.dev/profile"
COMPONENT_LABEL = "app.kubernetes.io/component"
# `kubectl annotate twinprofile alice llmtwin.dev/crawl-now=$(date +%s)` asks for a crawl now.
CRAWL_NOW = "llmtwin.dev/crawl-now"
FIELD_MANAGER = "twin-operator"

JobPhase = Literal["Pending", "Running", "Succeeded", "Failed"]


@dataclass(frozen=True)
class JobState:
    """A crawl Job's or a training RayJob's state, as its status says (never assumed)."""

    name: str
    phase: JobPhase
    message: str = ""
    started: datetime | None = None
    finished: datetime | None = None


@dataclass(frozen=True)
class ServingState:
    """The profile's RayService, as KubeRay reports it."""

    name: str
    ready: bool
    message: str = ""


@dataclass(frozen=True)
class ChampionState:
    """The registry's champion for the profile: the version served, with its held-out figures."""

    version: int
    figures: Mapping[str, float] = field(default_factory=dict)
    dataset_version: str | None = None


@dataclass(frozen=True)
class StoreState:
    """What the stores hold for the profile, read through the ports."""

    documents: int
    chunks: int
    # A fingerprint of the profile's current documents (their content hashes): a training RayJob is
    # named after it, so one snapshot is trained at most once however often reconcile runs.
    snapshot: str | None
    # Documents added, changed or deleted since the champion's dataset (None: no champion yet).
    changed_since_champion: int | None
    dataset_version: str | None
    champion: ChampionState | None


@dataclass(frozen=True)
class FeaturesHealth:
    """The installation-wide change-capture path (Kafka Connect + feature workers)."""

    ready: bool
    message: str = ""


@dataclass(frozen=True)
class Observed:
    """Everything reconcile may base a decision on, gathered fresh each time."""

    now: datetime
    generation: int
    uid: str
    crawl_now: str | None
    crawl_jobs: tuple[JobState, ...]
    training_jobs: tuple[JobState, ...]
    serving: ServingState | None
    # None with store_error set: Postgres or the registry could not be reached (a condition, a retry).
    store: StoreState | None
    store_error: str | None
    kuberay_installed: bool
    features: FeaturesHealth
    previous_status: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Desired:
    """What reconcile wants: the children to server-side apply, the status to patch, when to look again.

    Children carry the profile's labels and an owner reference; any child the operator owns for the
    profile that is not listed here is deleted (pruned).
    """

    children: tuple[Mapping[str, Any], ...]
    status: Mapping[str, Any]
    # Seconds until the next reconcile should run when something is missing or in progress (a
    # dependency absent, a Job running); None: the timer's normal interval.
    requeue_after: float | None = None
    # Owned children that exist and must be left as they are: neither applied nor pruned, as
    # (kind, name). A Job's pod template is immutable and a RayJob's run is KubeRay's once started,
    # so the current crawl Job, the last few crawls and the latest RayJob are kept, not re-applied;
    # while the stores cannot be read, the RayService is kept rather than torn down.
    retain: tuple[tuple[str, str], ...] = ()
    # False: touch no child at all (an invalid spec changes nothing on the cluster; only the status
    # says why).
    prune: bool = True

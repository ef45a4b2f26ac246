"""Observed states for the operator's ``reconcile`` unit tests: what the handlers would gather,
the profile ``alice`` they are about, and short ways to read a :class:`Desired`.

Plain builders with one realistic default each, changed per case with keyword arguments, so a
table of cases reads as the differences from a known state.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from twin.domain.profile import TwinProfile, parse_profile
from twin_operator import policy
from twin_operator.config import OperatorConfig
from twin_operator.model import (
    ChampionState,
    Desired,
    FeaturesHealth,
    JobPhase,
    JobState,
    Observed,
    StoreState,
)
from twin_operator.reconcile import reconcile

NOW = datetime(2025, 3, 3, 12, 0, tzinfo=UTC)  # a Monday
UID = "6f1c2d1e-0000-4000-8000-000000000001"
SNAPSHOT = "ab12cd34" + "0" * 56


def store(**changes: Any) -> StoreState:
    """Documents crawled and chunked, nothing trained yet."""
    base = StoreState(
        documents=40,
        chunks=300,
        snapshot=SNAPSHOT,
        changed_since_champion=None,
        dataset_version=None,
        champion=None,
    )
    return replace(base, **changes)


def observed(**changes: Any) -> Observed:
    """A fresh profile: nothing crawled, stores and KubeRay and the feature pipeline up."""
    base = Observed(
        now=NOW,
        generation=3,
        uid=UID,
        crawl_now=None,
        crawl_jobs=(),
        training_jobs=(),
        serving=None,
        store=store(documents=0, chunks=0, snapshot=None),
        store_error=None,
        kuberay_installed=True,
        features=FeaturesHealth(ready=True),
    )
    return replace(base, **changes)


def job(
    name: str, phase: JobPhase = "Succeeded", *, started: datetime | None = None, message: str = ""
) -> JobState:
    """A Job or RayJob started an hour ago (finished half an hour ago, when it has)."""
    return JobState(
        name=name,
        phase=phase,
        message=message,
        started=started or NOW - timedelta(hours=1),
        finished=NOW - timedelta(minutes=30) if phase in ("Succeeded", "Failed") else None,
    )


CONFIG = OperatorConfig()


def profile(**spec: Any) -> TwinProfile:
    body: dict[str, Any] = {
        "owner": {"displayName": "Alice Moreau"},
        "sources": [{"url": "https://alice.example.com/blog/"}],
        "training": {"gpus": 2, "gpuType": "NVIDIA-A100-SXM4-80GB", "nodeSelector": {"pool": "gpu"}},
    }
    body.update(spec)
    return parse_profile(
        {
            "apiVersion": "llmtwin.dev/v1alpha1",
            "kind": "TwinProfile",
            "metadata": {"name": "alice", "namespace": "team-a"},
            "spec": body,
        }
    )


ALICE = profile()
CRAWL = policy.crawl_job_name(ALICE, None)


def crawled(phase: JobPhase = "Succeeded", name: str = CRAWL) -> JobState:
    return job(name, phase, message="BackoffLimitExceeded" if phase == "Failed" else "")


def trained(phase: JobPhase, snapshot: str = "ffff0000", started: datetime | None = None) -> JobState:
    return job(
        f"twin-alice-train-{snapshot}",
        phase,
        started=started or NOW - timedelta(hours=3),
        message="training failed: CUDA out of memory" if phase == "Failed" else "",
    )


READY_TO_TRAIN: dict[str, Any] = {"crawl_jobs": (crawled(),), "store": store()}
CHAMPION = ChampionState(version=4, figures={"heldout_ppl": 12.5, "style_fidelity": 0.8})


def kinds(desired: Desired) -> list[str]:
    return [c["kind"] for c in desired.children]


def child(desired: Desired, kind: str) -> Mapping[str, Any]:
    [found] = [c for c in desired.children if c["kind"] == kind]
    return dict(found)


def condition(desired: Desired, kind: str) -> Mapping[str, Any]:
    [found] = [c for c in desired.status["conditions"] if c["type"] == kind]
    return dict(found)


def run(prof: TwinProfile = ALICE, **changes: Any) -> Desired:
    return reconcile(prof, observed(**changes), CONFIG)

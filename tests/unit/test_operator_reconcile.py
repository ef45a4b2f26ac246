"""``reconcile(profile, observed, config)`` as a plain function, table-driven over observed states.

No API server and no store: each case builds an :class:`Observed` (what the handlers would have
gathered) and checks the :class:`Desired` (children to apply, children kept, status, next look).
The child shapes are in ``test_operator_children.py``, the status in ``test_operator_status.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import pytest

from support.operator_states import (
    ALICE,
    CHAMPION,
    CONFIG,
    CRAWL,
    NOW,
    READY_TO_TRAIN,
    UID,
    child,
    condition,
    crawled,
    kinds,
    observed,
    profile,
    run,
    store,
    trained,
)
from twin.domain.profile import TwinProfile
from twin_operator import policy
from twin_operator.conditions import CONDITION_TYPES
from twin_operator.model import FeaturesHealth, JobPhase, JobState, Observed, ServingState
from twin_operator.reconcile import reconcile

# ------------------------------------------------------------------------------------ children


def test_a_fresh_profile_gets_its_config_network_policy_endpoint_and_a_crawl() -> None:
    desired = run()
    assert kinds(desired) == ["ConfigMap", "NetworkPolicy", "Service", "Job"]
    assert child(desired, "Job")["metadata"]["name"] == CRAWL
    assert desired.status["phase"] == "Pending"
    assert desired.status["sources"] == 1
    assert desired.status["observedGeneration"] == 3
    assert [c["type"] for c in desired.status["conditions"]] == list(CONDITION_TYPES)
    assert "endpoint" not in desired.status
    assert desired.prune


def test_every_child_is_labelled_and_owned_by_the_profile() -> None:
    desired = run(**READY_TO_TRAIN)
    desired_with_champion = run(store=store(champion=CHAMPION), crawl_jobs=(crawled(),))
    for obj in desired.children + desired_with_champion.children:
        meta = obj["metadata"]
        assert meta["namespace"] == "team-a"
        assert meta["ownerReferences"] == [
            {
                "apiVersion": "llmtwin.dev/v1alpha1",
                "kind": "TwinProfile",
                "name": "alice",
                "uid": UID,
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
        assert meta["labels"]["app.kubernetes.io/managed-by"] == "twin-operator"
        assert meta["labels"]["llmtwin.dev/profile"] == "alice"
        assert meta["labels"]["app.kubernetes.io/part-of"] == "llm-twin"


@pytest.mark.parametrize(
    ("change", "same"),
    [
        (lambda o, p: (replace(o, crawl_now="1741003200"), p), False),
        (lambda o, p: (replace(o, crawl_now="1741003200"), p), False),
        (lambda o, p: (o, profile(sources=[{"url": "https://alice.example.com/other/"}])), False),
        (lambda o, p: (o, profile(crawl={"maxItems": 20})), False),
        (lambda o, p: (o, profile(serving={"maxReplicas": 5})), True),  # not a crawl input
        (lambda o, p: (replace(o, generation=9), p), True),
    ],
    ids=["crawl-now", "crawl-now-again", "sources", "crawl-spec", "serving-spec", "generation-only"],
)
def test_the_crawl_job_is_named_by_the_spec_and_the_crawl_now_annotation(
    change: Callable[[Observed, TwinProfile], tuple[Observed, TwinProfile]], same: bool
) -> None:
    before = child(reconcile(ALICE, observed(), CONFIG), "Job")["metadata"]["name"]
    obs, prof = change(observed(), ALICE)
    after = child(reconcile(prof, obs, CONFIG), "Job")["metadata"]["name"]
    assert (before == after) is same
    assert after.startswith("twin-alice-crawl-") and len(after) == len("twin-alice-crawl-") + 8


def test_an_existing_crawl_job_is_kept_not_reapplied_and_old_ones_pruned_beyond_the_history() -> None:
    old = [
        replace(crawled(name=f"twin-alice-crawl-0000000{i}"), started=NOW - timedelta(days=i))
        for i in range(1, 6)
    ]
    desired = run(crawl_jobs=(crawled("Running"), *old))
    assert "Job" not in kinds(desired)
    kept = [name for kind, name in desired.retain if kind == "Job"]
    assert kept == [CRAWL, *(j.name for j in old[: CONFIG.crawl_job_history])]


def test_a_crawl_schedule_adds_a_cron_job() -> None:
    desired = run(profile(crawl={"schedule": "0 3 * * *"}))
    cron = child(desired, "CronJob")
    assert cron["spec"]["schedule"] == "0 3 * * *"
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    assert "CronJob" not in kinds(run())


def test_a_scheduled_crawl_after_the_on_demand_one_is_the_current_crawl() -> None:
    prof = profile(crawl={"schedule": "0 3 * * *"})
    on_demand = crawled(name=policy.crawl_job_name(prof, None))
    scheduled = JobState(
        name="twin-alice-crawl-cron-29021234", phase="Running", started=NOW - timedelta(minutes=5)
    )
    desired = run(prof, crawl_jobs=(on_demand, scheduled))
    assert desired.status["crawl"]["job"] == scheduled.name
    assert desired.status["phase"] == "Crawling"


# ------------------------------------------------------------------------------------ training


def test_crawled_documents_with_features_ready_start_a_gpu_training_run_named_after_the_snapshot() -> None:
    desired = run(**READY_TO_TRAIN)
    job = child(desired, "RayJob")
    assert job["metadata"]["name"] == "twin-alice-train-ab12cd34"
    assert job["spec"]["entrypoint"] == f"{CONFIG.train_entrypoint} --metrics-port 9110 --metrics-linger 60"
    [group] = job["spec"]["rayClusterSpec"]["workerGroupSpecs"]
    assert group["replicas"] == group["minReplicas"] == group["maxReplicas"] == 2
    pod = group["template"]["spec"]
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert pod["nodeSelector"] == {"pool": "gpu", "nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}
    assert condition(desired, "ModelTrained")["reason"] == "Training"
    assert desired.status["training"] == {"job": "twin-alice-train-ab12cd34", "phase": "Pending"}
    assert desired.status["phase"] == "Training"
    assert desired.requeue_after == CONFIG.progress_interval_s


def test_tolerations_reach_the_gpu_workers() -> None:
    prof = profile(
        training={
            "gpus": 1,
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        }
    )
    job = child(run(prof, **READY_TO_TRAIN), "RayJob")
    pod = job["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["template"]["spec"]
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert "nodeSelector" not in pod


@pytest.mark.parametrize(
    ("changes", "reason_part"),
    [
        ({"store": store(changed_since_champion=2, champion=CHAMPION)}, "only 2 document(s) moved"),
        ({"crawl_jobs": (crawled("Running"),)}, "waiting for crawl"),
        ({"features": FeaturesHealth(ready=False, message="connector paused")}, "feature pipeline"),
        ({"store": store(chunks=0)}, "feature pipeline"),
        ({"store": store(documents=0, snapshot=None)}, "no documents"),
        ({"training_jobs": (trained("Running"),)}, "in progress"),
        ({"training_jobs": (trained("Succeeded", "ab12cd34"),)}, "was trained by"),
        ({"kuberay_installed": False}, "KubeRay"),
    ],
    ids=[
        "few-changes",
        "crawl-running",
        "features-down",
        "no-chunks",
        "no-docs",
        "run-in-flight",
        "snapshot-trained",
        "no-kuberay",
    ],
)
def test_no_training_run_when_the_policy_or_the_state_says_no(
    changes: dict[str, Any], reason_part: str
) -> None:
    state = {**READY_TO_TRAIN, **changes}
    desired = run(**state)
    assert "RayJob" not in kinds(desired)
    plan = policy.plan(
        ALICE, observed(**state), features_ready=condition(desired, "FeaturesReady")["status"] == "True"
    )
    assert reason_part in plan.reason


def test_enough_changes_since_the_champion_retrain() -> None:
    desired = run(**{**READY_TO_TRAIN, "store": store(changed_since_champion=5, champion=CHAMPION)})
    assert "RayJob" in kinds(desired)
    assert condition(desired, "ModelTrained")["reason"] == "Retraining"


@pytest.mark.parametrize(
    ("last_start", "creates"),
    [
        (NOW - timedelta(hours=1), False),  # Monday 11:00: the next window is next Monday 03:00
        (NOW - timedelta(days=8), True),  # a window (Monday 3 March 03:00) opened since
    ],
)
def test_the_retraining_schedule_holds_a_run_until_its_window(last_start: datetime, creates: bool) -> None:
    prof = profile(training={"gpus": 1, "retraining": {"schedule": "0 3 * * 1", "minChangedDocuments": 1}})
    state = {
        **READY_TO_TRAIN,
        "store": store(changed_since_champion=9, champion=CHAMPION),
        "training_jobs": (trained("Succeeded", started=last_start),),
    }
    desired = run(prof, **state)
    assert ("RayJob" in kinds(desired)) is creates
    if not creates:
        assert "schedule opens at 2025-03-10T03:00:00+00:00" in condition(desired, "ModelTrained")["message"]


def test_the_latest_training_run_is_kept_and_its_outcome_reported() -> None:
    older = trained("Succeeded", "00000001", started=NOW - timedelta(days=3))
    cases: list[tuple[JobPhase, str, str]] = [
        ("Succeeded", "False", "NotPromoted"),
        ("Failed", "False", "TrainingFailed"),
    ]
    for phase, status, reason in cases:
        latest = trained(phase, "ab12cd34")
        desired = run(**{**READY_TO_TRAIN, "training_jobs": (older, latest)})
        assert ("RayJob", latest.name) in desired.retain
        assert ("RayJob", older.name) not in desired.retain
        got = condition(desired, "ModelTrained")
        assert (got["status"], got["reason"]) == (status, reason)
        assert desired.status["training"] == {"job": latest.name, "phase": phase}
    assert "CUDA out of memory" in got["message"]
    assert desired.status["phase"] == "Degraded"


def test_a_champion_marks_the_model_trained_even_after_a_failed_retrain() -> None:
    desired = run(
        **{**READY_TO_TRAIN, "store": store(champion=CHAMPION, changed_since_champion=0)},
        training_jobs=(trained("Failed", "ab12cd34"),),
    )
    got = condition(desired, "ModelTrained")
    assert (got["status"], got["reason"]) == ("True", "RetrainingFailed")


# ------------------------------------------------------------------------------------- serving


def test_a_champion_is_served_by_a_ray_service_with_the_specs_autoscaling() -> None:
    prof = profile(serving={"minReplicas": 2, "maxReplicas": 6, "targetOngoingRequests": 4})
    desired = run(prof, crawl_jobs=(crawled(),), store=store(champion=CHAMPION, changed_since_champion=0))
    service = child(desired, "RayService")
    assert service["metadata"]["name"] == "twin-alice-serve"
    assert "version 4" in condition(desired, "ModelTrained")["message"]
    assert desired.status["champion"] == {
        "version": 4,
        "heldOut": {"heldout_ppl": 12.5, "style_fidelity": 0.8},
    }
    assert desired.status["endpoint"] == "http://twin-alice.team-a.svc:8000/v1"
    assert condition(desired, "Serving")["reason"] == "Deploying"
    ready = run(
        prof,
        crawl_jobs=(crawled(),),
        store=store(champion=CHAMPION, changed_since_champion=0, dataset_version="ds-1"),
        serving=ServingState(name="twin-alice-serve", ready=True),
    )
    assert condition(ready, "Serving")["status"] == "True"
    assert condition(ready, "DatasetReady")["message"] == "dataset ds-1"
    assert ready.status["phase"] == "Ready"
    assert ready.requeue_after is None


def test_no_champion_no_ray_service() -> None:
    desired = run(**READY_TO_TRAIN)
    assert "RayService" not in kinds(desired)
    assert condition(desired, "Serving")["reason"] == "NoChampion"

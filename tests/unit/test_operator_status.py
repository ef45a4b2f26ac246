"""The profile's status from ``reconcile``: conditions, phase, counts, and the backoff while a
dependency (Postgres, KubeRay) is missing; ``invalid_status`` for a spec that can never work.

Plain functions over observed states (``support.operator_states``), like ``test_operator_reconcile``.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from support.operator_states import (
    ALICE,
    CHAMPION,
    CONFIG,
    CRAWL,
    NOW,
    READY_TO_TRAIN,
    condition,
    crawled,
    kinds,
    observed,
    profile,
    run,
    store,
)
from twin.domain.profile_status import TwinProfileStatus
from twin_operator.conditions import invalid_status
from twin_operator.model import ServingState
from twin_operator.reconcile import reconcile

# -------------------------------------------------------------------------- missing dependencies


def test_an_unreachable_store_is_a_condition_and_a_backoff_not_a_crash() -> None:
    previous = run(
        crawl_jobs=(crawled(),),
        store=store(champion=CHAMPION, changed_since_champion=0, dataset_version="ds-1"),
        serving=ServingState(name="twin-alice-serve", ready=True),
    ).status
    down = observed(
        crawl_jobs=(crawled(),),
        store=None,
        store_error="connection refused: postgres.twin-system:5432",
        serving=ServingState(name="twin-alice-serve", ready=True),
        previous_status=previous,
    )
    desired = reconcile(ALICE, down, CONFIG)
    for kind in ("FeaturesReady", "DatasetReady", "ModelTrained"):
        got = condition(desired, kind)
        assert (got["status"], got["reason"]) == ("Unknown", "StoreUnreachable")
        assert "connection refused" in got["message"]
    assert desired.requeue_after == CONFIG.backoff_base_s
    assert ("RayService", "twin-alice-serve") in desired.retain  # serving is not torn down
    assert {"RayJob", "RayService"}.isdisjoint(kinds(desired))
    assert desired.status["crawl"]["documents"] == 40  # the last known counts stay
    assert desired.status["champion"]["version"] == 4
    assert desired.status["phase"] == "Degraded"
    # Still down two minutes later: the wait grows (half the time it has been down), up to the cap.
    later = reconcile(
        ALICE, replace(down, now=NOW + timedelta(minutes=2), previous_status=desired.status), CONFIG
    )
    assert later.requeue_after == 60.0
    much_later = replace(down, now=NOW + timedelta(hours=2), previous_status=desired.status)
    assert reconcile(ALICE, much_later, CONFIG).requeue_after == CONFIG.backoff_max_s


def test_kuberay_missing_is_a_condition_with_backoff() -> None:
    desired = run(**READY_TO_TRAIN, kuberay_installed=False)
    got = condition(desired, "ModelTrained")
    assert (got["status"], got["reason"]) == ("False", "KubeRayMissing")
    assert desired.requeue_after == CONFIG.backoff_base_s
    served = run(crawl_jobs=(crawled(),), store=store(champion=CHAMPION), kuberay_installed=False)
    assert condition(served, "Serving")["reason"] == "KubeRayMissing"
    assert "RayService" not in kinds(served)


def test_a_failed_crawl_degrades_the_profile() -> None:
    desired = run(crawl_jobs=(crawled("Failed"),))
    got = condition(desired, "SourcesCrawled")
    assert (got["status"], got["reason"]) == ("False", "CrawlFailed")
    assert "BackoffLimitExceeded" in got["message"]
    assert desired.status["phase"] == "Degraded"


def test_a_successful_crawl_reports_counts_and_time() -> None:
    desired = run(**READY_TO_TRAIN)
    got = condition(desired, "SourcesCrawled")
    assert (got["status"], got["reason"]) == ("True", "Crawled")
    assert desired.status["crawl"] == {
        "documents": 40,
        "chunks": 300,
        "job": CRAWL,
        "lastCrawlTime": "2025-03-03T11:30:00Z",
    }


# ----------------------------------------------------------------------------- status mechanics


def test_last_transition_time_is_kept_while_a_condition_keeps_its_status() -> None:
    first = run()
    later = NOW + timedelta(minutes=10)
    again = reconcile(ALICE, observed(now=later, previous_status=first.status), CONFIG)
    assert condition(again, "SourcesCrawled")["lastTransitionTime"] == "2025-03-03T12:00:00Z"
    flipped = reconcile(
        ALICE, observed(now=later, previous_status=first.status, crawl_jobs=(crawled(),)), CONFIG
    )
    assert condition(flipped, "SourcesCrawled")["lastTransitionTime"] == "2025-03-03T12:10:00Z"
    assert all(c["observedGeneration"] == 3 for c in flipped.status["conditions"])


def test_invalid_status_marks_every_condition_and_keeps_what_was_known() -> None:
    previous = run(**READY_TO_TRAIN).status
    status = invalid_status("spec.sources[0].url: must be http or https", 7, previous, NOW)
    assert status["phase"] == "Invalid"
    assert status["observedGeneration"] == 7
    assert {(c["status"], c["reason"]) for c in status["conditions"]} == {("False", "InvalidSpec")}
    assert all("must be http or https" in c["message"] for c in status["conditions"])
    assert status["crawl"]["documents"] == 40


@pytest.mark.parametrize(
    "spec",
    [
        {"training": {"gpus": 1, "strategy": "fsdp"}},
        {"training": {"gpus": 0, "quantization": "4bit"}},
        {"crawl": {"schedule": "61 * * * *"}},
    ],
    ids=["fsdp-one-gpu", "4bit-on-cpu", "cron-never-fires"],
)
def test_a_spec_no_run_can_satisfy_is_invalid_and_changes_nothing(spec: dict[str, Any]) -> None:
    desired = run(profile(**spec), **READY_TO_TRAIN)
    assert desired.status["phase"] == "Invalid"
    assert desired.children == ()
    assert not desired.prune
    assert desired.requeue_after is None


@pytest.mark.parametrize(
    "state",
    [
        {},
        READY_TO_TRAIN,
        {"crawl_jobs": (crawled("Failed"),)},
        {"crawl_jobs": (crawled(),), "store": store(champion=CHAMPION, dataset_version="ds-1")},
        {"store": None, "store_error": "connection refused", "kuberay_installed": False},
    ],
    ids=["fresh", "training", "crawl-failed", "champion", "store-down"],
)
def test_every_status_fits_the_crds_status_schema(state: dict[str, Any]) -> None:
    status = run(**state).status
    TwinProfileStatus.model_validate(status)
    TwinProfileStatus.model_validate(invalid_status("spec.crawl.schedule: bad", 2, status, NOW))

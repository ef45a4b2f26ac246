"""How the operator reads the state of its children from their status, as plain functions over the
objects the API server returns (the e2e tests read the same objects from a real API server)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from twin_operator.observe import job_state, ray_job_state, serving_state

T0, T1 = "2026-12-03T10:00:00Z", "2026-12-03T10:05:00Z"


def _job(status: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": "twin-alice-crawl-0123abcd"}, "status": status}


def _true(kind: str, **extra: str) -> dict[str, str]:
    return {"type": kind, "status": "True", "lastTransitionTime": T1, **extra}


@pytest.mark.parametrize(
    ("status", "phase", "message"),
    [
        ({}, "Pending", ""),
        ({"startTime": T0, "active": 1}, "Running", ""),
        ({"startTime": T0, "conditions": [_true("Complete")], "completionTime": T1}, "Succeeded", ""),
        (
            {"startTime": T0, "conditions": [_true("Failed", reason="BackoffLimitExceeded")]},
            "Failed",
            "BackoffLimitExceeded",
        ),
        # A condition that is not True does not count.
        (
            {"startTime": T0, "active": 1, "conditions": [{"type": "Failed", "status": "False"}]},
            "Running",
            "",
        ),
    ],
)
def test_a_crawl_jobs_phase_comes_from_its_status(status: dict[str, Any], phase: str, message: str) -> None:
    state = job_state(_job(status))
    assert (state.name, state.phase, state.message) == ("twin-alice-crawl-0123abcd", phase, message)
    if status.get("startTime"):
        assert state.started == datetime(2026, 12, 3, 10, 0, tzinfo=UTC)
    if phase in ("Succeeded", "Failed"):
        assert state.finished == datetime(2026, 12, 3, 10, 5, tzinfo=UTC)
    else:
        assert state.finished is None


@pytest.mark.parametrize(
    ("job_status", "deployment", "phase"),
    [
        (None, None, "Pending"),
        (None, "Initializing", "Pending"),
        ("PENDING", "Running", "Running"),
        ("RUNNING", "Running", "Running"),
        ("SUCCEEDED", "Complete", "Succeeded"),
        ("FAILED", "Complete", "Failed"),
        ("STOPPED", "Complete", "Failed"),
        (None, "Failed", "Failed"),
        (None, "ValidationFailed", "Failed"),
        ("PENDING", "Complete", "Failed"),  # finished without Ray reporting success
    ],
)
def test_a_ray_jobs_phase_comes_from_kuberays_status(
    job_status: str | None, deployment: str | None, phase: str
) -> None:
    status = {"startTime": T0, "endTime": T1}
    if job_status:
        status["jobStatus"] = job_status
    if deployment:
        status["jobDeploymentStatus"] = deployment
    state = ray_job_state({"metadata": {"name": "twin-alice-train-0123abcd"}, "status": status})
    assert state.phase == phase
    assert (state.finished is not None) == (phase in ("Succeeded", "Failed"))
    if phase == "Failed":
        assert state.message  # says why


@pytest.mark.parametrize(
    ("status", "ready"),
    [
        ({}, False),
        ({"conditions": [{"type": "Ready", "status": "False", "reason": "Initializing"}]}, False),
        ({"conditions": [{"type": "Ready", "status": "True", "reason": "NonZeroServeEndpoints"}]}, True),
        ({"serviceStatus": "Running"}, True),  # KubeRay versions without conditions
        ({"serviceStatus": "WaitForServeDeploymentReady"}, False),
    ],
)
def test_the_rayservice_is_ready_when_kuberay_says_so(status: dict[str, Any], ready: bool) -> None:
    state = serving_state({"metadata": {"name": "twin-alice-serve"}, "status": status})
    assert (state.name, state.ready) == ("twin-alice-serve", ready)
    assert state.message

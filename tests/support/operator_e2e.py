"""Helpers of the operator's end-to-end tests (tests/integration/cluster/test_operator_*.py).

The ``installation`` fixture (in that folder's conftest) installs the chart and starts the operator
with the chart's environment and its ServiceAccount's token; these helpers read what the operator
made and play the kubelet's and the controllers' part (a Job marked complete by a status patch).
Every wait polls a condition; nothing sleeps.
"""

from __future__ import annotations

import base64
import json
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from support.kube import REPO, ControlPlane, ManagedProcess
from support.processes import free_port, wait_for
from twin.adapters.mlflow_store import MlflowStore
from twin.domain.profile import parse_profile

SAMPLE = REPO / "manifests" / "samples" / "twinprofile-cluster.yaml"
# A release of its own (names and the release namespace): other tests may install the chart too.
RELEASE = "twin-e2e"
CONDITIONS = {"SourcesCrawled", "FeaturesReady", "DatasetReady", "ModelTrained", "Serving"}
FAST = {  # the chart's defaults are minutes; the test's clock is seconds
    "TWIN_OPERATOR_TIMER_INTERVAL_S": "2",
    "TWIN_OPERATOR_PROGRESS_INTERVAL_S": "2",
    "TWIN_OPERATOR_BACKOFF_BASE_S": "2",
    "TWIN_OPERATOR_BACKOFF_MAX_S": "4",
}


@dataclass
class Installation:
    kube: ControlPlane
    dsn: str
    registry: MlflowStore
    release_ns: str
    namespaces: tuple[str, str]  # the operator watches these two
    env: dict[str, str]  # the operator's environment, as the chart renders it
    operator: ManagedProcess
    metrics_port: int  # the operator's /metrics (a free port, not the chart's 9109)


def chart_env(kube: ControlPlane, release_ns: str) -> dict[str, str]:
    """The operator container's environment in the installed chart: its envFrom Secret and
    ConfigMap, then its own variables (values only; nothing here uses valueFrom)."""
    deployment = kube.kubectl_json("get", "deployment", f"{RELEASE}-operator", "-n", release_ns)
    container = deployment["spec"]["template"]["spec"]["containers"][0]  # type: ignore[index]
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "secretRef" in source:
            secret = kube.kubectl_json("get", "secret", source["secretRef"]["name"], "-n", release_ns)
            data = secret.get("data") or {}
            assert isinstance(data, dict)
            env |= {k: base64.b64decode(v).decode() for k, v in data.items()}
        else:
            config_map = kube.kubectl_json(
                "get", "configmap", source["configMapRef"]["name"], "-n", release_ns
            )
            env |= dict(config_map.get("data") or {})  # type: ignore[call-overload]
    env |= {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}
    return env


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
            return int(response.status) == 200
    except OSError:
        return False


def start_operator(
    kube: ControlPlane, env: dict[str, str], name: str = "twin-operator", *, metrics_port: int | None = None
) -> ManagedProcess:
    port = free_port()
    # free ports, not the chart's fixed ones: two operators may run at once in a test
    ports = {
        "TWIN_OPERATOR_LIVENESS_PORT": str(port),
        "TWIN_OPERATOR_METRICS_PORT": str(metrics_port or free_port()),
    }
    process = kube.start_process(
        name, [str(Path(REPO / ".venv" / "bin" / "python")), "-m", "twin_operator"], env={**env, **ports}
    )
    wait_for(lambda: _healthy(port) or not process.running(), timeout=60, what=f"{name}'s /healthz")
    assert process.running(), process.tail()
    return process


def get(kube: ControlPlane, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
    out = kube.kubectl("get", kind, name, "-n", namespace, "-o", "json", check=False)
    if out.returncode != 0:
        assert "NotFound" in out.stderr, out.stderr
        return None
    parsed: dict[str, Any] = json.loads(out.stdout)
    return parsed


def names(kube: ControlPlane, kind: str, namespace: str, profile: str) -> set[str]:
    out = kube.kubectl_json("get", kind, "-n", namespace, "-l", f"llmtwin.dev/profile={profile}")
    return {item["metadata"]["name"] for item in out["items"]}  # type: ignore[union-attr]


def condition(profile: dict[str, Any] | None, kind: str) -> dict[str, Any]:
    for c in ((profile or {}).get("status") or {}).get("conditions") or []:
        if c["type"] == kind:
            return dict(c)
    return {}


def status_of(kube: ControlPlane, namespace: str, name: str) -> dict[str, Any]:
    return dict((get(kube, "twinprofile", namespace, name) or {}).get("status") or {})


def exists(kube: ControlPlane, kind: str, namespace: str, name: str) -> bool:
    return get(kube, kind, namespace, name) is not None


def wait_condition(
    kube: ControlPlane, namespace: str, name: str, kind: str, status: str = "True"
) -> dict[str, Any]:
    """Wait until the profile's condition ``kind`` has ``status``; the profile as it was then."""
    found: dict[str, Any] = {}

    def holds() -> bool:
        found.clear()
        found.update(get(kube, "twinprofile", namespace, name) or {})
        return condition(found, kind).get("status") == status

    try:
        wait_for(holds, timeout=120, what=f"{kind}={status} on {namespace}/{name}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; the status was {json.dumps(found.get('status'), indent=1)}") from None
    return found


def sample(name: str, **spec: Any) -> dict[str, Any]:
    data = yaml.safe_load(SAMPLE.read_text())
    data["metadata"]["name"] = name
    data["spec"].update(spec)
    return dict(data)


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def complete_job(kube: ControlPlane, namespace: str, name: str) -> None:
    """What the Job controller would write once the crawl pod succeeded."""
    t = now()
    done = {"status": "True", "lastTransitionTime": t, "reason": "CompletionsReached", "message": "done"}
    status = {
        "startTime": t,
        "completionTime": t,
        "succeeded": 1,
        "conditions": [{"type": "SuccessCriteriaMet", **done}, {"type": "Complete", **done}],
    }
    kube.kubectl("patch", "job", name, "-n", namespace, "--subresource=status", "--type=merge",
                 "-p", json.dumps({"status": status}))  # fmt: skip


def owned_by(obj: dict[str, Any], profile: dict[str, Any]) -> bool:
    return [
        (r["kind"], r["name"], r["uid"], r.get("controller"), r.get("blockOwnerDeletion"))
        for r in obj["metadata"].get("ownerReferences", [])
    ] == [("TwinProfile", profile["metadata"]["name"], profile["metadata"]["uid"], True, True)]


def profile_model(data: dict[str, Any]) -> Any:
    return parse_profile({**data, "metadata": {"name": data["metadata"]["name"]}})

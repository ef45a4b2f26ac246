"""What ``reconcile`` builds, against the real API server and the real KubeRay 1.5 operator.

The unit tests check the children's shapes; here the API server judges them (strict field
validation, server-side apply as the operator's field manager, the ``restricted`` Pod Security
level on every pod template) and KubeRay acts on the RayJob and RayService: it makes their
RayClusters and Pods (the serving head with KubeRay's autoscaler sidecar, which must pass the
same Pod Security level). Pods stay Pending: there is no kubelet.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

import yaml

from support.kube import ControlPlane
from support.operator_states import job, observed, store
from support.processes import wait_for
from twin.domain.profile import parse_profile
from twin_operator import policy
from twin_operator.config import OperatorConfig
from twin_operator.model import ChampionState, Desired
from twin_operator.reconcile import reconcile

CONFIG = OperatorConfig.model_validate({"ray_version": "2.49.0", "images": {"pull_secrets": ["registry"]}})


def _everything(namespace: str) -> tuple[Desired, Desired]:
    """A profile with every cluster field set: fresh (crawl Job, CronJob) and with a champion."""
    prof = parse_profile(
        {
            "apiVersion": "llmtwin.dev/v1alpha1",
            "kind": "TwinProfile",
            "metadata": {"name": "alice", "namespace": namespace},
            "spec": {
                "owner": {"displayName": "Alice Moreau"},
                "sources": [{"url": "https://alice.example.com/"}],
                "credentialsSecretRef": {"name": "alice-credentials"},
                "crawl": {"schedule": "0 3 * * *"},
                "training": {
                    "gpus": 2,
                    "gpuType": "NVIDIA-A100-SXM4-80GB",
                    "nodeSelector": {"pool": "gpu"},
                    "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
                },
                "serving": {
                    "gpus": 1,
                    "minReplicas": 1,
                    "maxReplicas": 3,
                    "apiKeysSecretRef": {"name": "alice-api-keys"},
                },
            },
        }
    )
    fresh = reconcile(prof, observed(), CONFIG)
    crawled = observed(
        crawl_jobs=(job(policy.crawl_job_name(prof, None)),), store=store(champion=ChampionState(version=2))
    )
    return fresh, reconcile(prof, crawled, CONFIG)


def _restricted(kube: ControlPlane, namespace: str) -> None:
    kube.kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted")


def _apply(kube: ControlPlane, obj: Mapping[str, Any]) -> None:
    kube.apply(obj, "--field-manager=twin-operator", "--validate=strict")


def _pod_templates(obj: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    spec = obj.get("spec") or {}
    if obj["kind"] == "Job":
        yield "crawl", spec["template"]
    elif obj["kind"] == "CronJob":
        yield "scheduled-crawl", spec["jobTemplate"]["spec"]["template"]
    elif obj["kind"] in ("RayJob", "RayService"):
        cluster = spec.get("rayClusterSpec") or spec["rayClusterConfig"]
        yield "head", cluster["headGroupSpec"]["template"]
        for group in cluster["workerGroupSpecs"]:
            yield group["groupName"], group["template"]
        if "submitterPodTemplate" in spec:
            yield "submitter", spec["submitterPodTemplate"]


def test_every_child_is_accepted_and_every_pod_is_restricted(kuberay: ControlPlane, namespace: str) -> None:
    _restricted(kuberay, namespace)
    fresh, served = _everything(namespace)
    children = [*fresh.children, *(c for c in served.children if c["kind"] in ("RayJob", "RayService"))]
    assert {c["kind"] for c in children} == {
        "ConfigMap", "NetworkPolicy", "Service", "CronJob", "Job", "RayJob", "RayService",
    }  # fmt: skip
    for child in children:
        _apply(kuberay, child)
    for child in children:  # a second pass changes nothing and conflicts with nothing
        if child["kind"] != "Job":  # applied once: its pod template is immutable
            _apply(kuberay, child)
    pods = 0
    for child in children:
        for role, template in _pod_templates(child):
            pod = {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": f"check-{role}", "namespace": namespace},
                "spec": {"restartPolicy": "Never", **template["spec"]},
            }
            kuberay.kubectl(
                "create", "--dry-run=server", "--validate=strict", "-f", "-", input=yaml.safe_dump(pod)
            )
            pods += 1
    assert pods == 7  # crawl, scheduled crawl; RayJob head, gpu workers, submitter; RayService head, workers
    netpol = kuberay.kubectl_json("get", "networkpolicy", "twin-alice-crawl-egress", "-n", namespace)
    assert netpol["metadata"]["ownerReferences"][0]["kind"] == "TwinProfile"  # type: ignore[index]


def test_kuberay_makes_clusters_and_pods_from_the_ray_children(kuberay: ControlPlane, namespace: str) -> None:
    _restricted(kuberay, namespace)
    _, served = _everything(namespace)
    for child in served.children:
        if child["kind"] in ("RayJob", "RayService"):
            _apply(kuberay, child)

    def pods() -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = kuberay.kubectl_json("get", "pods", "-n", namespace)["items"]  # type: ignore[assignment]
        return items

    # Serving: a head (with the autoscaler sidecar) and one worker; training: a head and 2 GPU workers.
    wait_for(lambda: len(pods()) >= 5, timeout=120, what="KubeRay to create the clusters' pods")
    by_role: dict[str, list[dict[str, Any]]] = {}
    for pod in pods():
        by_role.setdefault(pod["metadata"]["labels"].get("llmtwin.dev/role", ""), []).append(pod)
    assert len(by_role["serve"]) == 2 and len(by_role["train"]) == 3
    serve_head = next(
        p for p in by_role["serve"] if p["metadata"]["labels"].get("ray.io/node-type") == "head"
    )
    assert [c["name"] for c in serve_head["spec"]["containers"]] == ["ray-head", "autoscaler"]
    gpu_workers = [p for p in by_role["train"] if p["metadata"]["labels"].get("ray.io/node-type") == "worker"]
    for worker in gpu_workers:
        assert worker["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
        assert worker["spec"]["nodeSelector"]["nvidia.com/gpu.product"] == "NVIDIA-A100-SXM4-80GB"
    ray_jobs = kuberay.kubectl_json("get", "rayjobs", "-n", namespace)["items"]
    assert len(ray_jobs) == 1  # type: ignore[arg-type]
    assert "ValidationFailed" not in json.dumps(ray_jobs)  # KubeRay's own checks passed

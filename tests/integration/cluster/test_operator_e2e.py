"""The operator end to end: a real kube-apiserver and KubeRay operator, a real Postgres and MLflow.

The chart is ``helm install``-ed (its optional components off, the feature workers' Deployment on),
and ``python -m twin_operator`` runs as a process with the environment the chart's operator
Deployment renders and a token of the chart's ServiceAccount: RBAC the chart forgot fails here.
There is no kubelet or controller-manager, so the test plays their part where the operator waits
on them: it marks a crawl Job complete, the feature workers' Deployment available and a RayJob
succeeded by patching their status, and writes what a crawl, the feature workers and a training run
would have stored through the real adapters. Every wait polls a condition; nothing sleeps.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from support.operator_data import register_champion, store_documents, stored
from support.operator_e2e import (
    CONDITIONS,
    RELEASE,
    Installation,
    complete_job,
    condition,
    exists,
    get,
    names,
    now,
    owned_by,
    profile_model,
    sample,
    status_of,
    wait_condition,
)
from support.processes import wait_for
from twin_operator.policy import bounded_name, crawl_job_name, cron_job_name, serving_name

pytestmark = [pytest.mark.timeout(900)]

pytestmark = [pytest.mark.timeout(900)]


def test_the_sample_becomes_its_children_and_spec_edits_and_annotations_propagate(
    installation: Installation,
) -> None:
    kube, ns, env = installation.kube, installation.namespaces[0], installation.env
    name = "alice-children"
    data = sample(name)
    kube.apply(data, "-n", ns)
    profile = profile_model(data)
    first_job = crawl_job_name(profile, None)
    wanted = {
        ("configmap", bounded_name(name, "-profile")),
        ("networkpolicy", bounded_name(name, "-crawl-egress")),
        ("service", bounded_name(name)),
        ("cronjob", cron_job_name(profile)),
        ("job", first_job),
    }
    missing: list[tuple[str, str]] = []

    def all_there() -> bool:
        missing[:] = [(kind, child) for kind, child in sorted(wanted) if not exists(kube, kind, ns, child)]
        return not missing

    try:
        wait_for(all_there, timeout=120, what="the profile's children")
    except AssertionError as exc:
        raise AssertionError(f"{exc}: missing {missing}") from None
    owner = get(kube, "twinprofile", ns, name)
    assert owner is not None
    for kind, child in wanted:
        obj = get(kube, kind, ns, child)
        assert obj is not None and owned_by(obj, owner), (kind, child, obj and obj["metadata"])
        assert obj["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "twin-operator"

    # What a pod runs comes from the chart's values, never from the profile.
    job = get(kube, "job", ns, first_job)
    assert job is not None
    pod = job["spec"]["template"]["spec"]
    assert pod["containers"][0]["image"] == env["TWIN_OPERATOR_IMAGES__CRAWLER"]
    assert pod["automountServiceAccountToken"] is False
    assert job["spec"]["template"]["metadata"]["labels"]["llmtwin.dev/role"] == "crawler"

    status = wait_condition(kube, ns, name, "SourcesCrawled", "False")["status"]
    assert {c["type"] for c in status["conditions"]} == CONDITIONS
    assert all(c["observedGeneration"] == 1 for c in status["conditions"])
    assert status["sources"] == 5 and status["crawl"]["job"] == first_job

    # A spec edit: a new crawl Job (its pod template is immutable), the ConfigMap follows.
    kube.kubectl("patch", "twinprofile", name, "-n", ns, "--type=merge", "-p",
                 json.dumps({"spec": {"crawl": {"maxItems": 123}}}))  # fmt: skip
    edited = profile_model(sample(name, crawl={**data["spec"]["crawl"], "maxItems": 123}))
    second_job = crawl_job_name(edited, None)
    assert second_job != first_job
    wait_for(lambda: get(kube, "job", ns, second_job) is not None, timeout=60, what=f"job {second_job}")

    def config_map_says_123() -> bool:
        cm = get(kube, "configmap", ns, f"twin-{name}-profile") or {}
        spec = yaml.safe_load((cm.get("data") or {}).get("profile.yaml") or "{}").get("spec", {})
        return bool(spec.get("crawl", {}).get("maxItems") == 123)

    wait_for(config_map_says_123, timeout=60, what="the profile ConfigMap to carry maxItems 123")
    wait_for(
        lambda: status_of(kube, ns, name).get("observedGeneration") == 2,
        timeout=60,
        what="status.observedGeneration 2",
    )

    # `kubectl annotate ... llmtwin.dev/crawl-now=...`: another crawl of the same spec.
    stamp = "2026-12-03T10-00-00"
    kube.kubectl("annotate", "twinprofile", name, "-n", ns, f"llmtwin.dev/crawl-now={stamp}")
    third_job = crawl_job_name(edited, stamp)
    wait_for(lambda: get(kube, "job", ns, third_job) is not None, timeout=60, what=f"job {third_job}")
    assert {first_job, second_job, third_job} <= names(kube, "job", ns, name)

    # Drift is repaired: a hand edit of an owned child is taken back, a deleted one comes back.
    kube.kubectl("patch", "configmap", f"twin-{name}-profile", "-n", ns, "--type=merge", "-p",
                 json.dumps({"data": {"profile.yaml": "edited: by hand"}}))  # fmt: skip
    kube.kubectl("delete", "service", f"twin-{name}", "-n", ns)
    wait_for(config_map_says_123, timeout=60, what="the ConfigMap's hand edit to be reverted")
    wait_for(lambda: exists(kube, "service", ns, f"twin-{name}"), timeout=60, what="the Service back")


def test_crawled_data_trains_a_served_model_and_deleting_the_profile_purges_only_its_data(
    installation: Installation, tmp_path: Path
) -> None:
    kube, dsn, registry = installation.kube, installation.dsn, installation.registry
    ns, other_ns = installation.namespaces
    name, other = "carol", "dave"
    data = sample(name)
    kube.apply(data, "-n", ns)
    kube.apply(sample(other), "-n", other_ns)
    carol_docs = store_documents(dsn, name)
    store_documents(dsn, other)

    # The crawl Job succeeds (the Job controller's part, played here): SourcesCrawled.
    job = crawl_job_name(profile_model(data), None)
    wait_for(lambda: get(kube, "job", ns, job) is not None, timeout=120, what=f"crawl job {job}")
    complete_job(kube, ns, job)
    crawled = wait_condition(kube, ns, name, "SourcesCrawled")
    assert crawled["status"]["crawl"]["documents"] == len(carol_docs)
    assert crawled["status"]["crawl"]["chunks"] > 0 and crawled["status"]["crawl"]["lastCrawlTime"]

    # The feature workers' Deployment is down until it has an available replica.
    down = wait_condition(kube, ns, name, "FeaturesReady", "False")
    assert condition(down, "FeaturesReady")["reason"] == "FeaturePipelineDown"
    assert names(kube, "rayjob", ns, name) == set()
    available = {"replicas": 1, "readyReplicas": 1, "availableReplicas": 1, "updatedReplicas": 1}
    kube.kubectl("patch", "deployment", f"{RELEASE}-features", "-n", installation.release_ns,
                 "--subresource=status",
                 "--type=merge", "-p", json.dumps({"status": available}))  # fmt: skip
    wait_condition(kube, ns, name, "FeaturesReady")

    # The retraining policy says train (no model yet): a RayJob, which the real KubeRay acts on.
    wait_for(lambda: len(names(kube, "rayjob", ns, name)) == 1, timeout=120, what="the training RayJob")
    (ray_job,) = names(kube, "rayjob", ns, name)
    owner = get(kube, "twinprofile", ns, name)
    assert owner is not None and owned_by(get(kube, "rayjob", ns, ray_job) or {}, owner)

    def cluster_of(kind: str, parent: str) -> bool:
        clusters = kube.kubectl_json("get", "rayclusters", "-n", ns)["items"]
        return any(
            (r["kind"], r["name"]) == (kind, parent)
            for c in clusters  # type: ignore[union-attr]
            for r in c["metadata"].get("ownerReferences", [])
        )

    wait_for(lambda: cluster_of("RayJob", ray_job), timeout=120, what=f"KubeRay's RayCluster for {ray_job}")

    # Training ends (KubeRay's status, played here), then its champion is in the real registry.
    t = now()
    kube.kubectl("patch", "rayjob", ray_job, "-n", ns, "--subresource=status", "--type=merge", "-p",
                 json.dumps({"status": {"jobStatus": "SUCCEEDED", "jobDeploymentStatus": "Complete",
                                        "startTime": t, "endTime": t}}))  # fmt: skip
    wait_for(
        lambda: status_of(kube, ns, name).get("training") == {"job": ray_job, "phase": "Succeeded"},
        timeout=60,
        what="status.training to report the run's success",
    )
    assert condition(get(kube, "twinprofile", ns, name), "ModelTrained")["status"] != "True"  # no champion
    info = register_champion(registry, name, carol_docs, tmp_path)
    trained = wait_condition(kube, ns, name, "ModelTrained")["status"]
    assert trained["champion"] == {"version": info.version, "heldOut": {"heldout_ppl": 12.5}}
    assert trained["dataset"]["version"] == info.dataset_version

    # The champion is served: a RayService KubeRay acts on, and the stable endpoint.
    service = serving_name(profile_model(data))
    wait_for(
        lambda: get(kube, "rayservice", ns, service) is not None, timeout=120, what=f"rayservice {service}"
    )
    assert owned_by(get(kube, "rayservice", ns, service) or {}, owner)
    wait_for(
        lambda: cluster_of("RayService", service), timeout=120, what=f"KubeRay's RayCluster for {service}"
    )
    served = wait_condition(kube, ns, name, "Serving", "False")["status"]
    assert served["endpoint"] == f"http://twin-{name}.{ns}.svc:8000/v1"

    # Deletion: the finalizer removes the children and this profile's data, never another's.
    assert not stored(dsn, name).empty and not stored(dsn, other).empty
    kube.kubectl("delete", "twinprofile", name, "-n", ns, "--wait=false")
    wait_for(lambda: get(kube, "twinprofile", ns, name) is None, timeout=120, what=f"{name} to be gone")
    assert stored(dsn, name).empty
    assert registry.versions(name) == [] and registry.latest_dataset(name) is None
    kept = stored(dsn, other)
    assert kept.documents == len(carol_docs) and kept.cleaned and kept.chunks
    for kind in ("configmap", "job", "cronjob", "networkpolicy", "service", "rayjob", "rayservice"):
        assert names(kube, kind, ns, name) == set(), kind
    assert get(kube, "twinprofile", other_ns, other) is not None

"""The batch pods' /metrics (``twin_operator.jobmetrics``): crawl pods and the training RayJob's head
get the flags and a port named ``metrics`` (what the chart's twin-jobs PodMonitor scrapes), the crawl
NetworkPolicy admits Prometheus on that port and nothing else, and ``port: 0`` turns all of it off.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from support.operator_states import UID
from twin.domain.profile import parse_profile
from twin_operator.children import crawl_cron_job, crawl_job, crawl_network_policy
from twin_operator.config import (
    RAY_HEAD_PORTS,
    ImagesConfig,
    JobMetricsConfig,
    OperatorConfig,
    OperatorSettings,
)
from twin_operator.raycluster import training_ray_job

CONFIG = OperatorConfig(
    images=ImagesConfig(
        crawler="reg.example/crawler:1", training="reg.example/train:1", serving="reg.example/serve:1"
    ),
)
PROFILE: dict[str, Any] = {
    "apiVersion": "llmtwin.dev/v1alpha1",
    "kind": "TwinProfile",
    "metadata": {"name": "alice", "namespace": "team-a"},
    "spec": {
        "owner": {"displayName": "Alice"},
        "sources": [{"url": "https://alice.example.com/"}],
        "baseModel": "org/model",
        "crawl": {"schedule": "0 * * * *"},
        "training": {"gpus": 2},
    },
}
PODMONITORS = Path(__file__).parents[2] / "charts" / "twin" / "templates" / "podmonitors.yaml"


def _metrics_children(metrics: JobMetricsConfig) -> dict[str, Any]:
    """The crawl Job's and the CronJob's pods, the crawl NetworkPolicy and the training RayJob."""
    config = CONFIG.model_copy(update={"job_metrics": metrics})
    prof = parse_profile(PROFILE)
    cron = crawl_cron_job(prof, UID, config)
    assert cron is not None
    return {
        "job": crawl_job(prof, UID, config, None)["spec"]["template"],
        "cron": cron["spec"]["jobTemplate"]["spec"]["template"],
        "netpol": crawl_network_policy(prof, UID, config)["spec"],
        "rayjob": training_ray_job(prof, UID, config, "snap")["spec"],
    }


@pytest.mark.parametrize(
    ("metrics", "port", "linger", "peer"),
    [
        (
            JobMetricsConfig(),
            9110,
            60,
            {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
                "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
            },
        ),
        (
            JobMetricsConfig(
                port=19100,
                linger_s=0,
                prometheus_namespace_labels={"team": "sre"},
                prometheus_pod_labels={"prometheus": "k8s"},
            ),
            19100,
            0,
            {
                "namespaceSelector": {"matchLabels": {"team": "sre"}},
                "podSelector": {"matchLabels": {"prometheus": "k8s"}},
            },
        ),
        # No pod labels: any pod of Prometheus's namespace (a podSelector {} would say the same).
        (
            JobMetricsConfig(prometheus_pod_labels={}),
            9110,
            60,
            {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}},
        ),
    ],
)
def test_crawl_pods_and_the_training_head_serve_metrics_to_prometheus_only(
    metrics: JobMetricsConfig, port: int, linger: int, peer: dict[str, Any]
) -> None:
    got = _metrics_children(metrics)
    flags = ["--metrics-port", str(port), "--metrics-linger", str(linger)]
    named = {"name": "metrics", "containerPort": port, "protocol": "TCP"}
    for pod in (got["job"], got["cron"]):
        [container] = pod["spec"]["containers"]
        assert container["command"] == [*CONFIG.crawl_command, *flags]
        assert container["ports"] == [named]
        assert pod["metadata"]["labels"]["llmtwin.dev/role"] == "crawler"
    assert got["netpol"]["ingress"] == [{"from": [peer], "ports": [{"protocol": "TCP", "port": port}]}]
    assert len(got["netpol"]["egress"]) == 3  # DNS, the database, the internet: unchanged

    rayjob = got["rayjob"]
    assert rayjob["entrypoint"] == " ".join([CONFIG.train_entrypoint, *flags])
    head = rayjob["rayClusterSpec"]["headGroupSpec"]["template"]
    [head_container] = head["spec"]["containers"]
    assert head["metadata"]["labels"]["llmtwin.dev/role"] == "train"
    assert named in head_container["ports"]
    # Declaring any head port makes KubeRay 1.5 drop its defaults from the head Service: the
    # submitter finds the dashboard by name, so the defaults are declared too.
    assert {p["name"]: p["containerPort"] for p in head_container["ports"]} == {
        "gcs-server": 6379,
        "dashboard": 8265,
        "client": 10001,
        "metrics": port,
    }
    for group in rayjob["rayClusterSpec"]["workerGroupSpecs"]:
        assert "ports" not in group["template"]["spec"]["containers"][0]


def test_job_metrics_port_zero_switches_it_all_off() -> None:
    got = _metrics_children(JobMetricsConfig(port=0))
    for pod in (got["job"], got["cron"]):
        [container] = pod["spec"]["containers"]
        assert container["command"] == list(CONFIG.crawl_command)
        assert "ports" not in container
    assert got["netpol"]["ingress"] == []
    assert got["netpol"]["policyTypes"] == ["Ingress", "Egress"]  # still no ingress at all
    assert got["rayjob"]["entrypoint"] == CONFIG.train_entrypoint
    head = got["rayjob"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert "ports" not in head  # KubeRay's defaults, as before


@pytest.mark.parametrize("port", sorted(RAY_HEAD_PORTS))
def test_a_ray_head_port_is_refused_for_job_metrics(port: int) -> None:
    with pytest.raises(ValueError, match="Ray head"):
        JobMetricsConfig(port=port)


def test_job_metrics_come_from_one_json_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    # The chart renders workloads.metrics as one JSON object (templates/operator-deployment.yaml).
    monkeypatch.setenv(
        "TWIN_OPERATOR_JOB_METRICS",
        '{"linger_s":30,"port":9200,"prometheus_namespace_labels":{"a":"b"},"prometheus_pod_labels":{}}',
    )
    assert OperatorSettings().config().job_metrics == JobMetricsConfig(
        port=9200, linger_s=30, prometheus_namespace_labels={"a": "b"}, prometheus_pod_labels={}
    )


def test_the_twin_jobs_pod_monitor_selects_the_roles_of_the_pods_with_a_metrics_port() -> None:
    text = PODMONITORS.read_text(encoding="utf-8")
    jobs = text[text.index('"component" "jobs"') :]
    [roles] = re.findall(r"values: \[([^\]]*)\]", jobs)
    got = _metrics_children(JobMetricsConfig())
    head = got["rayjob"]["rayClusterSpec"]["headGroupSpec"]["template"]
    scraped = {pod["metadata"]["labels"]["llmtwin.dev/role"] for pod in (got["job"], head)}
    assert {r.strip() for r in roles.split(",")} == scraped
    # Training workers carry the train role with KubeRay's own "metrics" port (Ray's metrics):
    # only the head, where the driver runs, is kept.
    assert 'regex: "crawler;.*|train;head"' in jobs and "action: keep" in jobs

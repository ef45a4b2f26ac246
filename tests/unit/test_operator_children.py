"""The children's shapes: pod security, what a profile can and cannot reach into, the crawl
NetworkPolicy, the KubeRay objects, and names that fit Kubernetes' and KubeRay's limits.

The KubeRay shapes are checked against KubeRay's own CRDs (and KubeRay's controller acting on them)
by the operator's integration tests; here, the rules our own builders promise.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
import yaml

from support.operator_states import NOW, UID, job, observed, store
from twin.domain.profile import TwinProfile, parse_profile
from twin_operator import policy
from twin_operator.config import ImagesConfig, OperatorConfig
from twin_operator.model import ChampionState, Desired, JobState
from twin_operator.reconcile import reconcile

CONFIG = OperatorConfig(
    images=ImagesConfig(
        crawler="reg.example/crawler:1", training="reg.example/train:1", serving="reg.example/serve:1"
    ),
)
DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
METRICS_FLAGS = ["--metrics-port", "9110", "--metrics-linger", "60"]
CRAWL_COMMAND = ["twin", "crawl", "--profile", "/etc/twin/profile.yaml", "--json", *METRICS_FLAGS]

HOSTILE: dict[str, Any] = {
    "apiVersion": "llmtwin.dev/v1alpha1",
    "kind": "TwinProfile",
    "metadata": {"name": "mallory", "namespace": "team-m"},
    "spec": {
        "owner": {"displayName": "marker-owner"},
        "sources": [{"url": "https://marker-source.example.com/"}],
        "baseModel": "marker/model",
        "credentialsSecretRef": {"name": "marker-creds"},
        "training": {
            "gpus": 1,
            "gpuType": "marker-gpu",
            "nodeSelector": {"marker.example/key": "marker-value"},
            "tolerations": [{"key": "marker-taint", "operator": "Exists"}],
        },
        "serving": {
            "gpus": 1,
            "gpuType": "marker-gpu",
            "nodeSelector": {"marker.example/key": "marker-value"},
            "tolerations": [{"key": "marker-taint", "operator": "Exists"}],
            "apiKeysSecretRef": {"name": "marker-keys", "key": "marker-key"},
        },
    },
}
# Where a profile's own strings may land: its file, Secret names and keys in its namespace, and
# the placement of its pods. Nowhere else: not an image, a command, a service account, a volume.
ALLOWED = [
    re.compile(p)
    for p in (
        r"^ConfigMap/data/profile\.yaml$",
        r"/env/\d+/valueFrom/secretKeyRef/name$",
        r"/volumes/\d+/secret/secretName$",
        r"/volumes/\d+/secret/items/\d+/key$",
        r"/nodeSelector/.+$",
        r"/tolerations/\d+/key$",
    )
]


def hostile() -> TwinProfile:
    return parse_profile(HOSTILE)


def everything(prof: TwinProfile) -> Desired:
    return reconcile(
        prof,
        observed(
            uid=UID,
            crawl_jobs=(job(policy.crawl_job_name(prof, None)),),
            store=store(champion=ChampionState(version=1)),
        ),
        CONFIG,
    )


def leaves(value: Any, path: str) -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield from leaves(v, f"{path}/{k}")
            yield f"{path}/{k}#key", k
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from leaves(v, f"{path}/{i}")
    else:
        yield path, value


def pods(obj: Mapping[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every pod spec inside a child, with its path."""
    for path, _ in leaves(obj, obj["kind"]):
        if path.endswith("/spec/containers/0/name"):
            spec_path = path[: -len("/containers/0/name")]
            node: Any = obj
            for part in spec_path.split("/")[1:]:
                node = node[int(part)] if isinstance(node, list) else node[part]
            yield spec_path, node


def test_a_profile_reaches_only_its_file_secret_names_and_placement() -> None:
    desired = everything(hostile())
    assert {c["kind"] for c in desired.children} == {
        "ConfigMap",
        "NetworkPolicy",
        "Service",
        "RayJob",
        "RayService",
    }
    for obj in desired.children:
        for path, value in leaves(obj, obj["kind"]):
            if isinstance(value, str) and "marker" in value.replace("#key", ""):
                target = path.removesuffix("#key")
                assert any(rule.search(target) for rule in ALLOWED), f"{target} = {value!r}"


def test_pods_run_configured_images_and_commands_as_non_root_without_privileges() -> None:
    desired = everything(hostile())
    crawl = reconcile(hostile(), observed(), CONFIG)  # the crawl Job (not yet created above)
    images = {CONFIG.images.crawler, CONFIG.images.training, CONFIG.images.serving}
    seen = 0
    for obj in (*desired.children, *crawl.children):
        for path, spec in pods(obj):
            seen += 1
            assert spec["securityContext"]["runAsNonRoot"] is True, path
            assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, path
            assert not any("hostPath" in v for v in spec.get("volumes", [])), path
            assert "hostNetwork" not in spec and "hostPID" not in spec, path
            for c in spec["containers"]:
                assert c["image"] in images, path
                assert c["securityContext"]["allowPrivilegeEscalation"] is False, path
                assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}, path
                assert c.get("command") in (None, CRAWL_COMMAND), path
            if spec.get("serviceAccountName") is not None:
                assert spec["serviceAccountName"] in (
                    CONFIG.service_accounts.crawler,
                    CONFIG.service_accounts.ray,
                )
    assert seen == 6  # crawl pod; RayJob head, worker, submitter; RayService head, worker


def test_the_crawl_pod_reads_the_profile_and_only_the_allowed_credentials() -> None:
    job = next(c for c in reconcile(hostile(), observed(), CONFIG).children if c["kind"] == "Job")
    pod = job["spec"]["template"]
    spec = pod["spec"]
    [container] = spec["containers"]
    assert pod["metadata"]["labels"]["llmtwin.dev/role"] == "crawler"
    assert container["command"] == CRAWL_COMMAND
    assert spec["automountServiceAccountToken"] is False
    assert spec["serviceAccountName"] == "default"
    assert container["envFrom"] == [
        {"configMapRef": {"name": "twin-settings"}},
        {"secretRef": {"name": "twin-settings"}},
    ]
    assert {e["name"] for e in container["env"]} == set(CONFIG.credential_variables)
    assert {e["valueFrom"]["secretKeyRef"]["name"] for e in container["env"]} == {"marker-creds"}
    assert {"name": "profile", "mountPath": "/etc/twin", "readOnly": True} in container["volumeMounts"]


def test_the_profile_config_map_round_trips_through_the_cli_parser() -> None:
    cm = next(c for c in everything(hostile()).children if c["kind"] == "ConfigMap")
    assert cm["metadata"]["name"] == "twin-mallory-profile"
    again = parse_profile(yaml.safe_load(cm["data"]["profile.yaml"]))
    assert again.spec == hostile().spec
    assert again.name == "mallory"


def test_the_network_policy_allows_dns_the_database_and_the_public_internet_only() -> None:
    netpol = next(c for c in everything(hostile()).children if c["kind"] == "NetworkPolicy")
    spec = netpol["spec"]
    assert spec["podSelector"] == {
        "matchLabels": {"llmtwin.dev/profile": "mallory", "llmtwin.dev/role": "crawler"}
    }
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    assert spec["ingress"] == [  # Prometheus on the metrics port, nothing else
        {
            "from": [
                {
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
                    "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
                }
            ],
            "ports": [{"protocol": "TCP", "port": 9110}],
        }
    ]
    dns, database, internet = spec["egress"]
    assert dns["to"][0]["namespaceSelector"] == {
        "matchLabels": {"kubernetes.io/metadata.name": "kube-system"}
    }
    assert {p["port"] for p in dns["ports"]} == {53}
    assert database["to"][0]["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "postgres"}}
    assert database["ports"] == [{"protocol": "TCP", "port": 5432}]
    v4, v6 = (peer["ipBlock"] for peer in internet["to"])
    assert v4["cidr"] == "0.0.0.0/0"
    for private in (
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "169.254.0.0/16",
        "127.0.0.0/8",
        "100.64.0.0/10",
    ):
        assert private in v4["except"]
    assert {"fc00::/7", "fe80::/10", "::1/128"} <= set(v6["except"])
    assert {p["port"] for p in internet["ports"]} == {80, 443}


def test_the_ray_service_autoscales_within_the_specs_bounds() -> None:
    prof = parse_profile(
        {
            **HOSTILE,
            "spec": {
                **HOSTILE["spec"],
                "serving": {"minReplicas": 0, "maxReplicas": 3, "targetOngoingRequests": 2},
            },
        }
    )
    service = next(c for c in everything(prof).children if c["kind"] == "RayService")
    cluster = service["spec"]["rayClusterConfig"]
    assert cluster["enableInTreeAutoscaling"] is True
    [group] = cluster["workerGroupSpecs"]
    assert (group["minReplicas"], group["maxReplicas"]) == (0, 3)
    assert group["template"]["metadata"]["labels"]["llmtwin.dev/role"] == "serve"
    assert cluster["headGroupSpec"]["template"]["metadata"]["labels"]["llmtwin.dev/profile"] == "mallory"
    serve = yaml.safe_load(service["spec"]["serveConfigV2"])
    assert serve["http_options"]["port"] == 8000
    [app] = serve["applications"]
    assert app["import_path"] == CONFIG.serve_import_path
    assert app["args"]["championVersion"] == 1
    scaling = {d["name"]: d["autoscaling_config"] for d in app["deployments"]}
    assert scaling["engine"] == {
        "min_replicas": 0,
        "max_replicas": 3,
        "target_ongoing_requests": 2,
        "initial_replicas": 1,
    }
    assert scaling["ingress"]["min_replicas"] == 1


def test_serving_gpus_api_keys_and_placement_reach_the_serve_workers() -> None:
    service = next(c for c in everything(hostile()).children if c["kind"] == "RayService")
    worker = service["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["template"]["spec"]
    [container] = worker["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert worker["nodeSelector"]["nvidia.com/gpu.product"] == "marker-gpu"
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["TWIN_SERVING__API_KEYS_FILE"] == "/etc/twin/api-keys/api-keys"
    assert env["TWIN_SERVING__PORT"] == "8000"
    assert {"name": "api-keys", "mountPath": "/etc/twin/api-keys", "readOnly": True} in container[
        "volumeMounts"
    ]


def test_the_endpoint_service_selects_the_serving_pods_of_this_profile() -> None:
    svc = next(c for c in everything(hostile()).children if c["kind"] == "Service")
    assert svc["metadata"]["name"] == "twin-mallory"
    assert svc["spec"]["selector"] == {"llmtwin.dev/profile": "mallory", "llmtwin.dev/role": "serve"}
    assert svc["spec"]["ports"] == [{"name": "http", "protocol": "TCP", "port": 8000, "targetPort": 8000}]


def test_a_cpu_training_run_has_no_worker_group() -> None:
    prof = parse_profile({**HOSTILE, "spec": {**HOSTILE["spec"], "training": {"gpus": 0}}})
    job = next(c for c in everything(prof).children if c["kind"] == "RayJob")
    assert job["spec"]["rayClusterSpec"]["workerGroupSpecs"] == []
    assert job["spec"]["shutdownAfterJobFinishes"] is True


@pytest.mark.parametrize("length", [5, 36, 41, 63])
def test_names_fit_kubernetes_and_kuberay_limits_for_any_profile_name(length: int) -> None:
    name = ("a" * (length - 1) + "z")[:length]
    raw = {**HOSTILE, "metadata": {"name": name, "namespace": "ns"}}
    prof = parse_profile(raw)
    desired = everything(prof)
    crawl = reconcile(prof, observed(), CONFIG)
    limits = {"RayJob": 47, "RayService": 47, "CronJob": 52}
    cron = reconcile(
        parse_profile({**raw, "spec": {**raw["spec"], "crawl": {"schedule": "0 * * * *"}}}),
        observed(),
        CONFIG,
    )
    for obj in (*desired.children, *crawl.children, *cron.children):
        got = obj["metadata"]["name"]
        assert len(got) <= limits.get(obj["kind"], 63), got
        assert DNS_1035.match(got), got
    long_a = policy.bounded_name("b" * 62 + "1", "-serve", limit=47)
    long_b = policy.bounded_name("b" * 62 + "2", "-serve", limit=47)
    assert long_a != long_b


def test_a_running_job_state_is_never_reapplied() -> None:
    prof = hostile()
    running = job(policy.crawl_job_name(prof, None), "Running", started=NOW)
    desired = reconcile(prof, observed(crawl_jobs=(running,)), CONFIG)
    assert all(c["kind"] != "Job" for c in desired.children)
    assert ("Job", running.name) in desired.retain
    assert isinstance(running, JobState)

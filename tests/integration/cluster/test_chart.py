"""The Helm chart against the real API server: lint and template with each values file, every
rendered object accepted by ``kubectl apply --dry-run=server``, a real ``helm install`` (its
post-install hook Job completed by the test: there is no kubelet), the operator's RBAC checked
with ``kubectl auth can-i`` as its ServiceAccount, and the operator's environment parsed by the
operator's own settings model."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from support.kube import REPO, ControlPlane
from support.processes import wait_for

CHART = REPO / "charts" / "twin"
VALUES_FILES = {
    "default": None,
    "full": CHART / "ci" / "full-values.yaml",
    "external": CHART / "ci" / "external-values.yaml",
}
# Namespaces the values files name (watchNamespaces, profileNamespaces).
NAMED_NAMESPACES = ("twin-team-a", "twin-team-b", "twin-sandbox")
# The installed release: its own name, so its cluster-scoped objects (ClusterRole...) meet no other
# test's release of the chart in the same control plane.
RELEASE = "chart"
FULLNAME = f"{RELEASE}-twin"
OPERATOR = f"{FULLNAME}-operator"


def _values_args(name: str) -> list[str]:
    path = VALUES_FILES[name]
    return ["-f", str(path)] if path else []


def render(
    kube: ControlPlane, values: str, namespace: str, *extra: str, release: str = "twin"
) -> list[dict[str, Any]]:
    out = kube.helm(
        "template",
        release,
        str(CHART),
        "-n",
        namespace,
        "--kube-version",
        kube.kube_version,
        *_values_args(values),
        *extra,
    )
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def find(objects: list[dict[str, Any]], kind: str, component: str) -> dict[str, Any]:
    for obj in objects:
        labels = obj["metadata"].get("labels", {})
        if obj["kind"] == kind and labels.get("app.kubernetes.io/component") == component:
            return obj
    raise AssertionError(f"no {kind} of component {component} in {[o['kind'] for o in objects]}")


@pytest.fixture(scope="module")
def cluster(kube: ControlPlane) -> ControlPlane:
    """KubeRay's CRDs, the chart's CRDs (the TwinProfile CRD, kopf's peering) and the namespaces
    the values files name: what a dry-run of the rendered objects needs to exist."""
    for crd in [*kube.kuberay_crds, *sorted((CHART / "crds").glob("*.yaml"))]:
        kube.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(crd))
    names = [c.name.removeprefix("ray.io_").removesuffix(".yaml") + ".ray.io" for c in kube.kuberay_crds]
    kube.wait_established(*names, "clusterkopfpeerings.kopf.dev", "kopfpeerings.kopf.dev")
    for ns in NAMED_NAMESPACES:
        kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    return kube


@pytest.mark.parametrize("values", VALUES_FILES)
def test_helm_lint_passes(kube: ControlPlane, values: str) -> None:
    out = kube.helm(
        "lint", "--strict", str(CHART), "--kube-version", kube.kube_version, *_values_args(values)
    )
    assert "1 chart(s) linted, 0 chart(s) failed" in out.stdout


@pytest.mark.parametrize("values", VALUES_FILES)
def test_every_rendered_object_passes_server_side_dry_run(
    cluster: ControlPlane, namespace: str, values: str, tmp_path: Path
) -> None:
    # Another release name than the installed one: cluster-scoped names must not meet its objects.
    objects = render(cluster, values, namespace, release=f"dry-{values}")
    kinds = {o["kind"] for o in objects}
    assert {"Deployment", "ClusterRole", "ClusterRoleBinding", "ServiceAccount", "ConfigMap"} <= kinds
    manifest = tmp_path / "rendered.yaml"
    manifest.write_text(yaml.safe_dump_all(objects))
    out = cluster.kubectl(
        "apply",
        "--server-side",
        "--dry-run=server",
        "--validate=strict",
        "--field-manager=helm-test",
        "-f",
        str(manifest),
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("(server dry run)") == len(objects)


@pytest.mark.parametrize(
    ("setting", "named"),
    [
        ("operator.replicaz=2", "replicaz"),  # outside values.schema.json
        ("postgres.enabled=false", "external.database"),  # delegated without its address
    ],
)
def test_the_chart_refuses_values_it_cannot_render(kube: ControlPlane, setting: str, named: str) -> None:
    out = kube.helm(
        "template", "twin", str(CHART), "--kube-version", kube.kube_version, "--set", setting, check=False
    )
    assert out.returncode != 0
    assert named in out.stderr


def test_the_operator_environment_is_what_the_operators_settings_read(
    kube: ControlPlane, monkeypatch: pytest.MonkeyPatch
) -> None:
    from twin_operator.config import OperatorSettings

    objects = render(kube, "full", "twin-system")
    container = find(objects, "Deployment", "operator")["spec"]["template"]["spec"]["containers"][0]
    for var in container["env"]:
        if "value" in var:
            monkeypatch.setenv(var["name"], var["value"])
    settings = OperatorSettings()
    assert settings.namespaces == ("twin-team-a", "twin-team-b")
    assert settings.peering == "twin-operator"
    assert settings.images.crawler == "registry.example.com/llm-twin/crawler:0.1.0-rc1"
    assert settings.images.pull_secrets == ("regcred",)
    assert settings.service_accounts.ray == "twin-ray"
    assert settings.resources.training_worker.requests == {"cpu": "8", "memory": "32Gi"}
    assert settings.database_peer.namespace == "twin-system"
    assert settings.database_peer.pod_labels["app.kubernetes.io/component"] == "postgres"
    assert settings.run_as_user == 10001
    assert settings.timer_interval_s == 30
    assert settings.settings_secret == settings.settings_config_map == "twin-settings"


def test_the_connector_the_chart_registers_is_the_products(kube: ControlPlane) -> None:
    from twin.adapters.debezium_config import kafka_connect_config

    objects = render(kube, "default", "twin-system")
    connector = json.loads(find(objects, "ConfigMap", "connect")["data"]["connector.json"])
    expected = kafka_connect_config(
        "postgresql://twin:secret@twin-postgres.twin-system.svc:5432/twin",
        slot="twin_features",
        publication="twin_features",
        topic_prefix="twin",
    )
    expected["database.password"] = "${env:TWIN_CONNECT_DATABASE_PASSWORD}"
    assert connector == expected
    settings = find(objects, "ConfigMap", "settings")["data"]
    assert settings["TWIN_FEATURES__TOPIC"] == "twin.public.raw_documents"


@pytest.fixture(scope="module")
def installed(cluster: ControlPlane) -> Iterator[str]:
    """``helm install`` of the default values; the post-install hook (the connector registration
    Job) is marked complete by the test, as a kubelet running it would, so helm can finish."""
    namespace = cluster.create_namespace("install")
    log = cluster.root / f"helm-install-{namespace}.log"
    with log.open("w") as handle:
        proc = subprocess.Popen(
            [str(cluster.bin / "helm"), "install", RELEASE, str(CHART), "-n", namespace, "--timeout", "3m"],
            env=cluster.helm_env(),
            stdout=handle,
            stderr=subprocess.STDOUT,
            text=True,
        )
    job = f"{FULLNAME}-connect-register"

    def hook_created() -> bool:
        if proc.poll() is not None:
            return True
        return cluster.kubectl("get", "job", job, "-n", namespace, check=False).returncode == 0

    try:
        wait_for(hook_created, timeout=120, what="helm to create the post-install hook Job")
        assert proc.poll() is None, f"helm exited before its hook ran:\n{log.read_text()}"
        complete_job(cluster, namespace, job)
        proc.wait(timeout=120)
        assert proc.returncode == 0, f"helm install failed:\n{log.read_text()}"
        yield namespace
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def complete_job(kube: ControlPlane, namespace: str, name: str) -> None:
    """Mark a Job succeeded through its status subresource (what the Job controller would write)."""
    job = kube.kubectl_json("get", "job", name, "-n", namespace)
    start = job["metadata"]["creationTimestamp"]  # type: ignore[index]
    status = {
        "startTime": start,
        "completionTime": start,
        "succeeded": 1,
        "conditions": [
            {"type": "SuccessCriteriaMet", "status": "True", "lastTransitionTime": start},
            {"type": "Complete", "status": "True", "lastTransitionTime": start},
        ],
    }
    kube.kubectl(
        "patch",
        "job",
        name,
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": status}),
    )


def can_i(kube: ControlPlane, namespace: str, verb: str, resource: str, *extra: str) -> bool:
    out = kube.kubectl(
        "auth",
        "can-i",
        verb,
        resource,
        "-n",
        namespace,
        f"--as=system:serviceaccount:{namespace}:{OPERATOR}",
        *extra,
        check=False,
    )
    return out.stdout.strip() == "yes"


def test_helm_install_creates_the_operator_and_its_least_privilege_rbac(
    cluster: ControlPlane, installed: str
) -> None:
    ns = installed
    status = json.loads(cluster.helm("status", RELEASE, "-n", ns, "-o", "json").stdout)
    assert status["info"]["status"] == "deployed"
    cluster.kubectl("get", "serviceaccount", OPERATOR, "-n", ns)
    cluster.kubectl("get", "clusterrole", OPERATOR)
    cluster.kubectl("get", "clusterrolebinding", OPERATOR)
    deployment = cluster.kubectl_json("get", "deployment", OPERATOR, "-n", ns)
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == OPERATOR  # type: ignore[index]
    for account in ("twin-crawler",):
        cluster.kubectl("get", "serviceaccount", account, "-n", ns)

    allowed = [
        ("patch", "twinprofiles.llmtwin.dev", "--subresource=status"),
        ("update", "twinprofiles.llmtwin.dev", "--subresource=finalizers"),
        ("watch", "twinprofiles.llmtwin.dev"),
        ("create", "rayjobs.ray.io"),
        ("delete", "rayservices.ray.io"),
        ("create", "jobs.batch"),
        ("patch", "cronjobs.batch"),
        ("create", "networkpolicies.networking.k8s.io"),
        ("create", "configmaps"),
        ("create", "events"),
        ("list", "customresourcedefinitions.apiextensions.k8s.io"),
        ("watch", "namespaces"),
    ]
    denied = [
        ("get", "secrets"),
        ("list", "secrets"),
        ("create", "pods"),
        ("create", "pods", "--subresource=exec"),
        ("create", "rayclusters.ray.io"),
        ("create", "serviceaccounts"),
        ("create", "rolebindings.rbac.authorization.k8s.io"),
        ("delete", "twinprofiles.llmtwin.dev"),
        ("patch", "deployments.apps"),
        ("impersonate", "serviceaccounts"),
    ]
    assert [a for a in allowed if not can_i(cluster, ns, *a)] == []
    assert [d for d in denied if can_i(cluster, ns, *d)] == []
    # The crawl pods' account has no permission at all.
    crawler = cluster.kubectl(
        "auth", "can-i", "--list", "-n", ns, f"--as=system:serviceaccount:{ns}:twin-crawler"
    ).stdout
    assert "twinprofiles" not in crawler
    assert "configmaps" not in crawler


def test_the_operators_token_carries_its_rbac(cluster: ControlPlane, installed: str) -> None:
    """The operator's ServiceAccount through a real token (how the operator tests run it)."""
    config = cluster.service_account_kubeconfig(installed, OPERATOR)
    assert (
        cluster.kubectl("get", "twinprofiles.llmtwin.dev", "-A", kubeconfig=config, check=False).returncode
        == 0
    )
    denied = cluster.kubectl("get", "secrets", "-n", installed, kubeconfig=config, check=False)
    assert denied.returncode != 0
    assert "forbidden" in denied.stderr.lower()


def test_watch_namespaces_turn_the_rules_into_roles(cluster: ControlPlane, namespace: str) -> None:
    objects = render(cluster, "full", namespace)
    cluster_role = next(o for o in objects if o["kind"] == "ClusterRole")
    resources = {r for rule in cluster_role["rules"] for r in rule["resources"]}
    assert resources == {"customresourcedefinitions"}
    roles = [o for o in objects if o["kind"] == "Role" and o["metadata"]["name"] == "twin-operator"]
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["twin-team-a", "twin-team-b"]
    bindings = [o for o in objects if o["kind"] == "RoleBinding" and o["metadata"]["name"] == "twin-operator"]
    assert len(bindings) == 2
    # Reading the change-capture Deployments is the only grant in the release namespace.
    features = next(
        o for o in objects if o["kind"] == "Role" and o["metadata"]["name"] == "twin-operator-features"
    )
    assert features["metadata"]["namespace"] == namespace
    assert features["rules"] == [
        {
            "apiGroups": ["apps"],
            "resources": ["deployments"],
            "resourceNames": ["twin-features", "twin-connect"],
            "verbs": ["get"],
        }
    ]
    assert any("kopfpeerings" in rule["resources"] for rule in roles[0]["rules"])
    peerings = [o for o in objects if o["kind"] == "KopfPeering"]
    assert sorted(p["metadata"]["namespace"] for p in peerings) == ["twin-team-a", "twin-team-b"]
    settings_namespaces = {o["metadata"]["namespace"] for o in objects if o["kind"] == "Secret"}
    assert {namespace, *NAMED_NAMESPACES} <= settings_namespaces

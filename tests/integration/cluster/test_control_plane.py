"""The control plane the operator tests stand on: a real kube-apiserver at the pinned version, RBAC
enforced for ServiceAccount tokens, and the real KubeRay operator acting on what we create."""

from __future__ import annotations

import json

from support.kube import ControlPlane
from support.processes import wait_for


def test_the_api_server_is_ready_at_the_pinned_version(kube: ControlPlane) -> None:
    assert kube.kubectl("get", "--raw", "/readyz").stdout.strip() == "ok"
    version = json.loads(kube.kubectl("get", "--raw", "/version").stdout)
    assert version["gitVersion"] == kube.kube_version == "v1.34.4"


def test_a_service_account_token_carries_exactly_its_rbac(kube: ControlPlane, namespace: str) -> None:
    config = kube.service_account_kubeconfig(namespace, "reader", create=True)
    denied = kube.kubectl("get", "configmaps", "-n", namespace, kubeconfig=config, check=False)
    assert denied.returncode != 0
    assert f"system:serviceaccount:{namespace}:reader" in denied.stderr
    kube.kubectl("create", "role", "read-cm", "--verb=get,list", "--resource=configmaps", "-n", namespace)
    kube.kubectl(
        "create",
        "rolebinding",
        "read-cm",
        "--role=read-cm",
        f"--serviceaccount={namespace}:reader",
        "-n",
        namespace,
    )
    wait_for(
        lambda: (
            kube.kubectl("get", "configmaps", "-n", namespace, kubeconfig=config, check=False).returncode == 0
        ),
        timeout=30,
        what="the RoleBinding to take effect",
    )
    assert kube.kubectl("get", "secrets", "-n", namespace, kubeconfig=config, check=False).returncode != 0


def test_kuberay_turns_a_raycluster_into_a_head_pod(kuberay: ControlPlane, namespace: str) -> None:
    kuberay.apply(
        {
            "apiVersion": "ray.io/v1",
            "kind": "RayCluster",
            "metadata": {"name": "tiny", "namespace": namespace},
            "spec": {
                "headGroupSpec": {
                    "rayStartParams": {},
                    "template": {
                        "spec": {"containers": [{"name": "ray-head", "image": "rayproject/ray:2.49.0"}]}
                    },
                }
            },
        }
    )

    def head_pods() -> list[dict[str, object]]:
        out = kuberay.kubectl_json(
            "get", "pods", "-n", namespace, "-l", "ray.io/cluster=tiny,ray.io/node-type=head"
        )
        items = out["items"]
        assert isinstance(items, list)
        return items

    wait_for(lambda: len(head_pods()) == 1, timeout=90, what="KubeRay to create the head Pod")
    pod = head_pods()[0]
    owners = pod["metadata"]["ownerReferences"]  # type: ignore[index]
    assert [(o["kind"], o["name"]) for o in owners] == [("RayCluster", "tiny")]

"""The Kubernetes objects a TwinProfile owns, as plain dicts ready for server-side apply.

Every child carries the operator's labels and a controller owner reference to its profile; every
pod runs as a non-root user without privilege escalation, capabilities or a service account token
it does not need. What a pod runs (image, command, service account, shared settings) comes from
:class:`~twin_operator.config.OperatorConfig` only. From the profile a child takes its name, the
spec it reads from the profile ConfigMap, GPU counts, node selectors and tolerations, and the
*names* of Secrets in the profile's own namespace. The KubeRay objects are in
:mod:`twin_operator.raycluster`.
"""

from __future__ import annotations

from typing import Any

import yaml

from twin.domain.profile import API_VERSION, KIND, TwinProfile
from twin_operator import jobmetrics, policy
from twin_operator.config import OperatorConfig
from twin_operator.model import COMPONENT_LABEL, CRAWL_NOW, MANAGED_BY, MANAGER, PROFILE_LABEL

PART_OF = "app.kubernetes.io/part-of"
ROLE_LABEL = "llmtwin.dev/role"
CRAWL_HASH_LABEL = "llmtwin.dev/crawl-hash"
GPU_PRODUCT = "nvidia.com/gpu.product"
PROFILE_DIR = "/etc/twin"
PROFILE_FILE = "profile.yaml"
PROFILE_PATH = f"{PROFILE_DIR}/{PROFILE_FILE}"

# Crawl pods reach the internet, never the cluster, its nodes or the cloud's metadata service.
BLOCKED_V4 = (
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.168.0.0/16",
)
# Loopback, unique-local, link-local, and NAT64 (which leads back to IPv4). The IPv4-mapped range
# (::ffff:0:0/96) cannot be listed: the API server reads it as IPv4, outside ``::/0``.
BLOCKED_V6 = ("::1/128", "64:ff9b::/96", "fc00::/7", "fe80::/10")

Obj = dict[str, Any]


# ------------------------------------------------------------------------------ metadata


def labels(profile: TwinProfile, component: str) -> dict[str, str]:
    return {
        MANAGED_BY: MANAGER,
        PART_OF: "llm-twin",
        PROFILE_LABEL: profile.name,
        COMPONENT_LABEL: component,
    }


def owner_reference(profile: TwinProfile, uid: str) -> Obj:
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": profile.name,
        "uid": uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def metadata(
    profile: TwinProfile,
    uid: str,
    name: str,
    component: str,
    *,
    extra_labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
) -> Obj:
    meta: Obj = {
        "name": name,
        "labels": {**labels(profile, component), **(extra_labels or {})},
        "ownerReferences": [owner_reference(profile, uid)],
    }
    if profile.metadata.namespace:
        meta["namespace"] = profile.metadata.namespace
    if annotations:
        meta["annotations"] = annotations
    return meta


# ------------------------------------------------------------------------------ pod parts


def pod_security(config: OperatorConfig) -> Obj:
    return {
        "runAsNonRoot": True,
        "runAsUser": config.run_as_user,
        "runAsGroup": config.run_as_group,
        "fsGroup": config.run_as_group,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security() -> Obj:
    return {
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def settings_env_from(config: OperatorConfig) -> list[Obj]:
    """The shared twin settings; the Secret last, so it wins over the ConfigMap on a shared key."""
    return [
        {"configMapRef": {"name": config.settings_config_map}},
        {"secretRef": {"name": config.settings_secret}},
    ]


def profile_config_map_name(profile: TwinProfile) -> str:
    return policy.bounded_name(profile.name, "-profile")


def profile_volume(profile: TwinProfile) -> tuple[Obj, Obj]:
    """The profile ConfigMap as a read-only file at ``/etc/twin/profile.yaml``: (volume, mount)."""
    volume = {
        "name": "profile",
        "configMap": {
            "name": profile_config_map_name(profile),
            "items": [{"key": PROFILE_FILE, "path": PROFILE_FILE}],
        },
    }
    return volume, {"name": "profile", "mountPath": PROFILE_DIR, "readOnly": True}


def scratch_volumes() -> tuple[list[Obj], list[Obj]]:
    """A writable /tmp, and a /dev/shm larger than the runtime's 64 MiB (Chromium, Ray's store)."""
    volumes = [
        {"name": "tmp", "emptyDir": {}},
        {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "1Gi"}},
    ]
    mounts = [{"name": "tmp", "mountPath": "/tmp"}, {"name": "shm", "mountPath": "/dev/shm"}]  # noqa: S108
    return volumes, mounts


def placement(gpu_type: str | None, node_selector: dict[str, str], tolerations: list[Any]) -> Obj:
    """nodeSelector (with ``nvidia.com/gpu.product`` for a GPU type) and tolerations of a pod."""
    selector = dict(node_selector)
    if gpu_type:
        selector[GPU_PRODUCT] = gpu_type
    out: Obj = {}
    if selector:
        out["nodeSelector"] = selector
    if tolerations:
        out["tolerations"] = [
            t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in tolerations
        ]
    return out


def pull_secrets(config: OperatorConfig) -> Obj:
    if not config.images.pull_secrets:
        return {}
    return {"imagePullSecrets": [{"name": name} for name in config.images.pull_secrets]}


# ------------------------------------------------------------------------------ children


def profile_config_map(profile: TwinProfile, uid: str) -> Obj:
    """The profile as the pods read it (``--profile /etc/twin/profile.yaml``): the resource as
    ``twin`` parses it, without the cluster's bookkeeping (status, managed fields)."""
    document: Obj = {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": profile.name},
        "spec": profile.spec.model_dump(mode="json", by_alias=True, exclude_none=True),
    }
    if profile.metadata.namespace:
        document["metadata"]["namespace"] = profile.metadata.namespace
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(profile, uid, profile_config_map_name(profile), "config"),
        "data": {PROFILE_FILE: yaml.safe_dump(document, sort_keys=False, allow_unicode=True)},
    }


def _credential_env(profile: TwinProfile, config: OperatorConfig) -> list[Obj]:
    """The platform credentials from the profile's Secret: only the keys the chart allows, each as
    the variable of the same name. ``envFrom`` would let that Secret set any twin setting (the
    database, the address guard's allowed networks)."""
    ref = profile.spec.credentials_secret_ref
    if ref is None:
        return []
    return [
        {"name": var, "valueFrom": {"secretKeyRef": {"name": ref.name, "key": var, "optional": True}}}
        for var in config.credential_variables
    ]


def crawl_pod_template(profile: TwinProfile, config: OperatorConfig, component_labels: Obj) -> Obj:
    volume, mount = profile_volume(profile)
    scratch, scratch_mounts = scratch_volumes()
    container: Obj = {
        "name": "crawl",
        "image": config.images.crawler,
        "imagePullPolicy": config.images.pull_policy,
        "command": [*config.crawl_command, *jobmetrics.flags(config.job_metrics)],
        "envFrom": settings_env_from(config),
        "resources": config.resources.crawler.render(),
        "securityContext": container_security(),
        "volumeMounts": [mount, *scratch_mounts],
    }
    if credentials := _credential_env(profile, config):
        container["env"] = credentials
    if ports := jobmetrics.container_ports(config.job_metrics):
        container["ports"] = ports
    return {
        "metadata": {"labels": {**component_labels, ROLE_LABEL: "crawler"}},
        "spec": {
            "restartPolicy": "Never",
            "serviceAccountName": config.service_accounts.crawler,
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "securityContext": pod_security(config),
            **pull_secrets(config),
            "containers": [container],
            "volumes": [volume, *scratch],
        },
    }


def _crawl_job_spec(profile: TwinProfile, config: OperatorConfig, pod_labels: Obj) -> Obj:
    return {
        "backoffLimit": config.crawl_backoff_limit,
        "activeDeadlineSeconds": config.crawl_deadline_s,
        "template": crawl_pod_template(profile, config, pod_labels),
    }


def crawl_job(profile: TwinProfile, uid: str, config: OperatorConfig, crawl_now: str | None) -> Obj:
    """The on-demand crawl: one per spec (sources, crawl) and crawl-now annotation value."""
    digest = policy.crawl_hash(profile, crawl_now)
    extra = {CRAWL_HASH_LABEL: digest}
    meta = metadata(
        profile,
        uid,
        policy.crawl_job_name(profile, crawl_now),
        "crawl",
        extra_labels=extra,
        annotations={CRAWL_NOW: crawl_now} if crawl_now else None,
    )
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": meta,
        "spec": _crawl_job_spec(profile, config, {**labels(profile, "crawl"), **extra}),
    }


def crawl_cron_job(profile: TwinProfile, uid: str, config: OperatorConfig) -> Obj | None:
    """The scheduled crawl (``crawl.schedule``, UTC); one at a time."""
    schedule = profile.spec.crawl.schedule
    if not schedule:
        return None
    job_labels = labels(profile, "crawl")
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": metadata(profile, uid, policy.cron_job_name(profile), "crawl"),
        "spec": {
            "schedule": schedule,
            "timeZone": "Etc/UTC",
            "concurrencyPolicy": "Forbid",
            "startingDeadlineSeconds": 600,
            "successfulJobsHistoryLimit": config.crawl_job_history,
            "failedJobsHistoryLimit": max(1, config.crawl_job_history),
            "jobTemplate": {
                "metadata": {"labels": job_labels},
                "spec": _crawl_job_spec(profile, config, job_labels),
            },
        },
    }


def crawl_network_policy(profile: TwinProfile, uid: str, config: OperatorConfig) -> Obj:
    """Crawl pods: DNS, the database, and the internet on 80/443, nothing cluster-internal or
    link-local (the metadata service); no ingress but Prometheus on the metrics port (if any)."""
    dns_peer: Obj = {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": config.dns_peer.namespace}}
    }
    if config.dns_peer.pod_labels:
        dns_peer["podSelector"] = {"matchLabels": dict(config.dns_peer.pod_labels)}
    db = config.database_peer
    db_peer: Obj = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": db.namespace}}}
    if db.pod_labels:
        db_peer["podSelector"] = {"matchLabels": dict(db.pod_labels)}
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(profile, uid, policy.bounded_name(profile.name, "-crawl-egress"), "network"),
        "spec": {
            "podSelector": {"matchLabels": {PROFILE_LABEL: profile.name, ROLE_LABEL: "crawler"}},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": jobmetrics.ingress(config.job_metrics),
            "egress": [
                {
                    "to": [dns_peer],
                    "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
                },
                {"to": [db_peer], "ports": [{"protocol": "TCP", "port": db.port}]},
                {
                    "to": [
                        {"ipBlock": {"cidr": "0.0.0.0/0", "except": list(BLOCKED_V4)}},
                        {"ipBlock": {"cidr": "::/0", "except": list(BLOCKED_V6)}},
                    ],
                    "ports": [{"protocol": "TCP", "port": 80}, {"protocol": "TCP", "port": 443}],
                },
            ],
        },
    }


def endpoint_service_name(profile: TwinProfile) -> str:
    return policy.bounded_name(profile.name)


def endpoint_service(profile: TwinProfile, uid: str, config: OperatorConfig) -> Obj:
    """The stable endpoint: whatever RayService pods serve the profile, behind one name."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(profile, uid, endpoint_service_name(profile), "endpoint"),
        "spec": {
            "type": "ClusterIP",
            "selector": {PROFILE_LABEL: profile.name, ROLE_LABEL: "serve"},
            "ports": [
                {
                    "name": "http",
                    "protocol": "TCP",
                    "port": config.endpoint_port,
                    "targetPort": config.endpoint_port,
                }
            ],
        },
    }


def endpoint_url(profile: TwinProfile, config: OperatorConfig) -> str:
    host = endpoint_service_name(profile)
    if profile.metadata.namespace:
        host = f"{host}.{profile.metadata.namespace}.svc"
    return f"http://{host}:{config.endpoint_port}/v1"


__all__ = [
    "crawl_cron_job",
    "crawl_job",
    "crawl_network_policy",
    "endpoint_service",
    "endpoint_url",
    "labels",
    "metadata",
    "owner_reference",
    "profile_config_map",
]

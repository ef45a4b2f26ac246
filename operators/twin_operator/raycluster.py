"""The KubeRay children (ray.io/v1, KubeRay 1.5): the training RayJob and the serving RayService.

Shapes follow KubeRay's CRDs (``ray.io_rayjobs.yaml``, ``ray.io_rayservices.yaml`` in the
``ray-operator`` module) and the checks its controller makes before acting (names of at most 47
characters that are DNS-1035 labels, at least one container per group, resources either in
``rayStartParams`` or ``resources`` but not both). KubeRay reads a GPU count from the
``nvidia.com/gpu`` limit of a group's container, so the GPUs are limits only.

Training runs one worker per GPU (``training.gpus``), each on a node the profile's ``gpuType``,
``nodeSelector`` and ``tolerations`` allow; with ``gpus: 0`` the head alone runs the one CPU
worker. Serving autoscales twice over: Ray Serve scales the ``engine`` and ``ingress``
deployments between ``minReplicas`` and ``maxReplicas`` on ``targetOngoingRequests``
(``serveConfigV2``), and KubeRay's in-tree autoscaler adds or removes worker pods to fit them.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import yaml

from twin.domain.profile import TwinProfile
from twin.settings import env_name
from twin_operator import jobmetrics, policy
from twin_operator.children import (
    PROFILE_DIR,
    PROFILE_PATH,
    ROLE_LABEL,
    container_security,
    labels,
    metadata,
    placement,
    pod_security,
    profile_volume,
    pull_secrets,
    scratch_volumes,
    settings_env_from,
)
from twin_operator.config import OperatorConfig, Resources

API_KEYS_DIR = f"{PROFILE_DIR}/api-keys"
API_KEYS_FILE = "api-keys"
SNAPSHOT_ANNOTATION = "llmtwin.dev/snapshot"
# KubeRay's default head ports. KubeRay 1.5 gives the head Service these only while the head
# container declares no port at all; the RayJob's submitter finds the dashboard by its port's name.
RAY_HEAD_SERVICE_PORTS = (
    {"name": "gcs-server", "containerPort": 6379, "protocol": "TCP"},
    {"name": "dashboard", "containerPort": 8265, "protocol": "TCP"},
    {"name": "client", "containerPort": 10001, "protocol": "TCP"},
)

Obj = dict[str, Any]


def _env(pairs: dict[str, str]) -> list[Obj]:
    return [{"name": k, "value": v} for k, v in pairs.items()]


def _pod(
    profile: TwinProfile,
    config: OperatorConfig,
    *,
    component: str,
    role: str,
    container: Obj,
    extra_volumes: list[Obj] | None = None,
    extra: Obj | None = None,
    token: bool = False,
) -> Obj:
    """A Ray pod template: the profile and scratch volumes, the shared settings, no root."""
    volume, mount = profile_volume(profile)
    scratch, scratch_mounts = scratch_volumes()
    container = {
        "imagePullPolicy": config.images.pull_policy,
        "envFrom": settings_env_from(config),
        "securityContext": container_security(),
        **container,
        "volumeMounts": [mount, *scratch_mounts, *container.get("volumeMounts", [])],
    }
    spec: Obj = {
        "securityContext": pod_security(config),
        "automountServiceAccountToken": token,
        "enableServiceLinks": False,
        **pull_secrets(config),
        "containers": [container],
        "volumes": [volume, *scratch, *(extra_volumes or [])],
        **(extra or {}),
    }
    if config.service_accounts.ray:
        spec["serviceAccountName"] = config.service_accounts.ray
    return {"metadata": {"labels": {**labels(profile, component), ROLE_LABEL: role}}, "spec": spec}


def _ray_container(name: str, image: str, resources: Resources, env: dict[str, str], gpus: int = 0) -> Obj:
    return {"name": name, "image": image, "resources": resources.render(gpus), "env": _env(env)}


def _cluster_version(config: OperatorConfig) -> Obj:
    return {"rayVersion": config.ray_version} if config.ray_version else {}


# ---------------------------------------------------------------------------------- training


def training_ray_job(profile: TwinProfile, uid: str, config: OperatorConfig, snapshot: str) -> Obj:
    """The RayJob that trains ``snapshot`` of the profile's documents with ``twin train --if-needed``
    (the run checks the policy again, so a stale decision trains nothing); the cluster goes away
    when the run ends."""
    training = profile.spec.training
    env = {env_name("ray", "address"): "auto"}
    image = config.images.training
    head_container = _ray_container("ray-head", image, config.resources.training_head, env)
    if metrics_ports := jobmetrics.container_ports(config.job_metrics):
        # The entrypoint's driver runs on the head: its /metrics is the head's port named "metrics"
        # (KubeRay then adds no "metrics" port of its own there; Ray still exports on 8080).
        head_container["ports"] = [*(dict(p) for p in RAY_HEAD_SERVICE_PORTS), *metrics_ports]
    head = _pod(profile, config, component="train", role="train", container=head_container)
    workers: list[Obj] = []
    if training.gpus > 0:
        worker = _pod(
            profile,
            config,
            component="train",
            role="train",
            container=_ray_container("ray-worker", image, config.resources.training_worker, env, gpus=1),
            extra=placement(training.gpu_type, dict(training.node_selector), list(training.tolerations)),
        )
        workers.append(
            {
                "groupName": "gpu",
                "replicas": training.gpus,
                "minReplicas": training.gpus,
                "maxReplicas": training.gpus,
                "rayStartParams": {},
                "template": worker,
            }
        )
    submitter = _pod(
        profile,
        config,
        component="train",
        role="submitter",
        container={
            # No command: KubeRay fills in `ray job submit ... -- <entrypoint>`.
            "name": "ray-job-submitter",
            "image": image,
            "resources": config.resources.submitter.render(),
        },
        extra={"restartPolicy": "Never"},
    )
    name = policy.training_job_name(profile, snapshot)
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayJob",
        "metadata": metadata(profile, uid, name, "train", annotations={SNAPSHOT_ANNOTATION: snapshot}),
        "spec": {
            "entrypoint": " ".join([config.train_entrypoint, *jobmetrics.flags(config.job_metrics)]),
            "shutdownAfterJobFinishes": True,
            "activeDeadlineSeconds": config.training_deadline_s,
            "submitterPodTemplate": submitter,
            "rayClusterSpec": {
                **_cluster_version(config),
                "headGroupSpec": {"rayStartParams": {}, "template": head},
                "workerGroupSpecs": workers,
            },
        },
    }


# ----------------------------------------------------------------------------------- serving


def _autoscaling(profile: TwinProfile, *, floor: int = 0) -> Obj:
    spec = profile.spec.serving
    low = max(spec.min_replicas, floor)
    config: Obj = {
        "min_replicas": low,
        "max_replicas": max(spec.max_replicas, low, 1),
        "target_ongoing_requests": spec.target_ongoing_requests,
    }
    if low == 0:
        config["initial_replicas"] = 1  # scale to zero when idle, but start with one
    return config


def _app_digest(profile: TwinProfile) -> str:
    """What the application reads from the profile besides the champion: a change redeploys it."""
    spec = profile.spec
    relevant = {
        "owner": spec.owner.model_dump(mode="json"),
        "baseModel": spec.base_model,
        "serving": spec.serving.model_dump(mode="json"),
    }
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:12]


def serve_config(profile: TwinProfile, config: OperatorConfig, champion_version: int) -> str:
    """``serveConfigV2``: the twin application (built by ``config.serve_import_path`` from the
    profile file and the champion's version) with the spec's autoscaling bounds; deployment names
    are the application's own (``engine``, ``ingress``)."""
    document = {
        "proxy_location": "EveryNode",
        "http_options": {"host": "0.0.0.0", "port": config.endpoint_port},  # noqa: S104 -- in the pod
        "applications": [
            {
                "name": f"twin-{profile.name}",
                "import_path": config.serve_import_path,
                "route_prefix": "/",
                "args": {
                    "profile": PROFILE_PATH,
                    "championVersion": champion_version,
                    "specDigest": _app_digest(profile),
                },
                "deployments": [
                    {"name": "engine", "autoscaling_config": _autoscaling(profile)},
                    {"name": "ingress", "autoscaling_config": _autoscaling(profile, floor=1)},
                ],
            }
        ],
    }
    return yaml.safe_dump(document, sort_keys=False)


def _serving_env(profile: TwinProfile, config: OperatorConfig) -> dict[str, str]:
    env = {
        env_name("ray", "address"): "auto",
        env_name("serving", "host"): "0.0.0.0",  # noqa: S104 -- inside the pod
        env_name("serving", "port"): str(config.endpoint_port),
        env_name("serving", "engine_gpus"): str(profile.spec.serving.gpus),
    }
    if profile.spec.serving.api_keys_secret_ref is not None:
        env[env_name("serving", "api_keys_file")] = f"{API_KEYS_DIR}/{API_KEYS_FILE}"
    return env


def _api_keys_volume(profile: TwinProfile) -> tuple[list[Obj], list[Obj]]:
    ref = profile.spec.serving.api_keys_secret_ref
    if ref is None:
        return [], []
    volume = {
        "name": "api-keys",
        "secret": {"secretName": ref.name, "items": [{"key": ref.key, "path": API_KEYS_FILE}]},
    }
    return [volume], [{"name": "api-keys", "mountPath": API_KEYS_DIR, "readOnly": True}]


def serving_ray_service(profile: TwinProfile, uid: str, config: OperatorConfig, champion_version: int) -> Obj:
    """The RayService serving the champion; its pods carry ``llmtwin.dev/role: serve``, so the
    endpoint Service finds them whichever cluster KubeRay has rolled out."""
    serving = profile.spec.serving
    image = config.images.serving
    env = _serving_env(profile, config)
    keys, keys_mounts = _api_keys_volume(profile)

    def container(name: str, resources: Resources, gpus: int = 0) -> Obj:
        return {**_ray_container(name, image, resources, env, gpus), "volumeMounts": keys_mounts}

    head = _pod(
        profile,
        config,
        component="serve",
        role="serve",
        container=container("ray-head", config.resources.serving_head),
        extra_volumes=keys,
        token=True,  # the autoscaler sidecar patches the RayCluster with the pod's token
    )
    worker = _pod(
        profile,
        config,
        component="serve",
        role="serve",
        container=container("ray-worker", config.resources.serving_worker, serving.gpus),
        extra_volumes=keys,
        extra=placement(serving.gpu_type, dict(serving.node_selector), list(serving.tolerations)),
    )
    low = serving.min_replicas
    high = max(serving.max_replicas, low, 1)
    autoscaler: Obj = {
        "imagePullPolicy": config.images.pull_policy,
        "securityContext": container_security(),
        "resources": {"requests": {"cpu": "200m", "memory": "256Mi"}, "limits": {"memory": "512Mi"}},
    }
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayService",
        "metadata": metadata(profile, uid, policy.serving_name(profile), "serve"),
        "spec": {
            "serveConfigV2": serve_config(profile, config, champion_version),
            "rayClusterConfig": {
                **_cluster_version(config),
                "enableInTreeAutoscaling": True,
                "autoscalerOptions": autoscaler,
                # The head runs Serve's controller and a proxy only: replicas go to the workers.
                "headGroupSpec": {"rayStartParams": {"num-cpus": "0"}, "template": head},
                "workerGroupSpecs": [
                    {
                        "groupName": "serve",
                        "replicas": max(low, 1),
                        "minReplicas": low,
                        "maxReplicas": high,
                        "rayStartParams": {},
                        "template": worker,
                    }
                ],
            },
        },
    }


__all__ = ["serve_config", "serving_ray_service", "training_ray_job"]

"""The operator's configuration: everything a child object gets that a TwinProfile must not choose.

Images, commands, service accounts, the shared settings every pod reads, resources and the network
peers come from here, never from a profile: a user allowed to create TwinProfiles in a namespace
must not be able to run another image or command, or borrow a service account, through the
operator. The chart's values become ``TWIN_OPERATOR_*`` variables (:class:`OperatorSettings`, nested
sections joined with ``__``); :meth:`OperatorSettings.config` hands ``reconcile`` the frozen
:class:`OperatorConfig`, which holds no process concern (namespaces, peering).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from twin.settings import env_name


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ImagesConfig(_Section):
    """The images the operator's children run (tags included: pin them in the chart's values)."""

    crawler: str = Field(
        default="ghcr.io/llm-twin/crawler:0.1.0",
        min_length=1,
        description="The crawl pods' image (llm-twin[crawler] with Chromium): runs `twin crawl`.",
    )
    training: str = Field(
        default="ghcr.io/llm-twin/training:0.1.0",
        min_length=1,
        description="The training RayJob's head, GPU workers and submitter (llm-twin[training] on Ray).",
    )
    serving: str = Field(
        default="ghcr.io/llm-twin/serving:0.1.0",
        min_length=1,
        description="The RayService's head and workers (llm-twin[serving]: Ray Serve and the engine).",
    )
    pull_policy: Literal["Always", "IfNotPresent", "Never"] = Field(
        default="IfNotPresent", description="imagePullPolicy of every container the operator creates."
    )
    pull_secrets: tuple[str, ...] = Field(
        default=(),
        description="imagePullSecrets (names of Secrets in each profile's namespace) for private registries.",
    )


class ServiceAccountsConfig(_Section):
    """The service accounts pods run as; they must exist in each profile's namespace."""

    crawler: str = Field(
        default="default",
        min_length=1,
        description="The crawl pods' service account (its token is never mounted: crawlers call no API).",
    )
    ray: str | None = Field(
        default=None,
        description="The Ray pods' service account; unset: KubeRay's own (it creates the autoscaler's "
        "account and role for a RayService).",
    )


class DatabasePeerConfig(_Section):
    """Where Postgres runs: the one cluster-internal address crawl pods may reach."""

    namespace: str = Field(default="twin-system", min_length=1, description="Postgres's namespace.")
    pod_labels: dict[str, str] = Field(
        default_factory=lambda: {"app.kubernetes.io/name": "postgres"},
        description="Labels that select the Postgres pods (the NetworkPolicy's egress peer).",
    )
    port: int = Field(default=5432, ge=1, le=65535, description="Postgres's port.")


class DnsPeerConfig(_Section):
    """The cluster DNS crawl pods resolve names with."""

    namespace: str = Field(default="kube-system", min_length=1, description="The DNS server's namespace.")
    pod_labels: dict[str, str] = Field(
        default_factory=lambda: {"k8s-app": "kube-dns"},
        description="Labels that select the DNS pods (CoreDNS keeps kube-dns's label); empty: any pod "
        "in that namespace.",
    )


# The ports a KubeRay head listens on besides the driver: GCS, Ray's own metrics export, dashboard,
# dashboard agent, client, Serve. The training driver's /metrics must not take one of them.
RAY_HEAD_PORTS = frozenset({6379, 8080, 8265, 52365, 10001, 8000})


class JobMetricsConfig(_Section):
    """/metrics of crawl pods and the training driver (`--metrics-port`, `--metrics-linger`), on a
    container port named ``metrics`` (what the chart's twin-jobs PodMonitor scrapes), and the one
    ingress rule that lets Prometheus reach it through the crawl pods' NetworkPolicy."""

    port: int = Field(
        default=9110,
        ge=0,
        le=65535,
        description="The port `twin crawl` and `twin train` serve /metrics on; 0: none (no flag, no "
        "container port, no ingress rule). Not one of the Ray head's own ports.",
    )
    linger_s: int = Field(
        default=60,
        ge=0,
        le=3600,
        description="After the work ends, keep /metrics up until Prometheus scrapes once more, at most "
        "this long, so a short Job's last counters are not lost; at least the scrape interval. "
        "0: stop at once.",
    )
    prometheus_namespace_labels: dict[str, str] = Field(
        default_factory=lambda: {"kubernetes.io/metadata.name": "monitoring"},
        description="Labels of the namespace(s) Prometheus runs in: the ingress rule's namespaceSelector "
        "(empty: every namespace).",
    )
    prometheus_pod_labels: dict[str, str] = Field(
        default_factory=lambda: {"app.kubernetes.io/name": "prometheus"},
        description="Labels of the Prometheus pods (prometheus-operator's); empty: any pod in those "
        "namespaces. Both selectors must match the scraper.",
    )

    @field_validator("port")
    @classmethod
    def _not_a_ray_port(cls, port: int) -> int:
        # The driver runs on the Ray head: a port Ray holds would fail the run at bind time.
        if port in RAY_HEAD_PORTS:
            raise ValueError(f"port {port} is one of the Ray head's own ports {sorted(RAY_HEAD_PORTS)}")
        return port

    @property
    def enabled(self) -> bool:
        return self.port > 0


class Resources(_Section):
    """A container's requests and limits, as Kubernetes quantities."""

    requests: dict[str, str] = Field(default_factory=dict, description="e.g. {cpu: 500m, memory: 1Gi}.")
    limits: dict[str, str] = Field(default_factory=dict, description="e.g. {memory: 2Gi}.")

    def render(self, gpus: int = 0) -> dict[str, dict[str, str]]:
        """The container's ``resources``, with ``gpus`` NVIDIA GPUs as a limit (requests follow)."""
        limits = dict(self.limits)
        if gpus > 0:
            limits["nvidia.com/gpu"] = str(gpus)
        out: dict[str, dict[str, str]] = {}
        if self.requests:
            out["requests"] = dict(self.requests)
        if limits:
            out["limits"] = limits
        return out


def _resources(cpu: str, memory: str, limit_memory: str) -> Resources:
    return Resources(requests={"cpu": cpu, "memory": memory}, limits={"memory": limit_memory})


class ResourcesConfig(_Section):
    """Requests and limits per kind of pod (GPU limits come from the profile's GPU counts)."""

    crawler: Resources = Field(
        default_factory=lambda: _resources("500m", "1Gi", "2Gi"), description="A crawl pod (Chromium)."
    )
    training_head: Resources = Field(
        default_factory=lambda: _resources("1", "4Gi", "8Gi"),
        description="The training Ray head: the driver that builds the dataset and evaluates.",
    )
    training_worker: Resources = Field(
        default_factory=lambda: _resources("4", "16Gi", "32Gi"),
        description="One GPU training worker, besides its GPU.",
    )
    serving_head: Resources = Field(
        default_factory=lambda: _resources("1", "2Gi", "4Gi"),
        description="The serving Ray head (Serve controller and a proxy; replicas run on workers).",
    )
    serving_worker: Resources = Field(
        default_factory=lambda: _resources("2", "8Gi", "16Gi"),
        description="One serving worker (an engine replica and the ingress), besides its GPUs.",
    )
    submitter: Resources = Field(
        default_factory=lambda: _resources("200m", "256Mi", "512Mi"),
        description="The RayJob's submitter pod (`ray job submit`, then it follows the logs).",
    )


class OperatorConfig(_Section):
    """What ``reconcile`` needs besides the profile and what was observed."""

    images: ImagesConfig = Field(default_factory=ImagesConfig, description="Images of the children.")
    service_accounts: ServiceAccountsConfig = Field(
        default_factory=ServiceAccountsConfig, description="Service accounts of the children's pods."
    )
    resources: ResourcesConfig = Field(default_factory=ResourcesConfig, description="Pod resources.")
    settings_secret: str = Field(
        default="twin-settings",
        min_length=1,
        description="A Secret (created by the chart in each profile namespace) every pod gets with envFrom: "
        "TWIN_DATABASE__DSN and other secret twin settings.",
    )
    settings_config_map: str = Field(
        default="twin-settings",
        min_length=1,
        description="A ConfigMap every pod gets with envFrom: the non-secret twin settings "
        "(TWIN_TRAINING__MLFLOW_TRACKING_URI, TWIN_FEATURES__RUNTIME...).",
    )
    credential_variables: tuple[str, ...] = Field(
        default=(
            env_name("linkedin", "email"),
            env_name("linkedin", "password"),
            env_name("github", "token"),
        ),
        description="The only keys a profile's credentialsSecretRef may set in a crawl pod: each "
        "becomes the variable of the same name; other keys of that Secret are never read.",
    )
    database_peer: DatabasePeerConfig = Field(
        default_factory=DatabasePeerConfig, description="The crawl NetworkPolicy's database peer."
    )
    dns_peer: DnsPeerConfig = Field(default_factory=DnsPeerConfig, description="The crawl pods' DNS.")
    job_metrics: JobMetricsConfig = Field(
        default_factory=JobMetricsConfig, description="/metrics of crawl pods and the training driver."
    )
    endpoint_port: int = Field(
        default=8000,
        ge=1,
        le=65535,
        description="The endpoint's port: Ray Serve's HTTP proxy and the Service.",
    )
    serve_import_path: str = Field(
        default="twin.cli.serve_app:build_from_args",
        min_length=1,
        description="The Ray Serve application builder (serveConfigV2 import_path); it gets the args "
        "{profile: <path>, championVersion: <n>}.",
    )
    crawl_command: tuple[str, ...] = Field(
        default=("twin", "crawl", "--profile", "/etc/twin/profile.yaml", "--json"),
        min_length=1,
        description="A crawl pod's command (job_metrics appends --metrics-port and --metrics-linger).",
    )
    train_entrypoint: str = Field(
        default="twin train --profile /etc/twin/profile.yaml --if-needed --json",
        min_length=1,
        description="The training RayJob's entrypoint (run on the Ray head by KubeRay's submitter; "
        "job_metrics appends --metrics-port and --metrics-linger).",
    )
    ray_version: str | None = Field(
        default=None, description="rayVersion of the Ray clusters (the images' Ray); unset: KubeRay's guess."
    )
    run_as_user: int = Field(default=1000, ge=1, description="The UID every pod runs as (never root).")
    run_as_group: int = Field(default=1000, ge=1, description="The GID every pod runs as.")
    crawl_job_history: int = Field(
        default=3,
        ge=0,
        le=50,
        description="Finished crawl Jobs kept per profile besides the current one (and per CronJob outcome).",
    )
    crawl_backoff_limit: int = Field(default=2, ge=0, le=10, description="Retries of a failed crawl pod.")
    crawl_deadline_s: int = Field(default=6 * 3600, ge=60, description="A crawl Job's activeDeadlineSeconds.")
    training_deadline_s: int = Field(
        default=24 * 3600, ge=60, description="A training RayJob's activeDeadlineSeconds."
    )
    timer_interval_s: float = Field(
        default=60.0, gt=0, description="How often every profile is reconciled (drift repair, new data)."
    )
    progress_interval_s: float = Field(
        default=10.0,
        gt=0,
        description="The next look while a crawl, a training run or a rollout is in flight.",
    )
    backoff_base_s: float = Field(
        default=5.0, gt=0, description="The first retry after a missing dependency (Postgres, KubeRay)."
    )
    backoff_max_s: float = Field(default=300.0, gt=0, description="The longest wait between such retries.")
    field_manager: str = Field(
        default="twin-operator", min_length=1, description="The server-side apply field manager."
    )


class OperatorSettings(OperatorConfig, BaseSettings):
    """The operator's environment: ``TWIN_OPERATOR_<FIELD>``, sections joined with ``__``
    (``TWIN_OPERATOR_IMAGES__CRAWLER``), lists and maps as JSON. The chart renders its values into
    these variables, so every field's description is also the values file's documentation."""

    model_config = SettingsConfigDict(
        env_prefix="TWIN_OPERATOR_", env_nested_delimiter="__", extra="ignore", frozen=True
    )

    namespaces: tuple[str, ...] = Field(
        default=(), description="Namespaces to watch; empty: all of them (kopf --all-namespaces)."
    )
    peering: str | None = Field(
        default=None,
        description="A kopf peering name: replicas elect a leader through it (set when replicas > 1); "
        "unset: --standalone.",
    )

    def config(self) -> OperatorConfig:
        """The part ``reconcile`` sees, without the process's own concerns."""
        return OperatorConfig.model_validate(self.model_dump(include=set(OperatorConfig.model_fields)))


__all__ = [
    "DatabasePeerConfig",
    "DnsPeerConfig",
    "ImagesConfig",
    "JobMetricsConfig",
    "OperatorConfig",
    "OperatorSettings",
    "Resources",
    "ResourcesConfig",
    "ServiceAccountsConfig",
]

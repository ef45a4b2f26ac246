"""The Helm chart's values (``charts/twin/values.yaml``) as a pydantic model: one place for every
value's default, type and documentation.

``python -m twin.devtools.chart_values --write`` renders ``values.yaml`` (each field's description
becomes its comment) and ``values.schema.json`` (which ``helm install``/``lint``/``template`` enforce)
from it; a unit test fails when the committed files differ from the model. Wire names are camelCase,
as Helm users expect.

Each optional component (Postgres, Kafka, Kafka Connect, the feature workers, MLflow) is either
rendered by the chart (``<component>.enabled``, the default: a self-contained install) or delegated
to what a platform team already runs (CloudNativePG, Strimzi, a managed MLflow) through
``external.*`` and ``settings.existingSecret``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from twin.devtools.chart_values_monitoring import JobMetrics, Monitoring

APP_IMAGES = "ghcr.io/llm-twin"
PullPolicy = Literal["Always", "IfNotPresent", "Never"]
Quantity = str | int | float
Namespace = Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")]


class Values(BaseModel):
    """Base of every values section: camelCase keys, unknown keys rejected (a typo fails the install)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class Image(Values):
    """A container image."""

    repository: str = Field(min_length=1, description="The image's repository.")
    tag: str = Field(default="", description='The tag; "": the chart\'s appVersion (our images only).')
    pull_policy: PullPolicy = Field(default="IfNotPresent", description="Always, IfNotPresent or Never.")


def _app_image(role: str) -> Any:
    return Field(
        default_factory=lambda: Image(repository=f"{APP_IMAGES}/{role}"), description=f"The {role} image."
    )


def _image(repository: str, tag: str, what: str) -> Any:
    return Field(
        default_factory=lambda: Image(repository=repository, tag=tag), description=f"The {what} image."
    )


class Resources(Values):
    """Requests and limits of a container (Kubernetes quantities)."""

    requests: dict[str, Quantity] = Field(default_factory=dict, description="What the scheduler reserves.")
    limits: dict[str, Quantity] = Field(default_factory=dict, description="The most it may use.")


def _resources(cpu: str, memory: str, limit: str) -> Any:
    return Field(
        default_factory=lambda: Resources(requests={"cpu": cpu, "memory": memory}, limits={"memory": limit}),
        description="Container resources.",
    )


class Placement(Values):
    """Where a component's pods may run."""

    node_selector: dict[str, str] = Field(default_factory=dict, description="Pod nodeSelector.")
    tolerations: list[dict[str, Any]] = Field(default_factory=list, description="Pod tolerations.")
    affinity: dict[str, Any] = Field(default_factory=dict, description="Pod affinity.")


class Storage(Values):
    """A PersistentVolumeClaim template."""

    size: str = Field(default="10Gi", description="Requested capacity.")
    storage_class: str = Field(default="", description='StorageClass name; "": the cluster default.')


class ServiceAccount(Values):
    """The operator's ServiceAccount."""

    create: bool = Field(default=True, description="Create it (false: use an existing one named below).")
    name: str = Field(default="", description='Its name; "": <fullname>-operator.')
    annotations: dict[str, str] = Field(default_factory=dict, description="e.g. a cloud IAM role binding.")


class Operator(Values):
    """The TwinProfile operator (kopf): reconciles each profile's crawl Jobs, RayJobs and RayServices."""

    image: Image = _app_image("operator")
    replicas: int = Field(
        default=1,
        ge=1,
        le=5,
        description="More than 1 turns on leader election (kopf peering): one is active.",
    )
    peering_name: str = Field(default="twin-operator", description="The kopf peering object's name.")
    reconcile_interval_seconds: float = Field(
        default=60, ge=1, le=3600, description="How often every profile is reconciled (drift, new data)."
    )
    liveness_port: int = Field(
        default=8080, ge=1024, le=65535, description="kopf's /healthz liveness endpoint (the probes)."
    )
    metrics_port: int = Field(default=9109, ge=1024, le=65535, description="Prometheus /metrics port.")
    service_account: ServiceAccount = Field(default_factory=ServiceAccount, description="Its identity.")
    resources: Resources = _resources("100m", "256Mi", "512Mi")
    placement: Placement = Field(default_factory=Placement, description="Scheduling of the operator pods.")
    pod_annotations: dict[str, str] = Field(default_factory=dict, description="Extra pod annotations.")
    extra_env: list[dict[str, Any]] = Field(
        default_factory=list, description="More env entries for the operator (name/value or valueFrom)."
    )


class ImageRef(Values):
    """An image of the pods the operator creates."""

    repository: str = Field(min_length=1, description="The image's repository.")
    tag: str = Field(default="", description='The tag; "": the chart\'s appVersion.')


def _ref(role: str, what: str) -> Any:
    return Field(default_factory=lambda: ImageRef(repository=f"{APP_IMAGES}/{role}"), description=what)


class WorkloadImages(Values):
    """The images of profile pods."""

    crawler: ImageRef = _ref("crawler", "Crawl Jobs and CronJobs (`twin crawl`, with Chromium).")
    training: ImageRef = _ref("training", "Training RayJobs: head, GPU workers and submitter.")
    serving: ImageRef = _ref("serving", "Serving RayServices: Ray Serve and the engine.")
    pull_policy: PullPolicy = Field(default="IfNotPresent", description="Their imagePullPolicy.")


class WorkloadServiceAccounts(Values):
    """Service accounts of profile pods, created by the chart in each profile namespace without any
    RBAC and without a mounted token."""

    crawler: str = Field(default="twin-crawler", min_length=1, description="Crawl pods' account.")
    ray: str = Field(
        default="",
        description="Ray pods' account; \"\": KubeRay's own (it grants a RayService's autoscaler what it "
        "needs). Set: the chart creates it, with no RBAC: fine when Ray autoscaling is off.",
    )


def _pod(cpu: str, memory: str, limit: str, what: str) -> Any:
    return Field(
        default_factory=lambda: Resources(requests={"cpu": cpu, "memory": memory}, limits={"memory": limit}),
        description=what,
    )


class WorkloadResources(Values):
    """Requests and limits of profile pods; GPU limits come from each profile's GPU counts."""

    crawler: Resources = _pod("500m", "1Gi", "2Gi", "A crawl pod (Chromium).")
    training_head: Resources = _pod("1", "4Gi", "8Gi", "The training Ray head (dataset, evaluation).")
    training_worker: Resources = _pod("4", "16Gi", "32Gi", "One GPU training worker, besides its GPU.")
    serving_head: Resources = _pod("1", "2Gi", "4Gi", "The serving Ray head (Serve controller, proxy).")
    serving_worker: Resources = _pod("2", "8Gi", "16Gi", "One serving worker, besides its GPUs.")
    submitter: Resources = _pod("200m", "256Mi", "512Mi", "The RayJob's submitter pod.")


class CrawlJobs(Values):
    """Crawl Jobs."""

    history: int = Field(default=3, ge=0, le=50, description="Finished crawl Jobs kept per profile.")
    backoff_limit: int = Field(default=2, ge=0, le=10, description="Retries of a failed crawl pod.")
    deadline_seconds: int = Field(default=21600, ge=60, description="activeDeadlineSeconds of a crawl Job.")


class DnsPeer(Values):
    """The cluster DNS crawl pods may reach (their NetworkPolicy)."""

    namespace: str = Field(default="kube-system", min_length=1, description="The DNS pods' namespace.")
    pod_labels: dict[str, str] = Field(
        default_factory=lambda: {"k8s-app": "kube-dns"}, description="Labels of the DNS pods."
    )


class Workloads(Values):
    """What the operator puts into each profile's pods. Images, commands and service accounts come
    from here, never from a TwinProfile: a user who may create profiles cannot run other code. Each
    value becomes a TWIN_OPERATOR_* variable of the operator."""

    images: WorkloadImages = Field(default_factory=WorkloadImages, description="Images.")
    service_accounts: WorkloadServiceAccounts = Field(
        default_factory=WorkloadServiceAccounts, description="Service accounts."
    )
    resources: WorkloadResources = Field(default_factory=WorkloadResources, description="Resources.")
    crawl: CrawlJobs = Field(default_factory=CrawlJobs, description="Crawl Jobs.")
    training_deadline_seconds: int = Field(
        default=86400, ge=60, description="activeDeadlineSeconds of a training RayJob."
    )
    ray_version: str = Field(default="", description='rayVersion of the Ray clusters; "": KubeRay\'s guess.')
    run_as_user: int = Field(default=1000, ge=1, description="UID of every profile pod (the images' user).")
    run_as_group: int = Field(default=1000, ge=1, description="GID of every profile pod.")
    dns_peer: DnsPeer = Field(default_factory=DnsPeer, description="The cluster DNS.")
    metrics: JobMetrics = Field(default_factory=JobMetrics, description="Crawl and training /metrics.")


class Settings(Values):
    """The shared twin settings (TWIN_* variables) every workload reads: a Secret for the DSN and the
    MLflow URI, a ConfigMap for the rest. Pods read them in their own namespace, so the chart writes
    both into the release namespace, every watchNamespaces entry and every profileNamespaces entry."""

    existing_secret: str = Field(
        default="",
        description="A Secret you manage instead of the chart's: TWIN_DATABASE__DSN, "
        "TWIN_TRAINING__MLFLOW_TRACKING_URI; it must exist in every profile namespace.",
    )
    env: dict[str, str] = Field(
        default_factory=dict, description="More non-secret TWIN_* settings, e.g. TWIN_SERVING__ENGINE: vllm."
    )


class SecretKey(Values):
    """A key of a Secret in the release namespace."""

    name: str = Field(default="", description="The Secret's name.")
    key: str = Field(default="password", description="The key.")


class ExternalDatabase(Values):
    """A Postgres (pgvector 0.8, wal_level=logical) you run, e.g. with CloudNativePG."""

    dsn: str = Field(
        default="",
        description="postgresql://user:password@host:5432/db for every workload; or leave it empty and "
        "put TWIN_DATABASE__DSN in settings.existingSecret (better: no password in values).",
    )
    host: str = Field(default="", description="Kafka Connect (connect.enabled): the database host.")
    port: int = Field(default=5432, ge=1, le=65535, description="Kafka Connect: its port.")
    database: str = Field(default="twin", description="Kafka Connect: the database name.")
    username: str = Field(default="", description="Kafka Connect: a user with REPLICATION.")
    password_secret: SecretKey = Field(default_factory=SecretKey, description="Kafka Connect: its password.")
    peer: dict[str, Any] = Field(
        default_factory=dict,
        description="Where crawl pods may reach it (their NetworkPolicy): "
        "{namespace: cnpg, podLabels: {cnpg.io/cluster: twin}, port: 5432}.",
    )


class ExternalKafka(Values):
    """Kafka you run, e.g. with Strimzi."""

    bootstrap_servers: str = Field(default="", description="host:port[,host:port] of the brokers.")


class ExternalMlflow(Values):
    """An MLflow tracking server you run."""

    tracking_uri: str = Field(default="", description="e.g. http://mlflow.mlops.svc:5000.")


class External(Values):
    """Services run outside this chart: used when the matching component is disabled."""

    database: ExternalDatabase = Field(
        default_factory=ExternalDatabase, description="When postgres.enabled=false."
    )
    kafka: ExternalKafka = Field(default_factory=ExternalKafka, description="When kafka.enabled=false.")
    mlflow: ExternalMlflow = Field(default_factory=ExternalMlflow, description="When mlflow.enabled=false.")


class Postgres(Values):
    """Postgres 17 with pgvector (one StatefulSet replica, wal_level=logical for Debezium). For HA,
    backups and failover run CloudNativePG instead and set external.database."""

    enabled: bool = Field(default=True, description="Render it (false: external.database).")
    image: Image = _image("pgvector/pgvector", "0.8.1-pg17", "Postgres + pgvector")
    database: str = Field(default="twin", description="The twin database.")
    username: str = Field(
        default="twin", description="Its owner (a superuser: creates the vector extension)."
    )
    password: str = Field(default="", description='"": generated at install and kept across upgrades.')
    existing_secret: str = Field(default="", description='A Secret with key "password" instead.')
    storage: Storage = Field(default_factory=Storage, description="Its data volume.")
    resources: Resources = _resources("250m", "512Mi", "2Gi")
    placement: Placement = Field(default_factory=Placement, description="Scheduling.")


class Kafka(Values):
    """One Kafka broker in KRaft mode (combined broker and controller, replication factor 1). For a
    production cluster run Strimzi and set external.kafka."""

    enabled: bool = Field(default=True, description="Render it (false: external.kafka).")
    image: Image = _image("apache/kafka", "4.1.1", "Kafka")
    cluster_id: str = Field(
        default="bGxtLXR3aW4ta3JhZnQtMA",
        pattern=r"^[A-Za-z0-9_-]{22}$",
        description="The KRaft cluster id (22 base64url characters).",
    )
    heap: str = Field(default="-Xms512m -Xmx512m", description="KAFKA_HEAP_OPTS.")
    storage: Storage = Field(default_factory=Storage, description="Its log volume.")
    resources: Resources = _resources("250m", "1Gi", "1536Mi")
    placement: Placement = Field(default_factory=Placement, description="Scheduling.")


class Connector(Values):
    """The Debezium Postgres connector on raw_documents (the features' change feed)."""

    name: str = Field(default="twin-raw-documents", description="The connector's name in Connect.")
    topic_prefix: str = Field(
        default="twin", description="Topics are <prefix>.public.raw_documents (the workers read it)."
    )
    slot_name: str = Field(default="twin_features", description="Its logical replication slot.")
    publication: str = Field(default="twin_features", description="Its publication.")
    partitions: int = Field(default=1, ge=1, le=256, description="Partitions of the topic it creates.")


class Connect(Values):
    """Kafka Connect with Debezium's Postgres connector, registered by a post-install Job over
    Connect's REST API. With Strimzi, disable it and declare a KafkaConnector instead."""

    enabled: bool = Field(default=True, description="Render the Connect worker and the registration Job.")
    image: Image = _image("quay.io/debezium/connect", "3.4.3.Final", "Kafka Connect + Debezium")
    heap: str = Field(default="-Xms256m -Xmx768m", description="KAFKA_HEAP_OPTS.")
    replication_factor: int = Field(
        default=1, ge=1, le=5, description="Of Connect's own topics and the topics the connector creates."
    )
    connector: Connector = Field(default_factory=Connector, description="The connector it runs.")
    resources: Resources = _resources("250m", "1Gi", "1536Mi")
    placement: Placement = Field(default_factory=Placement, description="Scheduling.")


class Features(Values):
    """The feature workers: `twin features` as one Kafka consumer group (clean, chunk, embed)."""

    enabled: bool = Field(default=True, description="Render them.")
    image: Image = _app_image("features")
    replicas: int = Field(default=1, ge=0, le=64, description="Consumers in the group (partitions cap it).")
    group_id: str = Field(default="twin-features", description="The consumer group.")
    embed_workers: int = Field(default=1, ge=1, le=64, description="Ray actors per replica with the model.")
    metrics_port: int = Field(default=9108, ge=1024, le=65535, description="Prometheus metrics port.")
    resources: Resources = _resources("1", "2Gi", "4Gi")
    placement: Placement = Field(default_factory=Placement, description="Scheduling.")


class Mlflow(Values):
    """MLflow's tracking server and model registry: its backend store is a database on the chart's
    Postgres; artifacts (the adapters) on a volume served through the server."""

    enabled: bool = Field(default=True, description="Render it (false: external.mlflow).")
    image: Image = _app_image("mlflow")
    port: int = Field(default=5000, ge=1024, le=65535, description="Its HTTP port.")
    database: str = Field(default="mlflow", description="Its database on the chart's Postgres.")
    existing_secret: str = Field(
        default="",
        description='Without the chart\'s Postgres: a Secret with key "backendStoreUri" (postgresql://...).',
    )
    storage: Storage = Field(default_factory=lambda: Storage(size="20Gi"), description="Artifacts volume.")
    resources: Resources = _resources("250m", "512Mi", "1Gi")
    placement: Placement = Field(default_factory=Placement, description="Scheduling.")


class ChartValues(Values):
    """Everything `helm install twin charts/twin` reads."""

    global_: dict[str, Any] = Field(
        default_factory=dict, alias="global", description="Helm's global values (accepted, unused)."
    )
    name_override: str = Field(default="", description='Replaces "twin" in object names.')
    fullname_override: str = Field(default="", description="Replaces <release>-twin in object names.")
    image_pull_secrets: list[str] = Field(
        default_factory=list, description="Secret names for private registries (every pod)."
    )
    watch_namespaces: list[Namespace] = Field(
        default_factory=list,
        description="Namespaces the operator watches; []: all (a ClusterRole). Set: a Role in each.",
    )
    profile_namespaces: list[Namespace] = Field(
        default_factory=list,
        description="More namespaces that get the crawl/Ray ServiceAccounts and the settings (the "
        "release namespace and watchNamespaces always do).",
    )
    operator: Operator = Field(default_factory=Operator, description="The operator.")
    workloads: Workloads = Field(default_factory=Workloads, description="Profile pods.")
    settings: Settings = Field(default_factory=Settings, description="Shared TWIN_* settings.")
    external: External = Field(default_factory=External, description="Services you run yourself.")
    postgres: Postgres = Field(default_factory=Postgres, description="Postgres + pgvector.")
    kafka: Kafka = Field(default_factory=Kafka, description="Kafka (KRaft).")
    connect: Connect = Field(default_factory=Connect, description="Kafka Connect + Debezium.")
    features: Features = Field(default_factory=Features, description="The feature workers.")
    mlflow: Mlflow = Field(default_factory=Mlflow, description="MLflow.")
    monitoring: Monitoring = Field(default_factory=Monitoring, description="Prometheus and Grafana.")

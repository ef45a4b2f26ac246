"""The TwinProfile resource: the same schema for a YAML file, ``kubectl apply`` and the CRD.

Fields are camelCase on the wire (Kubernetes style) and snake_case in Python. Unknown fields are
rejected so a typo, or a secret pasted into the spec, is an error rather than silently ignored:
credentials (LinkedIn login, API keys) belong in settings or a Kubernetes Secret, never here: on a
cluster the spec names a Secret (:class:`~twin.domain.profile_cluster.SecretRef`), never a value.

The models are the single source of the resource's schema: their defaults, bounds and descriptions
are rendered into the CRD by :mod:`twin.domain.crd` (``twin crd --write``), with the rules only the
API server applies (CEL) attached through ``json_schema_extra``. The cluster-only parts (Secret
references, placement, the retraining policy) are in :mod:`twin.domain.profile_cluster`.

Source URLs are kept as strings and validated per source when crawled, so one malformed link
fails that source with a clear error while the profile's other sources are still crawled.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from twin.domain.documents import Platform
from twin.domain.errors import InvalidSourceURL, InvalidSpec
from twin.domain.profile_cluster import (
    SOURCE_URL_RULES,
    ApiKeysSecretRef,
    Placement,
    RetrainingSpec,
    SecretRef,
    SpecModel,
    Toleration,
    check_cron,
    cron_rule,
)
from twin.domain.urls import guess_platform, validate_url

API_GROUP = "llmtwin.dev"
API_VERSION = f"{API_GROUP}/v1alpha1"
KIND = "TwinProfile"

# RFC 1123 label: what Kubernetes accepts as a resource name, and what we use as the profile key.
NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
_NAME_RE = re.compile(NAME_PATTERN)
# What only the operator reads in a TrainingSpec: left out of a run's identity (run_key).
CLUSTER_ONLY_TRAINING_FIELDS = frozenset({"gpu_type", "node_selector", "tolerations", "retraining"})


class SourceSpec(SpecModel):
    """One place the owner publishes: a profile, publication, repository or any page."""

    url: str = Field(
        min_length=1,
        max_length=2048,
        json_schema_extra={"x-kubernetes-validations": SOURCE_URL_RULES},
        description="The source's address, http or https. Checked again when crawled, so a bad one fails "
        "only its own source; on a cluster the API server also refuses credentials in the URL and hosts "
        "inside the cluster (localhost, private and link-local addresses).",
    )
    platform: Platform | None = Field(
        default=None,
        description="Needed only where the host does not say (custom domains, GitHub Enterprise, test "
        "fixtures); unset: guessed from the URL.",
    )
    max_items: int | None = Field(
        default=None,
        ge=1,
        le=100_000,
        description="Per-source cap on stored items; the crawl-wide cap still applies.",
    )

    def resolved_platform(self) -> Platform:
        return self.platform or guess_platform(self.url)

    def checked_url(self) -> str:
        """The URL, validated; raises :class:`InvalidSourceURL` (a per-source, permanent error)."""
        return validate_url(self.url)


class OwnerSpec(SpecModel):
    """The person the twin writes as."""

    display_name: str = Field(
        min_length=1,
        max_length=200,
        description="The owner's name, as the prompts the twin is trained and served with say it.",
    )
    aliases: list[Annotated[str, StringConstraints(min_length=1, max_length=200)]] = Field(
        default_factory=list,
        max_length=50,
        description="How the owner signs their writing; keeps the owner's own items where a platform "
        "lists other people's too (reposts, co-authored articles).",
    )


class CrawlSpec(SpecModel):
    """When and how much to crawl."""

    schedule: str | None = Field(
        default=None,
        max_length=100,
        json_schema_extra=cron_rule(),
        description="A standard five-field cron expression for the operator's CronJob; unset: crawl on "
        "spec change only.",
    )
    max_items: int = Field(default=500, ge=1, le=100_000, description="Items stored per crawl, all sources.")

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        return check_cron(value)


class LoraSpec(SpecModel):
    """The LoRA adapter trained on top of the frozen base model."""

    rank: int = Field(default=16, ge=1, le=1024, description="The adapter's rank (r).")
    alpha: int = Field(
        default=32, ge=1, le=65_536, description="LoRA alpha: the update is scaled by alpha / rank."
    )
    dropout: float = Field(default=0.05, ge=0.0, lt=1.0, description="Dropout on the adapter's input.")
    target_modules: list[Annotated[str, StringConstraints(min_length=1, max_length=200)]] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"],
        min_length=1,
        max_length=64,
        description="The base model's modules that get an adapter.",
    )


class TrainingSpec(Placement):
    """LoRA fine-tuning of ``baseModel`` on the owner's writing (see ``twin.domain.training``).

    Placement (``gpuType``, ``nodeSelector``, ``tolerations``) and ``retraining`` are read by the
    operator only: where a run's pods go and when a run starts, not what it computes.
    """

    lora: LoraSpec = Field(default_factory=LoraSpec, description="The adapter's shape.")
    learning_rate: float = Field(
        default=2e-4, gt=0.0, lt=1.0, description="The optimizer's peak learning rate."
    )
    epochs: float = Field(default=3.0, gt=0.0, le=100.0, description="Passes over the training samples.")
    max_length: int = Field(
        default=512,
        ge=16,
        le=131_072,
        description="Tokens per sample, prompt included (longer samples lose the end of their response).",
    )
    batch_size: int = Field(default=8, ge=1, le=1024, description="Samples per batch, per worker.")
    gradient_accumulation_steps: int = Field(
        default=1, ge=1, le=1024, description="Batches accumulated per optimizer step."
    )
    warmup_ratio: float = Field(
        default=0.05, ge=0.0, lt=1.0, description="Share of the steps the learning rate warms up over."
    )
    gpus: int = Field(
        default=1,
        ge=0,
        le=64,
        description="GPUs for the run: one Ray Train worker per GPU. 0, or none in the cluster: one CPU "
        "worker.",
    )
    strategy: Literal["ddp", "fsdp"] = Field(
        default="ddp",
        description="ddp: a model copy per GPU; fsdp: the base model sharded across GPUs (for models too "
        "large for one).",
    )
    quantization: Literal["auto", "none", "4bit"] = Field(
        default="auto",
        description="auto: QLoRA (4-bit base) when a GPU and bitsandbytes are present; 4bit: require it; "
        "none: never.",
    )
    retraining: RetrainingSpec = Field(
        default_factory=RetrainingSpec, description="When the operator starts a new training run."
    )

    def hyperparameters(self) -> dict[str, Any]:
        """The fields that change what a run computes (its identity), without placement and policy:
        moving a run to other nodes, or retraining on another schedule, is not a different run."""
        return self.model_dump(mode="json", exclude=set(CLUSTER_ONLY_TRAINING_FIELDS))


class ServingSpec(Placement):
    """The endpoint's scale and weights; operational limits are in the serving settings."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "self.minReplicas <= self.maxReplicas",
                    "message": "minReplicas must be less than or equal to maxReplicas",
                    "fieldPath": ".minReplicas",
                }
            ]
        }
    )

    min_replicas: int = Field(
        default=1, ge=0, le=100, description="Engine replicas kept running (0: scale to zero when idle)."
    )
    max_replicas: int = Field(default=2, ge=1, le=100, description="Engine replicas at most.")
    target_ongoing_requests: int = Field(
        default=8, ge=1, le=1024, description="Requests per replica the autoscaler aims at."
    )
    quantization: Literal["none", "fp8", "int8", "int4"] = Field(
        default="none",
        description="The engine's weight quantization (which modes exist depends on the engine and device).",
    )
    gpus: int = Field(default=0, ge=0, le=16, description="GPUs per engine replica (0: CPU).")
    api_keys_secret_ref: ApiKeysSecretRef | None = Field(
        default=None,
        description="The Secret whose key holds the endpoint's API keys, mounted as a file "
        "(TWIN_SERVING__API_KEYS_FILE); unset: the serving settings decide.",
    )

    @model_validator(mode="after")
    def _replica_bounds(self) -> ServingSpec:
        if self.min_replicas > self.max_replicas:
            raise ValueError("minReplicas must be less than or equal to maxReplicas")
        return self


class TwinProfileSpec(SpecModel):
    """What the owner wants: whose writing, where it is, and how the twin is trained and served."""

    owner: OwnerSpec = Field(description="The person the twin writes as.")
    sources: list[SourceSpec] = Field(
        min_length=1,
        max_length=200,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["url"]},
        description="Where the owner publishes; each URL listed once.",
    )
    base_model: str = Field(
        default="HuggingFaceTB/SmolLM2-135M-Instruct",
        min_length=1,
        max_length=512,
        description="The model fine-tuned and served: a Hugging Face hub name or a local path.",
    )
    crawl: CrawlSpec = Field(default_factory=CrawlSpec, description="When and how much to crawl.")
    training: TrainingSpec = Field(default_factory=TrainingSpec, description="LoRA fine-tuning.")
    serving: ServingSpec = Field(default_factory=ServingSpec, description="The endpoint's scale and weights.")
    credentials_secret_ref: SecretRef | None = Field(
        default=None,
        description="A Secret in the profile's namespace with the crawl pods' platform logins under "
        "the keys TWIN_LINKEDIN__EMAIL, TWIN_LINKEDIN__PASSWORD and TWIN_GITHUB__TOKEN (only these "
        "keys reach the pods).",
    )
    retain_data_on_delete: bool = Field(
        default=False,
        description="Keep the profile's stored documents, chunks, datasets and registered versions "
        "when the TwinProfile is deleted.",
    )

    @field_validator("sources")
    @classmethod
    def _distinct_sources(cls, sources: list[SourceSpec]) -> list[SourceSpec]:
        seen: set[str] = set()
        for source in sources:
            key = source.url.strip()
            if key in seen:
                raise ValueError(f"source {key!r} is listed twice")
            seen.add(key)
        return sources


class ObjectMeta(BaseModel):
    """The parts of Kubernetes' metadata the twin reads; the rest is kept as given."""

    model_config = ConfigDict(extra="allow", frozen=True)

    name: str = Field(description="The profile's name: a lower-case RFC 1123 label, the profile key.")
    namespace: str | None = Field(default=None, description="The profile's namespace (on a cluster).")

    @field_validator("name")
    @classmethod
    def _dns_label(cls, name: str) -> str:
        if not _NAME_RE.match(name):
            raise ValueError(f"name {name!r} must be a lower-case RFC 1123 label (a-z, 0-9, '-', max 63)")
        return name


class TwinProfile(BaseModel):
    """A whole TwinProfile resource as written in YAML or read from the API server."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True)

    api_version: Literal["llmtwin.dev/v1alpha1"] = Field(description="The resource's API group and version.")
    kind: Literal["TwinProfile"] = Field(description="The resource's kind.")
    metadata: ObjectMeta = Field(description="The resource's name and namespace.")
    spec: TwinProfileSpec = Field(description="What the owner wants.")

    @property
    def name(self) -> str:
        return self.metadata.name


def parse_profile(data: Any) -> TwinProfile:
    """Validate a decoded TwinProfile document; raise :class:`InvalidSpec` listing every problem."""
    if not isinstance(data, dict):
        raise InvalidSpec(f"a TwinProfile must be a mapping, got {type(data).__name__}")
    try:
        return TwinProfile.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}" for err in exc.errors()
        )
        raise InvalidSpec(f"invalid TwinProfile: {problems}") from exc


__all__ = [
    "API_VERSION",
    "KIND",
    "ApiKeysSecretRef",
    "CrawlSpec",
    "InvalidSourceURL",
    "LoraSpec",
    "OwnerSpec",
    "Placement",
    "RetrainingSpec",
    "SecretRef",
    "ServingSpec",
    "SourceSpec",
    "Toleration",
    "TrainingSpec",
    "TwinProfile",
    "TwinProfileSpec",
    "parse_profile",
]

"""The TwinProfile resource: the same schema for a YAML file, ``kubectl apply`` and the CRD.

Fields are camelCase on the wire (Kubernetes style) and snake_case in Python. Unknown fields are
rejected so a typo, or a secret pasted into the spec, is an error rather than silently ignored:
credentials (LinkedIn login, API keys) belong in settings or a Kubernetes Secret, never here.

Source URLs are kept as strings and validated per source when crawled, so one malformed link
fails that source with a clear error while the profile's other sources are still crawled.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic.alias_generators import to_camel

from twin.domain.documents import Platform
from twin.domain.errors import InvalidSourceURL, InvalidSpec
from twin.domain.urls import guess_platform, validate_url

API_GROUP = "llmtwin.dev"
API_VERSION = f"{API_GROUP}/v1alpha1"
KIND = "TwinProfile"

# RFC 1123 label: what Kubernetes accepts as a resource name, and what we use as the profile key.
_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


class _Spec(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


class SourceSpec(_Spec):
    """One place the owner publishes: a profile, publication, repository or any page."""

    url: str = Field(
        min_length=1,
        max_length=2048,
        description="The source's address; validated when crawled, so a bad one fails only its own source.",
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


class OwnerSpec(_Spec):
    """The person the twin writes as."""

    display_name: str = Field(
        min_length=1,
        max_length=200,
        description="The owner's name, as the prompts the twin is trained and served with say it.",
    )
    aliases: list[str] = Field(
        default_factory=list,
        description="How the owner signs their writing; keeps the owner's own items where a platform "
        "lists other people's too (reposts, co-authored articles).",
    )


class CrawlSpec(_Spec):
    """When and how much to crawl."""

    schedule: str | None = Field(
        default=None,
        description="A standard five-field cron expression for the operator's CronJob; unset: crawl on "
        "spec change only.",
    )
    max_items: int = Field(default=500, ge=1, le=100_000, description="Items stored per crawl, all sources.")


class LoraSpec(_Spec):
    """The LoRA adapter trained on top of the frozen base model."""

    rank: int = Field(default=16, ge=1, le=1024, description="The adapter's rank (r).")
    alpha: int = Field(default=32, ge=1, description="LoRA alpha: the update is scaled by alpha / rank.")
    dropout: float = Field(default=0.05, ge=0.0, lt=1.0, description="Dropout on the adapter's input.")
    target_modules: list[str] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"],
        description="The base model's modules that get an adapter.",
    )


class TrainingSpec(_Spec):
    """LoRA fine-tuning of ``baseModel`` on the owner's writing (see ``twin.domain.training``)."""

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


class ServingSpec(_Spec):
    """The endpoint's scale and weights; operational limits are in the serving settings."""

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


class TwinProfileSpec(_Spec):
    """What the owner wants: whose writing, where it is, and how the twin is trained and served."""

    owner: OwnerSpec = Field(description="The person the twin writes as.")
    sources: list[SourceSpec] = Field(
        min_length=1, max_length=200, description="Where the owner publishes; each URL listed once."
    )
    base_model: str = Field(
        default="HuggingFaceTB/SmolLM2-135M-Instruct",
        min_length=1,
        description="The model fine-tuned and served: a Hugging Face hub name or a local path.",
    )
    crawl: CrawlSpec = Field(default_factory=CrawlSpec, description="When and how much to crawl.")
    training: TrainingSpec = Field(default_factory=TrainingSpec, description="LoRA fine-tuning.")
    serving: ServingSpec = Field(default_factory=ServingSpec, description="The endpoint's scale and weights.")

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
    "CrawlSpec",
    "InvalidSourceURL",
    "LoraSpec",
    "OwnerSpec",
    "ServingSpec",
    "SourceSpec",
    "TrainingSpec",
    "TwinProfile",
    "TwinProfileSpec",
    "parse_profile",
]

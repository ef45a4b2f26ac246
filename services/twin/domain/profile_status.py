"""A TwinProfile's status: what the operator observed and decided, as ``kubectl get twin`` shows it.

The operator's ``reconcile`` builds the status (its wire form, camelCase); this model is its schema,
rendered into the CRD's status subresource by :mod:`twin.domain.crd`, and what tests validate a
status against. Every figure in it is observed (Job and RayJob states, the stores' counts, the
registry's champion), never assumed.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

Phase = Literal["Pending", "Crawling", "Processing", "Training", "Ready", "Degraded", "Invalid"]
ConditionStatus = Literal["True", "False", "Unknown"]
# The conditions every profile carries, in the order its pipeline reaches them.
CONDITION_TYPES = ("SourcesCrawled", "FeaturesReady", "DatasetReady", "ModelTrained", "Serving")
# Kubernetes' own rules for a condition's type and reason (metav1.Condition).
_CONDITION_TYPE = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)
_REASON = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"


class _Status(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


class Condition(_Status):
    """One aspect of the profile's progress, with why it is so (metav1.Condition's shape)."""

    type: str = Field(
        min_length=1,
        max_length=316,
        pattern=_CONDITION_TYPE,
        description="SourcesCrawled, FeaturesReady, DatasetReady, ModelTrained or Serving.",
    )
    status: ConditionStatus = Field(description="True, False or Unknown.")
    reason: str = Field(
        min_length=1, max_length=1024, pattern=_REASON, description="Why, as one CamelCase word."
    )
    message: str = Field(default="", max_length=32_768, description="Why, for a person.")
    observed_generation: int | None = Field(
        default=None, ge=0, description="The spec generation this condition was computed from."
    )
    last_transition_time: datetime = Field(description="When status last changed (RFC 3339).")


class CrawlStatus(_Status):
    """The profile's crawls and what the stores hold from them."""

    last_crawl_time: datetime | None = Field(default=None, description="When the last crawl finished.")
    job: str | None = Field(default=None, max_length=253, description="The latest crawl Job.")
    documents: int = Field(default=0, ge=0, description="Documents stored for the profile.")
    chunks: int = Field(default=0, ge=0, description="Chunks in the feature store for the profile.")


class DatasetStatus(_Status):
    """The instruction dataset the champion was (or the next run will be) trained on."""

    version: str | None = Field(default=None, max_length=253, description="The dataset version.")


class ChampionStatus(_Status):
    """The registered version the endpoint serves."""

    version: int = Field(ge=0, description="The registry's champion version.")
    held_out: dict[str, float] = Field(
        default_factory=dict,
        max_length=64,
        description="Its figures on the held-out writing (perplexity, style fidelity...).",
    )


class TrainingStatus(_Status):
    """The latest training RayJob."""

    job: str | None = Field(default=None, max_length=253, description="The latest training RayJob.")
    phase: str | None = Field(
        default=None, max_length=64, description="Its phase: Pending, Running, Succeeded or Failed."
    )


class TwinProfileStatus(_Status):
    """What the operator last observed for the profile."""

    observed_generation: int | None = Field(
        default=None, ge=0, description="The spec generation the status was computed from."
    )
    phase: Phase | None = Field(
        default=None,
        description="Pending, Crawling, Processing, Training, Ready, Degraded (a dependency missing or a "
        "step failed) or Invalid (the spec can never work; the conditions say why).",
    )
    sources: int | None = Field(default=None, ge=0, description="Sources in the spec.")
    conditions: list[Condition] = Field(
        default_factory=list,
        max_length=32,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
        description="SourcesCrawled, FeaturesReady, DatasetReady, ModelTrained and Serving.",
    )
    crawl: CrawlStatus | None = Field(default=None, description="Crawls and stored counts.")
    dataset: DatasetStatus | None = Field(default=None, description="The instruction dataset.")
    champion: ChampionStatus | None = Field(default=None, description="The version served.")
    training: TrainingStatus | None = Field(default=None, description="The latest training run.")
    endpoint: str | None = Field(
        default=None,
        max_length=2048,
        description="The OpenAI-compatible endpoint inside the cluster "
        "(http://twin-<name>.<namespace>.svc:8000/v1).",
    )


__all__ = [
    "CONDITION_TYPES",
    "ChampionStatus",
    "Condition",
    "ConditionStatus",
    "CrawlStatus",
    "DatasetStatus",
    "Phase",
    "TrainingStatus",
    "TwinProfileStatus",
]

"""The model registry's vocabulary: registered adapter versions, aliases, and where a profile's
models and runs are filed.

Pure names and values shared by training (which registers versions), serving (which follows an
alias) and the registry adapter (:mod:`twin.adapters.mlflow_store`) that stores them; the port is
:class:`twin.ports.ModelRegistry`.

- one registered model per profile, :func:`model_name` (``twin-<profile>``), whose versions are
  LoRA adapters tagged with their figures (held-out perplexities, style scores) and lineage
  (dataset version, base model, run key);
- aliases: :data:`CANDIDATE` follows the newest trained version, :data:`CHAMPION` the one serving
  loads (moved by the promotion gate or by hand);
- one experiment per profile, :func:`experiment_name` (``twin/<profile>``), holding its dataset
  versions and training runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

CANDIDATE = "candidate"
CHAMPION = "champion"


def model_name(profile: str) -> str:
    """The registered model holding the profile's adapters."""
    return f"twin-{profile}"


def experiment_name(profile: str) -> str:
    """The experiment holding the profile's dataset versions and training runs."""
    return f"twin/{profile}"


@dataclass(frozen=True)
class ModelVersionInfo:
    """One registered adapter version, as the registry and serving see it."""

    profile: str
    version: int
    run_id: str
    source: str
    aliases: tuple[str, ...]
    tags: dict[str, str]

    @property
    def base_model(self) -> str:
        return self.tags.get("base_model", "")

    @property
    def dataset_version(self) -> str:
        return self.tags.get("dataset_version", "")

    def metric(self, name: str) -> float | None:
        value = self.tags.get(name)
        return float(value) if value not in (None, "") else None


@dataclass(frozen=True)
class TrainedRun:
    """A finished training run that registered a version: what makes ``twin train`` idempotent."""

    run_id: str
    version: int  # the model version it registered
    metrics: dict[str, float] = field(default_factory=dict)

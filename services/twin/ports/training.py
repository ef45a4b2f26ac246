"""Training's ports: the model registry (datasets, runs, versions), training runs, the judge and
the Train pipeline's dependencies.

Part of :mod:`twin.ports`; import them from there.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from twin.domain.dataset import Dataset, InstructionGenerator
from twin.domain.registry import ModelVersionInfo, TrainedRun
from twin.ports.stores import TrainingSnapshot

# Rank 0 of a Ray Train run logs its step metrics through this: (name, value, step) triples, sent
# as one batch. It crosses process boundaries, so implementations must pickle.
MetricWriter = Callable[[Sequence[tuple[str, float, int]]], None]


class TrainingRun(Protocol):
    """One training run, open for the duration of :meth:`ModelRegistry.training_run`."""

    run_id: str

    def metric_writer(self) -> MetricWriter:
        """A picklable writer of this run's step metrics (the Ray Train worker holds it)."""
        ...

    def log_metrics(self, metrics: Mapping[str, float]) -> None:
        """Record run-level figures (step 0): evaluation, throughput, the judge's score."""
        ...

    def log_adapter(self, directory: Path) -> None:
        """Upload the trained adapter (what a registered version points at)."""
        ...

    def log_json(self, data: Any, artifact_file: str) -> None:
        """Keep ``data`` as a JSON artifact of the run (e.g. ``eval/generations.json``)."""
        ...

    def set_tags(self, tags: Mapping[str, Any]) -> None: ...


class ModelRegistry(Protocol):
    """What training and serving need from the registry (MLflow: :mod:`twin.adapters.mlflow_store`):
    dataset versions with their lineage, training runs keyed by run key, and one registered model
    per profile whose versions are adapters, moved between by aliases (see
    :mod:`twin.domain.registry`)."""

    def model_name(self, profile: str) -> str:
        """The registered model's name (:func:`twin.domain.registry.model_name`)."""
        ...

    # dataset versions
    def find_dataset(self, profile: str, version: str) -> str | None:
        """The id of dataset ``version`` if it was stored completely before."""
        ...

    def save_dataset(self, dataset: Dataset, params: Mapping[str, Any]) -> str:
        """Store the dataset version (samples with lineage, input documents, stats) and the
        parameters it was built with; return its id."""
        ...

    def load_dataset(self, dataset_id: str) -> Dataset: ...

    def latest_dataset(self, profile: str) -> str | None:
        """The newest dataset version stored completely for ``profile`` (None: none yet). Raises
        :class:`~twin.domain.errors.DependencyNotReady` when the registry cannot be reached, so a
        caller can tell "nothing stored" from "cannot look"."""
        ...

    def trained_dataset(self, info: ModelVersionInfo) -> Dataset:
        """The dataset version a registered version was trained on."""
        ...

    # training runs
    def find_training_run(self, profile: str, run_key: str) -> TrainedRun | None:
        """The finished run with ``run_key`` that registered a version, if any."""
        ...

    def training_run(
        self,
        profile: str,
        run_key: str,
        *,
        params: Mapping[str, Any],
        tags: Mapping[str, str],
        dataset: Dataset | None = None,
        dataset_id: str | None = None,
    ) -> AbstractContextManager[TrainingRun]:
        """A run with its parameters, tags and (when given) the stored dataset version as its input;
        it ends finished when the block completes and failed when it raises."""
        ...

    def download_run_adapter(self, run_id: str, dest: Path) -> Path:
        """A run's uploaded adapter, downloaded under ``dest`` (evaluation, before registering)."""
        ...

    # registered versions
    def register(
        self, profile: str, run_id: str, figures: Mapping[str, Any], *, aliases: Sequence[str] = ()
    ) -> ModelVersionInfo:
        """A new version from the run's adapter, tagged with ``figures`` (metrics and lineage), the
        ``aliases`` moved to it, and the run marked as having registered it."""
        ...

    def versions(self, profile: str) -> list[ModelVersionInfo]:
        """Every version with its aliases, oldest first ([] when none)."""
        ...

    def version(self, profile: str, version: int) -> ModelVersionInfo:
        """One version; an unknown one is :class:`~twin.domain.errors.InvalidSpec`."""
        ...

    def by_alias(self, profile: str, alias: str) -> ModelVersionInfo | None: ...

    def champion(self, profile: str) -> ModelVersionInfo | None:
        """The version serving loads (alias :data:`~twin.domain.registry.CHAMPION`)."""
        ...

    def set_alias(
        self, profile: str, alias: str, version: int, *, tags: Mapping[str, Any] | None = None
    ) -> None:
        """Move ``alias`` to ``version`` and tag that version with ``tags`` (who moved it, when)."""
        ...

    def tag_version(self, profile: str, version: int, tags: Mapping[str, Any]) -> None: ...

    def download_adapter(self, info: ModelVersionInfo, dest: Path) -> Path:
        """The version's adapter directory, downloaded under ``dest``."""
        ...

    # deletion (the operator's finalizer, when a TwinProfile goes)
    def purge(self, profile: str) -> RegistryPurge:
        """Delete everything filed for ``profile``: the registered model with every version and
        alias, and the dataset and training runs with their artifacts. Idempotent: a second call
        (or a profile that never trained) deletes nothing and reports zeros."""
        ...


@dataclass(frozen=True)
class RegistryPurge:
    """What :meth:`ModelRegistry.purge` deleted."""

    model_versions: int = 0
    runs: int = 0  # dataset and training runs, artifacts included


class Judge(Protocol):
    """An LLM rating how likely generated texts are by the author of reference texts, 1-10."""

    def score(self, references: Sequence[str], candidates: Sequence[str]) -> float | None:
        """The mean rating over the pairs it rated (None when it rated none)."""
        ...


@dataclass(frozen=True)
class TrainingDeps:
    """What the Train pipeline consumes, built by :func:`twin.wiring.training_deps`.

    Factories where the work happens later, elsewhere or maybe not at all: the feature store is
    opened only to build a dataset, the teacher and the judge are built only when used (a bad
    endpoint setting fails the step that needs it), and the evaluation Ray task rebuilds the
    registry and resolves the base model in its own process (so both factories pickle).
    """

    registry: ModelRegistry
    registry_factory: Callable[[], ModelRegistry]  # picklable
    snapshot: Callable[[], AbstractContextManager[TrainingSnapshot]]
    generator: Callable[[], InstructionGenerator]  # a fresh one per dataset build
    judge: Callable[[], Judge | None]  # None when judging is off
    resolve_model: Callable[[str], str]  # base model name or path -> loadable path; picklable
    connect_ray: Callable[[], None]  # join or start Ray; called only once a run needs it
    ray_local: bool  # Ray runs on this machine: its resources are the machine's
    results_dir: Path  # Ray Train's run directories

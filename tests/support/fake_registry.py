"""An in-memory :class:`twin.ports.ModelRegistry` for fast unit tests of the Train pipeline's
orchestration, and the contract both it and the real MLflow registry must meet.

:func:`check_registry_contract` runs against the fake in ``tests/unit/training`` and against
:class:`twin.adapters.mlflow_store.MlflowStore` on SQLite in ``tests/integration/test_train.py``:
the fake is used beside, never instead of, the real registry.
"""

from __future__ import annotations

import itertools
import json
import pickle
import shutil
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from twin.domain.dataset import Dataset
from twin.domain.errors import InvalidSpec
from twin.domain.registry import CANDIDATE, CHAMPION, ModelVersionInfo, TrainedRun, model_name
from twin.ports import MetricWriter, ModelRegistry, RegistryPurge


def _discard(metrics: Sequence[tuple[str, float, int]]) -> None:
    """The fake's step-metric writer: a worker's copy could not reach the fake's memory anyway."""


@dataclass
class _Run:
    profile: str
    key: str
    params: dict[str, Any]
    tags: dict[str, str]
    dataset_id: str | None
    status: str = "RUNNING"
    metrics: dict[str, float] = field(default_factory=dict)
    adapter: Path | None = None
    artifacts: dict[str, Any] = field(default_factory=dict)


class FakeRun:
    def __init__(self, run_id: str, record: _Run) -> None:
        self.run_id = run_id
        self._record = record

    def metric_writer(self) -> MetricWriter:
        return _discard

    def log_metrics(self, metrics: Mapping[str, float]) -> None:
        self._record.metrics.update({k: float(v) for k, v in metrics.items()})

    def log_adapter(self, directory: Path) -> None:
        self._record.adapter = directory

    def log_json(self, data: Any, artifact_file: str) -> None:
        self._record.artifacts[artifact_file] = json.loads(json.dumps(data, default=str))

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        self._record.tags.update({k: str(v) for k, v in tags.items()})


class FakeRegistry:
    """Datasets, runs, versions and aliases in dictionaries (see the module docstring)."""

    def __init__(self) -> None:
        self.datasets: dict[str, Dataset] = {}
        self.runs: dict[str, _Run] = {}
        self.models: dict[str, list[ModelVersionInfo]] = {}
        self.aliases: dict[str, dict[str, int]] = {}
        self._ids = itertools.count(1)

    def model_name(self, profile: str) -> str:
        return model_name(profile)

    def find_dataset(self, profile: str, version: str) -> str | None:
        return next(
            (i for i, d in self.datasets.items() if d.profile == profile and d.version == version), None
        )

    def save_dataset(self, dataset: Dataset, params: Mapping[str, Any]) -> str:
        dataset_id = f"ds-run-{next(self._ids)}"
        self.datasets[dataset_id] = dataset
        return dataset_id

    def load_dataset(self, dataset_id: str) -> Dataset:
        return self.datasets[dataset_id]

    def latest_dataset(self, profile: str) -> str | None:
        return next((d.version for d in reversed(self.datasets.values()) if d.profile == profile), None)

    def trained_dataset(self, info: ModelVersionInfo) -> Dataset:
        dataset_id = self.runs[info.run_id].dataset_id
        assert dataset_id is not None, f"run {info.run_id} recorded no dataset"
        return self.datasets[dataset_id]

    def find_training_run(self, profile: str, run_key: str) -> TrainedRun | None:
        for run_id, run in reversed(self.runs.items()):
            registered = "twin.model_version" in run.tags
            if run.profile == profile and run.key == run_key and run.status == "FINISHED" and registered:
                return TrainedRun(run_id, int(run.tags["twin.model_version"]), dict(run.metrics))
        return None

    @contextmanager
    def training_run(
        self,
        profile: str,
        run_key: str,
        *,
        params: Mapping[str, Any],
        tags: Mapping[str, str],
        dataset: Dataset | None = None,
        dataset_id: str | None = None,
    ) -> Iterator[FakeRun]:
        run_id = uuid.uuid4().hex
        record = _Run(profile, run_key, dict(params), dict(tags), dataset_id if dataset else None)
        self.runs[run_id] = record
        try:
            yield FakeRun(run_id, record)
        except BaseException:
            record.status = "FAILED"
            raise
        record.status = "FINISHED"

    def download_run_adapter(self, run_id: str, dest: Path) -> Path:
        adapter = self.runs[run_id].adapter
        assert adapter is not None, f"run {run_id} uploaded no adapter"
        return Path(shutil.copytree(adapter, dest / "adapter", dirs_exist_ok=True))

    def register(
        self, profile: str, run_id: str, figures: Mapping[str, Any], *, aliases: Sequence[str] = ()
    ) -> ModelVersionInfo:
        versions = self.models.setdefault(profile, [])
        info = ModelVersionInfo(
            profile,
            len(versions) + 1,
            run_id,
            f"runs:/{run_id}/adapter",
            (),
            {k: str(v) for k, v in figures.items()},
        )
        versions.append(info)
        for alias in aliases:
            self.set_alias(profile, alias, info.version)
        self.runs[run_id].tags["twin.model_version"] = str(info.version)
        return replace(info, aliases=tuple(aliases))

    def _with_aliases(self, info: ModelVersionInfo) -> ModelVersionInfo:
        held = tuple(sorted(a for a, v in self.aliases.get(info.profile, {}).items() if v == info.version))
        return replace(info, aliases=held, tags=dict(info.tags))

    def versions(self, profile: str) -> list[ModelVersionInfo]:
        return [self._with_aliases(v) for v in self.models.get(profile, [])]

    def version(self, profile: str, version: int) -> ModelVersionInfo:
        found = [v for v in self.models.get(profile, []) if v.version == version]
        if not found:
            raise InvalidSpec(f"profile {profile!r} has no model version {version}")
        return self._with_aliases(found[0])

    def by_alias(self, profile: str, alias: str) -> ModelVersionInfo | None:
        version = self.aliases.get(profile, {}).get(alias)
        return None if version is None else self.version(profile, version)

    def champion(self, profile: str) -> ModelVersionInfo | None:
        return self.by_alias(profile, CHAMPION)

    def set_alias(
        self, profile: str, alias: str, version: int, *, tags: Mapping[str, Any] | None = None
    ) -> None:
        self.aliases.setdefault(profile, {})[alias] = version
        if tags:
            self.tag_version(profile, version, tags)

    def tag_version(self, profile: str, version: int, tags: Mapping[str, Any]) -> None:
        versions = self.models[profile]
        i = version - 1
        versions[i] = replace(versions[i], tags={**versions[i].tags, **{k: str(v) for k, v in tags.items()}})

    def download_adapter(self, info: ModelVersionInfo, dest: Path) -> Path:
        return self.download_run_adapter(info.run_id, dest)

    def purge(self, profile: str) -> RegistryPurge:
        versions = len(self.models.pop(profile, []))
        self.aliases.pop(profile, None)
        runs = [i for i, r in self.runs.items() if r.profile == profile]
        datasets = [i for i, d in self.datasets.items() if d.profile == profile]
        for i in runs:
            del self.runs[i]
        for i in datasets:
            del self.datasets[i]
        return RegistryPurge(model_versions=versions, runs=len(runs) + len(datasets))


def check_registry_contract(registry: ModelRegistry, dataset: Dataset, adapter: Path, scratch: Path) -> None:
    """What training and serving rely on, in the order a training run uses it."""
    profile = dataset.profile
    assert registry.model_name(profile) == f"twin-{profile}"

    # Dataset versions: stored once, found again, loaded whole.
    assert registry.find_dataset(profile, dataset.version) is None
    assert registry.latest_dataset(profile) is None
    dataset_id = registry.save_dataset(dataset, {"generator": dataset.generator})
    assert registry.find_dataset(profile, dataset.version) == dataset_id
    assert registry.latest_dataset(profile) == dataset.version
    assert _whole(registry.load_dataset(dataset_id)) == _whole(dataset)

    # A run that fails is never found as trained, and registers nothing.
    with pytest.raises(RuntimeError), registry.training_run(profile, "key-1", params={}, tags={}):
        raise RuntimeError("the worker died")
    assert registry.find_training_run(profile, "key-1") is None

    # A run that finishes and registers is found by its key, with its figures.
    params = {"lora_rank": 16, "plan.strategy": "ddp"}
    with registry.training_run(
        profile, "key-1", params=params, tags={"system.device": "cpu"}, dataset=dataset, dataset_id=dataset_id
    ) as run:
        pickle.loads(pickle.dumps(run.metric_writer()))([("train_loss", 2.5, 1), ("train_loss", 2.0, 2)])
        run.log_adapter(adapter)
        run.log_metrics({"heldout_ppl_candidate": 9.5})
        run.log_json({"generations": {"candidate": ["hi"]}}, "eval/generations.json")
        info = registry.register(
            profile, run.run_id, {"base_model": "m", "heldout_ppl": 9.5}, aliases=[CANDIDATE]
        )
        run.set_tags({"twin.promoted": False})
    found = registry.find_training_run(profile, "key-1")
    assert found is not None and (found.run_id, found.version) == (run.run_id, info.version)
    assert found.metrics["heldout_ppl_candidate"] == 9.5

    # Versions, aliases and tags as serving reads them.
    assert [(v.version, v.aliases) for v in registry.versions(profile)] == [(info.version, (CANDIDATE,))]
    candidate = registry.by_alias(profile, CANDIDATE)
    assert candidate is not None and candidate.base_model == "m" and candidate.metric("heldout_ppl") == 9.5
    assert registry.champion(profile) is None and registry.by_alias(profile, "nope") is None
    registry.set_alias(profile, CHAMPION, info.version, tags={"promoted_by": "manual"})
    champion = registry.champion(profile)
    assert champion is not None and champion.version == info.version
    assert set(champion.aliases) == {CANDIDATE, CHAMPION} and champion.tags["promoted_by"] == "manual"
    with pytest.raises(InvalidSpec, match="no model version 99"):
        registry.version(profile, 99)
    assert registry.versions("nobody-at-all") == []

    # Lineage and the adapter itself.
    assert _whole(registry.trained_dataset(champion)) == _whole(dataset)
    for got in (
        registry.download_adapter(champion, scratch / "by-version"),
        registry.download_run_adapter(run.run_id, scratch / "by-run"),
    ):
        assert sorted(p.name for p in got.iterdir()) == sorted(p.name for p in adapter.iterdir())

    # Purging (a deleted TwinProfile): the model, its versions and every run go; a second purge is a
    # no-op; the profile can train again afterwards.
    purged = registry.purge(profile)
    assert purged.model_versions == 1 and purged.runs >= 2  # the dataset run and the training run(s)
    assert registry.versions(profile) == [] and registry.champion(profile) is None
    assert registry.find_dataset(profile, dataset.version) is None
    assert registry.latest_dataset(profile) is None
    assert registry.find_training_run(profile, "key-1") is None
    assert registry.purge(profile) == type(purged)()
    assert registry.find_dataset(profile, dataset.version) is None
    again = registry.save_dataset(dataset, {"generator": dataset.generator})
    assert registry.find_dataset(profile, dataset.version) == again


def _whole(dataset: Dataset) -> tuple[Any, ...]:
    """Everything a dataset version holds, samples in a canonical order (storage may reorder them)."""
    samples = sorted(json.dumps(s.to_json(), sort_keys=True) for s in dataset.samples)
    return dataset.version, dataset.profile, dataset.generator, dataset.stats, dataset.documents, samples

"""MLflow: dataset versions, training runs and the model registry, through one client.

Layout (one experiment per profile, ``twin/<profile>``):

- a **dataset run** per dataset version (tag ``twin.kind=dataset``, run name = the version id):
  ``dataset/train.jsonl``, ``dataset/heldout.jsonl`` (every sample with its lineage: document id,
  raw content hash, URL), ``dataset/documents.json`` (the (id, hash) pairs it was built from) and
  ``dataset/stats.json``. Building the same version again finds this run instead of writing another;
- a **training run** per run key (tag ``twin.kind=train``, ``twin.run_key``): params, metrics every
  N steps, the dataset version as its input (``log_inputs``, and tag ``twin.dataset_run_id``), the
  adapter under ``adapter/``, evaluation under ``eval/``, system info as tags, and once registered
  ``twin.model_version`` (a finished run with that tag is what makes retraining a no-op);
- the **registered model** ``twin-<profile>``: one version per trained adapter (source
  ``runs:/<run>/adapter``), tagged with the dataset version, base model and metrics; aliases
  ``candidate`` (the newest) and ``champion`` (what serving loads).

``tracking_uri`` is ``sqlite:///…`` in the embedded runtime and the MLflow server's URL on a
cluster; nothing connects until a method is called. :class:`MlflowStore` implements the port
:class:`twin.ports.ModelRegistry`; the names it files things under (and :class:`ModelVersionInfo`)
come from :mod:`twin.domain.registry` and are re-exported here for older imports.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from twin.adapters.mlflow_runs import MlflowTrainingRun, RunMetricWriter, log_params, now_ms
from twin.domain.dataset import Dataset, DatasetStats, Sample, Split
from twin.domain.errors import DependencyNotReady, InvalidSpec
from twin.domain.registry import (
    CANDIDATE,
    CHAMPION,
    ModelVersionInfo,
    TrainedRun,
    experiment_name,
    model_name,
)
from twin.ports import RegistryPurge

__all__ = [
    "CANDIDATE",
    "CHAMPION",
    "MlflowStore",
    "MlflowTrainingRun",
    "ModelVersionInfo",
    "RunMetricWriter",
    "experiment_name",
    "model_name",
]

KIND_TAG = "twin.kind"
DATASET_TAG = "twin.dataset_version"
DATASET_RUN_TAG = "twin.dataset_run_id"
RUN_KEY_TAG = "twin.run_key"
PROFILE_TAG = "twin.profile"
MODEL_VERSION_TAG = "twin.model_version"
_FINISHED = "attributes.status = 'FINISHED'"


class MlflowStore:
    """The model registry on MLflow (port :class:`twin.ports.ModelRegistry`), plus the raw client
    and a few MLflow-only lookups (``experiment_id``, ``metric_history``) for tests and tools."""

    def __init__(self, tracking_uri: str, artifact_root: str | None = None) -> None:
        self.tracking_uri = tracking_uri
        self.artifact_root = artifact_root
        self._client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            from mlflow import MlflowClient

            self._client = MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)
        return self._client

    # ---------------------------------------------------------------------------- experiments

    def experiment_id(self, profile: str) -> str:
        from mlflow.exceptions import MlflowException

        name = experiment_name(profile)
        try:
            found = self.client.get_experiment_by_name(name)
        except MlflowException as exc:
            raise DependencyNotReady(f"MLflow at {self.tracking_uri} is not usable: {exc}") from exc
        if found is not None:
            return str(found.experiment_id)
        location = f"{self.artifact_root.rstrip('/')}/{profile}" if self.artifact_root else None
        try:
            return str(self.client.create_experiment(name, artifact_location=location))
        except MlflowException:  # created by a concurrent starter in between
            return str(self.client.get_experiment_by_name(name).experiment_id)

    def _search(self, profile: str, filter_string: str, max_results: int = 10) -> list[Any]:
        return list(
            self.client.search_runs(
                [self.experiment_id(profile)],
                filter_string=filter_string,
                max_results=max_results,
                order_by=["attributes.start_time DESC"],
            )
        )

    # ------------------------------------------------------------------------------- datasets

    def find_dataset(self, profile: str, version: str) -> str | None:
        """The run id of dataset ``version``, if it was stored completely before."""
        runs = self._search(
            profile,
            f"tags.`{KIND_TAG}` = 'dataset' AND tags.`{DATASET_TAG}` = '{version}' AND {_FINISHED}",
            max_results=1,
        )
        return str(runs[0].info.run_id) if runs else None

    def save_dataset(self, dataset: Dataset, params: Mapping[str, Any]) -> str:
        """Store ``dataset`` as a dataset run (see the module docstring); return its run id."""
        client = self.client
        run = client.create_run(
            self.experiment_id(dataset.profile),
            run_name=dataset.version,
            tags={
                KIND_TAG: "dataset",
                DATASET_TAG: dataset.version,
                PROFILE_TAG: dataset.profile,
                "twin.generator": dataset.generator,
            },
        )
        run_id = str(run.info.run_id)
        try:
            log_params(client, run_id, params)
            with tempfile.TemporaryDirectory() as tmp:
                out = Path(tmp)
                for split in Split:
                    with (out / f"{split.value}.jsonl").open("w", encoding="utf-8") as fh:
                        for s in dataset.split(split):
                            fh.write(json.dumps(s.to_json(), ensure_ascii=False) + "\n")
                (out / "documents.json").write_text(json.dumps([list(d) for d in dataset.documents]))
                (out / "stats.json").write_text(json.dumps(dataset.stats.__dict__, indent=2, sort_keys=True))
                client.log_artifacts(run_id, str(out), "dataset")
            from mlflow.entities import Metric

            stats = dataset.stats
            now = now_ms()
            client.log_batch(
                run_id,
                metrics=[
                    Metric(k, float(getattr(stats, k)), now, 0)
                    for k in (
                        "documents",
                        "train_documents",
                        "heldout_documents",
                        "train_samples",
                        "heldout_samples",
                    )
                ],
            )
        except BaseException:
            client.set_terminated(run_id, status="FAILED")
            raise
        client.set_terminated(run_id)
        return run_id

    def latest_dataset(self, profile: str) -> str | None:
        """The newest dataset version stored completely (a read: no experiment is created)."""
        from mlflow.exceptions import MlflowException

        try:
            experiment = self.client.get_experiment_by_name(experiment_name(profile))
            if experiment is None:
                return None
            runs = self.client.search_runs(
                [experiment.experiment_id],
                filter_string=f"tags.`{KIND_TAG}` = 'dataset' AND {_FINISHED}",
                max_results=1,
                order_by=["attributes.start_time DESC"],
            )
        except MlflowException as exc:
            raise DependencyNotReady(f"MLflow at {self.tracking_uri} is not usable: {exc}") from exc
        return str(runs[0].data.tags[DATASET_TAG]) if runs else None

    def load_dataset(self, run_id: str) -> Dataset:
        client = self.client
        run = client.get_run(run_id)
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(client.download_artifacts(run_id, "dataset", tmp))
            samples: list[Sample] = []
            for split in Split:
                with (folder / f"{split.value}.jsonl").open(encoding="utf-8") as fh:
                    samples.extend(Sample.from_json(json.loads(line)) for line in fh if line.strip())
            documents = tuple(
                (str(a), str(b)) for a, b in json.loads((folder / "documents.json").read_text())
            )
            stats = DatasetStats(**json.loads((folder / "stats.json").read_text()))
        samples.sort(key=lambda s: (s.split.value != "train", str(s.document_id), s.part))
        return Dataset(
            version=run.data.tags[DATASET_TAG],
            profile=run.data.tags[PROFILE_TAG],
            generator=run.data.tags.get("twin.generator", ""),
            samples=tuple(samples),
            stats=stats,
            documents=documents,
        )

    def trained_dataset(self, info: ModelVersionInfo) -> Dataset:
        """The dataset version ``info``'s training run recorded as its input."""
        return self.load_dataset(self.client.get_run(info.run_id).data.tags[DATASET_RUN_TAG])

    def _dataset_input(self, run_id: str, dataset_run_id: str, dataset: Dataset) -> None:
        """Record ``dataset`` as the training run's input (MLflow's dataset lineage)."""
        from mlflow.data.dataset_source_registry import resolve_dataset_source
        from mlflow.data.meta_dataset import MetaDataset
        from mlflow.entities import DatasetInput, InputTag

        uri = f"{self.client.get_run(dataset_run_id).info.artifact_uri}/dataset"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "can be interpreted in multiple ways": both are local
            source = resolve_dataset_source(uri)
        meta_type: Any = MetaDataset  # mypy reads it as abstract; it is the documented concrete class
        meta = meta_type(source, name=dataset.version, digest=dataset.version.removeprefix("ds-"))
        self.client.log_inputs(
            run_id,
            [DatasetInput(meta._to_mlflow_entity(), tags=[InputTag("mlflow.data.context", "training")])],
        )

    # ------------------------------------------------------------------------------ training

    def find_training_run(self, profile: str, run_key: str) -> TrainedRun | None:
        """The finished training run with ``run_key`` that registered an adapter, if any."""
        for run in self._search(
            profile,
            f"tags.`{KIND_TAG}` = 'train' AND tags.`{RUN_KEY_TAG}` = '{run_key}' AND {_FINISHED}",
        ):
            version = run.data.tags.get(MODEL_VERSION_TAG)
            if version:
                metrics = {k: float(v) for k, v in run.data.metrics.items()}
                return TrainedRun(str(run.info.run_id), int(version), metrics)
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
    ) -> Iterator[MlflowTrainingRun]:
        """A training run that ends FINISHED when the block completes and FAILED when it raises;
        the dataset version (when given) is its input and tagged (``twin.dataset_run_id`` is how
        :meth:`trained_dataset` finds it again)."""
        client = self.client
        lineage = (
            {DATASET_TAG: dataset.version, DATASET_RUN_TAG: dataset_id} if dataset and dataset_id else {}
        )
        run = client.create_run(
            self.experiment_id(profile),
            run_name=f"train-{run_key}",
            tags={KIND_TAG: "train", RUN_KEY_TAG: run_key, PROFILE_TAG: profile, **lineage, **tags},
        )
        handle = MlflowTrainingRun(client, self.tracking_uri, str(run.info.run_id))
        try:
            log_params(client, handle.run_id, params)
            if dataset is not None and dataset_id:
                self._dataset_input(handle.run_id, dataset_id, dataset)
            yield handle
        except BaseException:
            client.set_terminated(handle.run_id, status="FAILED")
            raise
        client.set_terminated(handle.run_id)

    def download_run_adapter(self, run_id: str, dest: Path) -> Path:
        """The run's ``adapter/`` artifacts, downloaded under ``dest`` (a no-op copy for local files)."""
        dest.mkdir(parents=True, exist_ok=True)
        return Path(self.client.download_artifacts(run_id, "adapter", str(dest)))

    def metric_history(self, run_id: str, key: str) -> list[tuple[int, float]]:
        return [(int(m.step), float(m.value)) for m in self.client.get_metric_history(run_id, key)]

    # ------------------------------------------------------------------------------ registry

    def model_name(self, profile: str) -> str:
        return model_name(profile)

    def register(
        self, profile: str, run_id: str, figures: Mapping[str, Any], *, aliases: Sequence[str] = ()
    ) -> ModelVersionInfo:
        """A new version of ``twin-<profile>`` from the run's ``adapter/`` artifacts, tagged with
        ``figures``; ``aliases`` point at it, and the run is tagged with the version."""
        from mlflow.exceptions import MlflowException

        name = model_name(profile)
        client = self.client
        try:
            client.get_registered_model(name)
        except MlflowException:
            with contextlib.suppress(MlflowException):  # or registered concurrently
                client.create_registered_model(
                    name, description=f"LoRA adapters in the voice of profile {profile!r} (LLM Twin)"
                )
        mv = client.create_model_version(
            name, f"runs:/{run_id}/adapter", run_id=run_id, tags={k: str(v) for k, v in figures.items()}
        )
        info = self._info(profile, mv)
        for alias in aliases:
            self.set_alias(profile, alias, info.version)
        client.set_tag(run_id, MODEL_VERSION_TAG, str(info.version))
        return replace(info, aliases=tuple(aliases))

    def _info(self, profile: str, mv: Any) -> ModelVersionInfo:
        return ModelVersionInfo(
            profile=profile,
            version=int(mv.version),
            run_id=str(mv.run_id),
            source=str(mv.source),
            aliases=tuple(getattr(mv, "aliases", ()) or ()),
            tags=dict(mv.tags or {}),
        )

    def versions(self, profile: str) -> list[ModelVersionInfo]:
        """Every registered version of the profile's model with its aliases, oldest first ([] when none)."""
        from mlflow.exceptions import MlflowException

        name = model_name(profile)
        try:
            aliases: dict[str, str] = dict(self.client.get_registered_model(name).aliases or {})
        except MlflowException:
            return []
        by_version: dict[int, list[str]] = {}
        for alias, version in sorted(aliases.items()):
            by_version.setdefault(int(version), []).append(alias)
        # search results leave aliases out: they come from the registered model above
        found = [self._info(profile, mv) for mv in self.client.search_model_versions(f"name = '{name}'")]
        return sorted(
            (replace(v, aliases=tuple(by_version.get(v.version, ()))) for v in found), key=lambda v: v.version
        )

    def version(self, profile: str, version: int) -> ModelVersionInfo:
        from mlflow.exceptions import MlflowException

        try:
            return self._info(profile, self.client.get_model_version(model_name(profile), str(version)))
        except MlflowException as exc:
            raise InvalidSpec(f"profile {profile!r} has no model version {version}") from exc

    def by_alias(self, profile: str, alias: str) -> ModelVersionInfo | None:
        from mlflow.exceptions import MlflowException

        try:
            mv = self.client.get_model_version_by_alias(model_name(profile), alias)
        except MlflowException:
            return None
        return self._info(profile, mv)

    def champion(self, profile: str) -> ModelVersionInfo | None:
        return self.by_alias(profile, CHAMPION)

    def set_alias(
        self, profile: str, alias: str, version: int, *, tags: Mapping[str, Any] | None = None
    ) -> None:
        self.client.set_registered_model_alias(model_name(profile), alias, str(version))
        if tags:
            self.tag_version(profile, version, tags)

    def tag_version(self, profile: str, version: int, tags: Mapping[str, Any]) -> None:
        for k, v in tags.items():
            self.client.set_model_version_tag(model_name(profile), str(version), k, str(v))

    def download_adapter(self, info: ModelVersionInfo, dest: Path) -> Path:
        """The version's adapter directory, downloaded under ``dest`` (a no-op copy for local files)."""
        return self.download_run_adapter(info.run_id, dest)

    # ------------------------------------------------------------------------------ deletion

    def purge(self, profile: str) -> RegistryPurge:
        """The registered model and the runs' artifacts go; see :mod:`twin.adapters.mlflow_purge`."""
        from twin.adapters.mlflow_purge import purge_profile

        return purge_profile(self.client, self.tracking_uri, profile)

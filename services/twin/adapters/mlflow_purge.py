"""Deleting a profile from MLflow: its registered model and its runs' artifacts.

Used by :meth:`twin.adapters.mlflow_store.MlflowStore.purge` (the operator's finalizer, when a
TwinProfile goes). What MLflow lets a client delete, and how:

- the registered model ``twin-<profile>`` with every version and alias (a hard delete in MLflow's
  model registry);
- every run of the experiment ``twin/<profile>`` (dataset versions with their samples, training
  runs with their adapters): the artifacts are deleted from the artifact store now, the run is
  marked deleted (MLflow deletes runs softly; ``mlflow gc`` drops the rows of deleted runs).

The experiment itself stays, empty: MLflow keeps a deleted experiment's name reserved, so deleting
it would stop a profile of the same name from ever training again.
"""

from __future__ import annotations

import logging
from typing import Any

from twin.domain.errors import DependencyNotReady
from twin.domain.registry import experiment_name, model_name
from twin.ports import RegistryPurge

log = logging.getLogger(__name__)


def purge_profile(client: Any, tracking_uri: str, profile: str) -> RegistryPurge:
    """Delete the profile's registered model and its runs' artifacts (see the module docstring)."""
    from mlflow.exceptions import MlflowException

    try:
        versions = _delete_model(client, profile)
        runs = _delete_runs(client, tracking_uri, profile)
    except MlflowException as exc:
        message = f"MLflow at {tracking_uri} could not delete profile {profile!r}: {exc}"
        raise DependencyNotReady(message) from exc
    return RegistryPurge(model_versions=versions, runs=runs)


def _delete_model(client: Any, profile: str) -> int:
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST, ErrorCode

    name = model_name(profile)
    try:
        client.get_registered_model(name)
    except MlflowException as exc:
        if exc.error_code == ErrorCode.Name(RESOURCE_DOES_NOT_EXIST):
            return 0  # never trained, or purged before
        raise
    count = len(client.search_model_versions(f"name = '{name}'"))
    client.delete_registered_model(name)
    return count


def _delete_runs(client: Any, tracking_uri: str, profile: str) -> int:
    from mlflow.entities import ViewType

    experiment = client.get_experiment_by_name(experiment_name(profile))
    if experiment is None:
        return 0
    deleted, token = 0, None
    while True:
        page = client.search_runs(
            [experiment.experiment_id], run_view_type=ViewType.ALL, max_results=500, page_token=token
        )
        for run in page:
            had_artifacts = _delete_artifacts(run.info.artifact_uri, tracking_uri)
            active = run.info.lifecycle_stage != "deleted"
            if active:
                client.delete_run(run.info.run_id)
            deleted += int(active or had_artifacts)  # a second purge finds nothing left to delete
        token = page.token
        if not token:
            return deleted


def _delete_artifacts(artifact_uri: str | None, tracking_uri: str) -> bool:
    """Delete a run's artifacts; True when there were any. A store that cannot delete (some remote
    ones) leaves them to ``mlflow gc``, with a warning."""
    if not artifact_uri:
        return False
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    repo: Any = get_artifact_repository(artifact_uri, tracking_uri=tracking_uri)
    if not repo.list_artifacts():
        return False
    try:
        repo.delete_artifacts()
    except NotImplementedError:
        log.warning("the artifact store of %s cannot delete: run mlflow gc to remove them", artifact_uri)
    return True

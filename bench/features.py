"""Feature pipeline benchmark: throughput against the embedder alone, freshness, retrieval.

(a) Throughput. N documents (default 5,000 LinkedIn-style posts made from the sample's prose,
    each distinct) are written to ``raw_documents``; ``twin features`` (embedded runtime: Debezium's
    embedded engine, one Ray embedding actor with one torch thread) consumes them. Its busy span
    (first batch start to last batch end) gives end-to-end chunks/s. The baseline, in the same
    run: the same chunks (cleaned and chunked by the same code) embedded by the same model with
    one torch thread in this process, no Ray, no database. Ratio = end-to-end / embedder alone.
(b) Freshness under light load: one document every 0.5 s for 30 s while ``twin features`` runs,
    in the embedded runtime and through Kafka (a real KRaft broker and Kafka Connect with
    Debezium, from ``tests/support/services``); freshness is source commit time → chunks written,
    as the pipeline records it.
(c) Retrieval: ``bench/retrieval.py`` (100,000 chunks), its final line included.

The last line printed is one JSON object with all of it. Run: ``make bench-features``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the Kafka/Connect harness lives with the tests

from twin.adapters.embedded_postgres import EmbeddedPostgres  # noqa: E402
from twin.adapters.postgres import PostgresDocumentStore, connect, migrate  # noqa: E402
from twin.demo.content import load_demo_content  # noqa: E402
from twin.domain.documents import Category, ExtractedDocument, Platform, RawDocument  # noqa: E402


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def posts(n: int, profile: str = "bench") -> list[RawDocument]:
    """N distinct posts: the sample's LinkedIn posts and article paragraphs, each tagged."""
    content = load_demo_content()
    texts = [p.text for p in content.linkedin]
    for article in content.medium + content.substack:
        texts.extend(
            p for p in article.body.split("\n\n") if len(p.split()) > 40 and not p.startswith(("#", "`"))
        )
    run = uuid.uuid4()
    now = datetime.now(UTC)
    docs = []
    for i in range(n):
        text = f"{texts[i % len(texts)]}\n\nNote {i}: written for the benchmark."
        extracted = ExtractedDocument(
            canonical_url=f"https://www.linkedin.com/feed/update/urn:li:activity:{10**18 + i}",
            category=Category.POST,
            title=text.split(".", maxsplit=1)[0][:80],
            content=text,
        )
        docs.append(
            RawDocument.from_extracted(
                extracted,
                profile=profile,
                platform=Platform.LINKEDIN,
                source_url="https://www.linkedin.com/in/bench",
                fetched_at=now,
                crawl_run_id=run,
            )
        )
    return docs


def features_env(dsn: str, home: Path, **extra: str) -> dict[str, str]:
    slot = f"b{uuid.uuid4().hex[:10]}"
    return {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "TWIN_DATABASE__DSN": dsn,
        "TWIN_HOME": str(home),
        "TWIN_FEATURES__SLOT_NAME": slot,
        "TWIN_FEATURES__PUBLICATION": slot,
        "TWIN_RAY__NUM_CPUS": "2",
        "TWIN_FEATURES__EMBED_WORKERS": "1",
        **extra,
    }


def features_json(proc: subprocess.CompletedProcess[str] | str) -> dict[str, Any]:
    text = proc if isinstance(proc, str) else proc.stdout
    lines = [line for line in text.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"twin features printed no summary:\n{text[-3000:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def create_database(server: EmbeddedPostgres, name: str) -> str:
    with connect(server.dsn("postgres")) as conn:
        conn.autocommit = True
        conn.execute(f"CREATE DATABASE {name}")
    return server.dsn(name)


def throughput(server: EmbeddedPostgres, tmp: Path, n: int) -> dict[str, Any]:
    dsn = server.dsn()
    docs = posts(n)
    with connect(dsn) as conn:
        migrate(conn)
        store = PostgresDocumentStore(conn)
        for i in range(0, len(docs), 500):
            store.upsert(docs[i : i + 500])
    log(f"(a) {n} documents stored; consuming them with twin features...")
    env = features_env(dsn, tmp / "home-a")
    proc = subprocess.run(
        [sys.executable, "-m", "twin.cli", "features", "--until-idle", "5", "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=3600,
    )
    e2e = features_json(proc)
    assert e2e["applied"] == n, e2e

    log("(a) the embedder alone on the same chunks...")
    import torch

    from twin.adapters.embedders import SentenceTransformerEmbedder
    from twin.domain.chunking import ChunkPolicy, chunk_document
    from twin.domain.cleaning import clean_document

    torch.set_num_threads(1)
    embedder = SentenceTransformerEmbedder(batch_size=32)
    texts = [
        c.text
        for d in docs
        for c in chunk_document(
            clean_document(d, lsn=0, committed_at=datetime.now(UTC)),
            embedder.count_tokens,
            ChunkPolicy(),
            max_model_tokens=embedder.max_tokens,
        )
    ]
    assert len(texts) == e2e["chunks"], (len(texts), e2e["chunks"])
    embedder.embed(texts[:32])  # load and warm up outside the timing, as the actor does
    started = time.perf_counter()
    embedder.embed(texts)
    alone_s = time.perf_counter() - started
    alone = len(texts) / alone_s
    return {
        "documents": n,
        "chunks": len(texts),
        "e2e_chunks_per_s": e2e["chunks_per_s"],
        "embedder_chunks_per_s": round(alone, 1),
        "throughput_ratio": round(e2e["chunks_per_s"] / alone, 3),
    }


def trickle(dsn: str, env: dict[str, str], tmp: Path, seconds: float, ready: Any) -> dict[str, Any]:
    """Run twin features while writing one document every 0.5 s; return its summary."""
    with connect(dsn) as conn:
        migrate(conn)
    log_file = (tmp / f"features-{uuid.uuid4().hex[:6]}.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "twin.cli", "features", "--json"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=log_file,
        text=True,
    )
    try:
        ready(dsn)
        docs = posts(int(seconds / 0.5), profile=f"fresh{uuid.uuid4().hex[:6]}")
        with connect(dsn) as conn:
            store = PostgresDocumentStore(conn)
            for doc in docs:
                store.upsert([doc])
                time.sleep(0.5)
        time.sleep(5)  # let the last ones land
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=120)
    summary = features_json(out)
    assert summary["applied"] >= len(docs), summary
    return summary


def wait_for_slot(slot: str) -> Any:
    def ready(dsn: str) -> None:
        deadline = time.monotonic() + 180
        with connect(dsn) as conn:
            while time.monotonic() < deadline:
                row = conn.execute(
                    "SELECT active FROM pg_replication_slots WHERE slot_name = %s", (slot,)
                ).fetchone()
                conn.commit()
                if row and row[0]:
                    time.sleep(2)  # streaming, past the (empty) snapshot
                    return
                time.sleep(0.2)
        raise RuntimeError(f"slot {slot} never became active")

    return ready


def freshness_embedded(server: EmbeddedPostgres, tmp: Path, seconds: float) -> dict[str, Any]:
    dsn = create_database(server, "fresh_embedded")
    env = features_env(dsn, tmp / "home-b")
    log("(b) freshness, embedded runtime...")
    summary = trickle(dsn, env, tmp, seconds, wait_for_slot(env["TWIN_FEATURES__SLOT_NAME"]))
    return {
        "embedded_freshness_p50_s": summary["freshness_p50_s"],
        "embedded_freshness_p95_s": summary["freshness_p95_s"],
    }


def freshness_kafka(server: EmbeddedPostgres, tmp: Path, seconds: float) -> dict[str, Any]:
    from support.services.kafka import KafkaBroker, KafkaConnect

    dsn = create_database(server, "fresh_kafka")
    with connect(dsn) as conn:
        migrate(conn)
    log("(b) freshness through Kafka: starting a broker and Kafka Connect...")
    broker = KafkaBroker(tmp / "broker", free_port()).start()
    worker = KafkaConnect(tmp / "connect", free_port(), broker.bootstrap).start()
    try:
        name = f"k{uuid.uuid4().hex[:10]}"
        worker.create_postgres_connector(name, dsn, slot=name, publication=name, topic_prefix=name)
        env = features_env(
            dsn,
            tmp / "home-c",
            TWIN_FEATURES__RUNTIME="kafka",
            TWIN_FEATURES__KAFKA_BOOTSTRAP=broker.bootstrap,
            TWIN_FEATURES__TOPIC=f"{name}.public.raw_documents",
            TWIN_FEATURES__GROUP_ID=f"{name}-features",
        )

        def ready(dsn: str) -> None:
            time.sleep(15)  # Ray and the model up, consumer group joined (no readiness probe yet)

        summary = trickle(dsn, env, tmp, seconds, ready)
    finally:
        worker.stop()
        broker.stop()
    return {
        "kafka_freshness_p50_s": summary["freshness_p50_s"],
        "kafka_freshness_p95_s": summary["freshness_p95_s"],
    }


def retrieval() -> dict[str, Any]:
    log("(c) retrieval at 100,000 chunks (bench/retrieval.py)...")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "retrieval.py")],
        capture_output=True,
        text=True,
        check=True,
        timeout=3600,
    )
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return {f"retrieval_{k}": v for k, v in result.items()}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--documents", type=int, default=5000)
    parser.add_argument("--trickle-seconds", type=float, default=30.0)
    parser.add_argument("--skip-retrieval", action="store_true")
    parser.add_argument("--skip-freshness", action="store_true")
    args = parser.parse_args()
    result: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        server = EmbeddedPostgres(tmp / "pg", free_port())
        server.start()
        try:
            result.update(throughput(server, tmp, args.documents))
            log(json.dumps(result))
            if not args.skip_freshness:
                result.update(freshness_embedded(server, tmp, args.trickle_seconds))
                result.update(freshness_kafka(server, tmp, args.trickle_seconds))
        finally:
            server.stop()
    if not args.skip_retrieval:
        result.update(retrieval())
    print(json.dumps(result))


if __name__ == "__main__":
    main()

"""Helpers for feature-pipeline tests: run ``twin features`` as a process, compare to a rebuild."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from support.processes import TwinProcess, start_twin
from twin.adapters.embedders import SentenceTransformerEmbedder
from twin.adapters.postgres import PostgresDocumentStore, connect
from twin.domain.chunking import ChunkPolicy, chunk_document
from twin.domain.cleaning import clean_document
from twin.domain.documents import Category, ExtractedDocument, Platform, RawDocument


def start_features(env: dict[str, str], workdir: Path, *args: str) -> TwinProcess:
    """``twin features ARGS`` as a process of its own (Debezium's JVM is one per process)."""
    return start_twin("features", *args, env=env, workdir=workdir)


def feature_state(conn: psycopg.Connection[Any]) -> dict[uuid.UUID, tuple[str, list[str]]]:
    """{document id: (raw content hash, [chunk texts in order])} as the store holds them.

    One statement, so one snapshot: two reads could see a document the workers committed between
    them (its chunks and not itself)."""
    rows = conn.execute(
        "SELECT d.id, d.raw_content_hash, c.document_id, c.text, c.embedding IS NOT NULL"
        " FROM cleaned_documents d FULL JOIN chunks c ON c.document_id = d.id"
        " ORDER BY coalesce(d.id, c.document_id), c.position"
    ).fetchall()
    conn.commit()
    state: dict[uuid.UUID, tuple[str, list[str]]] = {}
    for doc_id, digest, chunk_doc, text, has_vector in rows:
        assert doc_id is not None, f"chunks of {chunk_doc} outlive their cleaned document"
        entry = state.setdefault(doc_id, (digest, []))
        if chunk_doc is not None:
            assert has_vector
            entry[1].append(text)
    return state


def assert_vectors_match_rebuild(
    conn: psycopg.Connection[Any], embedder: SentenceTransformerEmbedder
) -> None:
    """Every stored chunk's vector equals the model's embedding of its text, computed afresh here
    (cosine within 1e-3: batch padding moves the last digits). Texts alone would not catch a
    vector stored for the wrong chunk, a stale vector after an update, or a wrong model."""
    rows = conn.execute(
        "SELECT document_id, position, text, embedding::real[] FROM chunks ORDER BY 1, 2"
    ).fetchall()
    conn.commit()
    assert rows, "no chunks stored"
    fresh = embedder.embed([text for _, _, text, _ in rows])
    for (doc_id, position, _, stored), expected in zip(rows, fresh, strict=True):
        cosine = sum(a * b for a, b in zip(stored, expected, strict=True))
        assert cosine > 0.999, (
            f"chunk {doc_id}#{position}: stored vector is not its text's (cosine {cosine:.4f})"
        )


def rebuild_state(
    store: PostgresDocumentStore, profile: str, embedder: SentenceTransformerEmbedder
) -> dict[uuid.UUID, tuple[str, list[str]]]:
    """What the feature store must hold: every stored raw document cleaned and chunked afresh."""
    expected: dict[uuid.UUID, tuple[str, list[str]]] = {}
    for doc in store.documents(profile):
        cleaned = clean_document(doc, lsn=0, committed_at=datetime.now(UTC))
        chunks = chunk_document(
            cleaned, embedder.count_tokens, ChunkPolicy(), max_model_tokens=embedder.max_tokens
        )
        expected[doc.id] = (doc.content_hash, [c.text for c in chunks])
    return expected


def drop_slot(dsn: str, slot: str) -> None:
    """Drop a test's replication slot and publication (slots pin WAL while nobody reads them)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        for _ in range(60):
            row = conn.execute(
                "SELECT active FROM pg_replication_slots WHERE slot_name = %s", (slot,)
            ).fetchone()
            if row is None:
                break
            if not row[0]:
                conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
                break
            time.sleep(0.5)
        conn.execute(f'DROP PUBLICATION IF EXISTS "{slot}"')


SOURCE = "https://medium.com/@alice"


def articles(n: int) -> list[RawDocument]:
    """The first ``n`` demo Medium articles as stored raw documents of profile ``alice``."""
    from twin.demo.content import load_demo_content

    run = uuid.uuid4()
    return [
        RawDocument.from_extracted(
            ExtractedDocument(
                canonical_url=f"{SOURCE}/{a.slug}",
                category=Category.ARTICLE,
                title=a.title,
                content=a.body,
                author="Alice Moreau",
            ),
            profile="alice",
            platform=Platform.MEDIUM,
            source_url=SOURCE,
            fetched_at=datetime.now(UTC),
            crawl_run_id=run,
        )
        for a in load_demo_content().medium[:n]
    ]


def edited(doc: RawDocument, suffix: str, url: str | None = None) -> RawDocument:
    """``doc`` with a paragraph appended (and optionally another URL), hash and id recomputed."""
    extracted = ExtractedDocument(
        canonical_url=url or doc.canonical_url,
        category=doc.category,
        title=doc.title,
        content=f"{doc.content}\n\n{suffix}",
        author=doc.author,
    )
    return RawDocument.from_extracted(
        extracted,
        profile=doc.profile,
        platform=doc.platform,
        source_url=doc.source_url,
        fetched_at=datetime.now(UTC),
        crawl_run_id=doc.crawl_run_id,
    )


@contextmanager
def fresh_store(dsn: str) -> Iterator[PostgresDocumentStore]:
    """A store on its own connection (tests that restart Postgres cannot keep one open)."""
    with connect(dsn) as conn:
        yield PostgresDocumentStore(conn)


def converged(dsn: str, embedder: SentenceTransformerEmbedder, profile: str = "alice") -> bool:
    """Whether the feature store equals a rebuild from scratch of the raw documents."""
    try:
        with connect(dsn) as conn:
            return feature_state(conn) == rebuild_state(PostgresDocumentStore(conn), profile, embedder)
    except psycopg.OperationalError:
        return False

"""The feature store and retrieval against a real Postgres 16 + pgvector 0.6 (no fakes)."""

from __future__ import annotations

import hashlib
import random
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
import psycopg
import pytest

from twin.adapters.pgvector_retriever import PgRetriever
from twin.adapters.pgvector_store import PgFeatureStore, column_dimension
from twin.domain.documents import Category, Platform
from twin.domain.errors import InvalidSpec
from twin.domain.features import Chunk, CleanedDocument, EmbeddedChunk, RawChange, RetrievalQuery

pytestmark = pytest.mark.integration

DIM = 384
NOW = datetime(2025, 1, 1, tzinfo=UTC)
Upsert = tuple[CleanedDocument, Sequence[EmbeddedChunk]]


def unit(seed: int | str) -> list[float]:
    rng = np.random.default_rng(int(hashlib.sha256(str(seed).encode()).hexdigest()[:12], 16))
    v = rng.standard_normal(DIM)
    return [float(x) for x in v / np.linalg.norm(v)]


def doc(
    doc_id: uuid.UUID,
    lsn: int,
    *,
    profile: str = "alice",
    category: Category = Category.ARTICLE,
    platform: Platform = Platform.MEDIUM,
    n_chunks: int = 2,
    tag: str = "",
    vectors: Sequence[Sequence[float]] | None = None,
) -> Upsert:
    tag = tag or f"{doc_id}@{lsn}"
    d = CleanedDocument(
        id=doc_id,
        profile=profile,
        platform=platform,
        category=category,
        url=f"https://example.com/{doc_id}",
        title=f"title {tag}",
        content=f"content {tag}",
        raw_content_hash=hashlib.sha256(tag.encode()).hexdigest(),
        lsn=lsn,
        committed_at=NOW,
        metadata={"tag": tag},
    )
    vecs = vectors if vectors is not None else [unit(f"{tag}/{i}") for i in range(n_chunks)]
    chunks = [
        EmbeddedChunk(Chunk(doc_id, i, f"chunk {i} of {tag}", 5, f"h{i}", {"i": i}), list(v))
        for i, v in enumerate(vecs)
    ]
    return d, chunks


def snapshot(conn: psycopg.Connection[Any]) -> dict[str, Any]:
    """Everything the store holds, in a comparable form."""
    state = {
        "documents": conn.execute(
            "SELECT id, profile, category, platform, title, content, raw_content_hash, lsn, metadata"
            " FROM cleaned_documents ORDER BY id"
        ).fetchall(),
        "chunks": conn.execute(
            "SELECT document_id, position, profile, text, content_hash, embedding::text FROM chunks"
            " ORDER BY document_id, position"
        ).fetchall(),
        "tombstones": conn.execute(
            "SELECT document_id, lsn FROM document_tombstones ORDER BY document_id"
        ).fetchall(),
        "counts": conn.execute(
            "SELECT profile, category, platform, n FROM chunk_counts WHERE n > 0 ORDER BY 1, 2, 3"
        ).fetchall(),
    }
    conn.commit()
    return state


def reset(conn: psycopg.Connection[Any]) -> None:
    conn.execute("TRUNCATE cleaned_documents, chunks, document_tombstones, dead_letters CASCADE")
    conn.commit()


@pytest.fixture
def fs(pg_conn: psycopg.Connection[Any]) -> PgFeatureStore:
    return PgFeatureStore(pg_conn, dimension=DIM)


# --- writes ---------------------------------------------------------------------------------


def test_upsert_replaces_chunks_and_delete_leaves_a_tombstone(
    fs: PgFeatureStore, pg_conn: psycopg.Connection[Any]
) -> None:
    a = uuid.uuid4()
    assert fs.apply([doc(a, 10, n_chunks=3, tag="v1")], []) == 1
    assert fs.versions([a]) == {a: (10, hashlib.sha256(b"v1").hexdigest())}
    state = snapshot(pg_conn)
    assert [c[3] for c in state["chunks"]] == ["chunk 0 of v1", "chunk 1 of v1", "chunk 2 of v1"]
    assert state["counts"] == [("alice", "article", "medium", 3)]

    # A newer version replaces the document and ALL its chunks (3 → 2: none left over).
    assert fs.apply([doc(a, 20, n_chunks=2, tag="v2")], []) == 1
    state = snapshot(pg_conn)
    assert [c[3] for c in state["chunks"]] == ["chunk 0 of v2", "chunk 1 of v2"]
    assert state["documents"][0][5] == "content v2"
    assert state["counts"] == [("alice", "article", "medium", 2)]

    assert fs.apply([], [(a, 30)]) == 1
    state = snapshot(pg_conn)
    assert state["documents"] == [] and state["chunks"] == [] and state["counts"] == []
    assert state["tombstones"] == [(a, 30)]
    assert fs.versions([a, uuid.uuid4()]) == {a: (30, None)}


def test_stale_events_are_ignored(fs: PgFeatureStore, pg_conn: psycopg.Connection[Any]) -> None:
    a = uuid.uuid4()
    fs.apply([doc(a, 10, tag="new")], [])
    before = snapshot(pg_conn)
    assert fs.apply([doc(a, 5, tag="old")], []) == 0
    assert fs.apply([], [(a, 7)]) == 0
    assert snapshot(pg_conn) == before
    # Replaying the current event rewrites the same thing: harmless.
    fs.apply([doc(a, 10, tag="new")], [])
    assert snapshot(pg_conn)["documents"] == before["documents"]
    assert snapshot(pg_conn)["chunks"] == before["chunks"]


def test_tombstone_stops_a_replayed_older_upsert(
    fs: PgFeatureStore, pg_conn: psycopg.Connection[Any]
) -> None:
    a, b = uuid.uuid4(), uuid.uuid4()
    fs.apply([doc(a, 10)], [])
    fs.apply([], [(a, 20), (b, 15)])  # b was never seen: its tombstone is kept all the same
    assert fs.apply([doc(a, 15), doc(a, 20), doc(b, 12)], []) == 0
    assert snapshot(pg_conn)["documents"] == []
    assert fs.versions([a, b]) == {a: (20, None), b: (15, None)}
    # A genuinely newer create brings the document back; the older tombstone goes.
    assert fs.apply([doc(a, 25, tag="back")], []) == 1
    assert fs.versions([a]) == {a: (25, hashlib.sha256(b"back").hexdigest())}
    assert snapshot(pg_conn)["tombstones"] == [(b, 15)]


def test_one_batch_with_several_changes_to_one_document(
    fs: PgFeatureStore, pg_conn: psycopg.Connection[Any]
) -> None:
    a = uuid.uuid4()
    # Out of order within a batch: the greatest lsn wins, whatever the order they are listed in.
    fs.apply([doc(a, 30, tag="c"), doc(a, 10, tag="a")], [(a, 20)])
    assert fs.versions([a]) == {a: (30, hashlib.sha256(b"c").hexdigest())}
    fs.apply([doc(a, 40, tag="d")], [(a, 50)])
    assert fs.versions([a]) == {a: (50, None)}
    assert snapshot(pg_conn)["chunks"] == []


def test_apply_is_one_transaction(fs: PgFeatureStore, pg_conn: psycopg.Connection[Any]) -> None:
    a, b = uuid.uuid4(), uuid.uuid4()
    fs.apply([doc(a, 10)], [])
    before = snapshot(pg_conn)
    bad_doc, bad_chunks = doc(b, 10)
    # The second document's chunk breaks a constraint in the database (the text holds a NUL).
    broken = [EmbeddedChunk(Chunk(b, 0, "nul \x00 byte", 1, "h"), bad_chunks[0].embedding)]
    with pytest.raises(psycopg.Error):
        fs.apply([doc(a, 20, tag="would-change"), (bad_doc, broken)], [])
    assert snapshot(pg_conn) == before


def _events(rng: random.Random, ids: list[uuid.UUID]) -> list[tuple[str, uuid.UUID, int, str]]:
    """Random creates/updates/deletes: per document, distinct lsns (WAL positions are unique)."""
    events = []
    lsns = rng.sample(range(1, 10_000), 8 * len(ids))
    for i, doc_id in enumerate(ids):
        for lsn in lsns[8 * i : 8 * i + rng.randint(1, 8)]:
            op = rng.choice(["u", "u", "d"])
            events.append((op, doc_id, lsn, f"{doc_id}@{lsn}"))
    return events


def _apply_events(fs: PgFeatureStore, events: Sequence[tuple[str, uuid.UUID, int, str]]) -> None:
    upserts = [
        doc(d, lsn, tag=tag, n_chunks=1 + lsn % 3, profile="bob" if lsn % 2 else "alice")
        for op, d, lsn, tag in events
        if op == "u"
    ]
    deletes = [(d, lsn) for op, d, lsn, _ in events if op == "d"]
    fs.apply(upserts, deletes)


@pytest.mark.parametrize("seed", range(6))
def test_replays_in_any_order_converge(
    fs: PgFeatureStore, pg_conn: psycopg.Connection[Any], seed: int
) -> None:
    rng = random.Random(seed)
    ids = [uuid.UUID(int=rng.getrandbits(128)) for _ in range(6)]
    events = _events(rng, ids)

    # The reference: each event once, alone, in lsn order.
    for event in sorted(events, key=lambda e: e[2]):
        _apply_events(fs, [event])
    expected = snapshot(pg_conn)
    assert expected["documents"] or expected["tombstones"]

    for _ in range(4):
        reset(pg_conn)
        # At-least-once delivery: some events twice or three times, shuffled, in random batches.
        delivered = events + rng.sample(events, len(events) // 2) + rng.sample(events, len(events) // 4)
        rng.shuffle(delivered)
        while delivered:
            size = rng.randint(1, 6)
            _apply_events(fs, delivered[:size])
            delivered = delivered[size:]
        assert snapshot(pg_conn) == expected
        # And replaying everything once more changes nothing.
        _apply_events(fs, events)
        assert snapshot(pg_conn) == expected


def test_dead_letter_keeps_the_change(fs: PgFeatureStore, pg_conn: psycopg.Connection[Any]) -> None:
    fs.dead_letter(RawChange(b'{"id": 1}', b"\xff not json", "raw_documents/0@42"), "undecodable value")
    fs.dead_letter(RawChange(None, None, "raw_documents/1@7"), "tombstone without key")
    rows = pg_conn.execute("SELECT position, reason, key, value FROM dead_letters ORDER BY id").fetchall()
    assert rows == [
        ("raw_documents/0@42", "undecodable value", '{"id": 1}', "\\xff not json"),
        ("raw_documents/1@7", "tombstone without key", None, None),
    ]


def test_embedding_dimension_must_match_the_column(pg_conn: psycopg.Connection[Any]) -> None:
    assert column_dimension(pg_conn) == DIM
    with pytest.raises(InvalidSpec, match=r"768-d vectors but .* holds 384-d"):
        PgFeatureStore(pg_conn, dimension=768)
    with pytest.raises(InvalidSpec, match="384"):
        PgRetriever(pg_conn, dimension=768)
    fs = PgFeatureStore(pg_conn, dimension=DIM)
    with pytest.raises(ValueError, match="3-d embedding"):
        fs.apply([doc(uuid.uuid4(), 1, vectors=[[1.0, 0.0, 0.0]])], [])


# --- retrieval ------------------------------------------------------------------------------


def _near(v: Sequence[float], seed: int, noise: float = 0.05) -> list[float]:
    rng = np.random.default_rng(seed)
    w = np.asarray(v) + noise * rng.standard_normal(DIM) / np.sqrt(DIM)
    return [float(x) for x in w / np.linalg.norm(w)]


@pytest.mark.parametrize("indexed", [False, True], ids=["exact", "hnsw"])
def test_retrieval_stays_within_the_profile_and_filters(
    fs: PgFeatureStore, pg_conn: psycopg.Connection[Any], indexed: bool
) -> None:
    target = unit("target")
    upserts = []
    for profile in ("alice", "bob"):
        for category, platform in [
            (Category.ARTICLE, Platform.MEDIUM),
            (Category.ARTICLE, Platform.SUBSTACK),
            (Category.POST, Platform.LINKEDIN),
            (Category.CODE, Platform.GITHUB),
        ]:
            for j in range(15):
                # Bob's chunks are the closest of all to the query; Alice's next, then noise.
                closeness = 0.01 if profile == "bob" else 0.3
                vecs = [
                    _near(target, hash((profile, category, platform, j, i)) % 2**32, closeness * (1 + j))
                    for i in range(4)
                ]
                upserts.append(
                    doc(uuid.uuid4(), 1, profile=profile, category=category, platform=platform, vectors=vecs)
                )
    fs.apply(upserts, [])
    exact_max = 1_000_000
    if indexed:
        # 3 categories x 2 profiles, and each whole profile (for queries without a category filter)
        assert len(fs.maintain_indexes(min_rows=50, concurrently=True)) == 8
        exact_max = 10
    retriever = PgRetriever(pg_conn, exact_max_rows=exact_max)
    # Unfiltered: one branch over the whole profile (its own index, or one exact scan).
    plans = retriever.plan(RetrievalQuery("alice", target))
    assert [(p.category, p.rows, p.ef_search is not None) for p in plans] == [("*", 240, indexed)]
    # Filtered by category: one branch per category asked for.
    filtered = retriever.plan(RetrievalQuery("alice", target, categories=(Category.ARTICLE, Category.CODE)))
    assert [(p.category, p.rows, p.ef_search is not None) for p in filtered] == [
        ("article", 120, indexed),
        ("code", 60, indexed),
    ]

    hits = retriever.search(RetrievalQuery("alice", target, k=20))
    assert len(hits) == 20
    assert {h.profile for h in hits} == {"alice"}
    bob_docs = {d.id for d, _ in upserts if d.profile == "bob"}
    assert not {h.document_id for h in hits} & bob_docs
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert all(-1.0 <= h.score <= 1.0 for h in hits)

    hits = retriever.search(RetrievalQuery("alice", target, k=10, categories=(Category.CODE,)))
    assert len(hits) == 10 and {(h.category, h.platform) for h in hits} == {(Category.CODE, Platform.GITHUB)}
    hits = retriever.search(
        RetrievalQuery("alice", target, k=50, categories=(Category.ARTICLE,), platforms=(Platform.SUBSTACK,))
    )
    assert len(hits) == 50 and {h.platform for h in hits} == {Platform.SUBSTACK}
    hits = retriever.search(
        RetrievalQuery("alice", target, k=100, platforms=(Platform.LINKEDIN, Platform.GITHUB))
    )
    assert len(hits) == 100 and {h.platform for h in hits} == {Platform.LINKEDIN, Platform.GITHUB}
    assert retriever.search(RetrievalQuery("carol", target)) == []


def test_retrieval_fails_closed_without_a_profile(pg_conn: psycopg.Connection[Any]) -> None:
    retriever = PgRetriever(pg_conn)
    with pytest.raises(ValueError, match="profile"):
        retriever.search(RetrievalQuery("", unit(1)))
    with pytest.raises(ValueError, match="dimensions"):
        retriever.search(RetrievalQuery("alice", [1.0, 0.0]))


def test_profile_names_are_data_not_sql(fs: PgFeatureStore, pg_conn: psycopg.Connection[Any]) -> None:
    evil = "x' OR profile <> '"
    fs.apply([doc(uuid.uuid4(), 1, profile=evil, n_chunks=60), doc(uuid.uuid4(), 1, profile="alice")], [])
    assert fs.maintain_indexes(min_rows=50)  # a partial index whose predicate holds that name
    retriever = PgRetriever(pg_conn, exact_max_rows=10)
    assert {h.profile for h in retriever.search(RetrievalQuery(evil, unit(0), k=100))} == {evil}
    assert len(retriever.search(RetrievalQuery(evil, unit(0), k=100))) == 60
    assert len(retriever.search(RetrievalQuery("alice", unit(0), k=100))) == 2


def _corpus(n: int, shares: dict[str, float], seed: int) -> dict[str, Any]:
    """Clustered unit vectors (shared topics with a low-dimensional spread), profiles of very
    different sizes drawing on the same topics, categories article/post/code ~ 55/30/15 %."""
    rng = np.random.default_rng(seed)
    n_topics, sub = 120, 12
    common = rng.standard_normal(DIM)
    domains = rng.standard_normal((10, DIM))
    raw = rng.standard_normal((n_topics, DIM))
    centres = (
        0.4 * common / np.linalg.norm(common)
        + 0.7 * (domains / np.linalg.norm(domains, axis=1, keepdims=True))[rng.integers(10, size=n_topics)]
        + 0.6 * raw / np.linalg.norm(raw, axis=1, keepdims=True)
    )
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    bases = rng.standard_normal((n_topics, sub, DIM)) / np.sqrt(DIM)
    profiles: list[str] = []
    topics: list[int] = []
    for p, share in shares.items():
        count = round(n * share)
        own = rng.choice(n_topics, size=30, replace=False)
        weights = 1.0 / np.arange(1, 31)
        topics += list(rng.choice(own, size=count, p=weights / weights.sum()))
        profiles += [p] * count
    t = np.asarray(topics)
    coeffs = rng.standard_normal((len(t), sub)) * np.linspace(0.5, 0.1, sub)
    vectors = (
        centres[t] + np.einsum("ns,nsd->nd", coeffs, bases[t]) + 0.015 * rng.standard_normal((len(t), DIM))
    )
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    categories = rng.choice(["article", "post", "code"], size=len(t), p=[0.55, 0.30, 0.15])
    return {"vectors": vectors.astype(np.float32), "profiles": np.asarray(profiles), "categories": categories}


def test_recall_against_exact_search_for_small_and_large_profiles(
    fs: PgFeatureStore, pg_conn: psycopg.Connection[Any]
) -> None:
    started = time.perf_counter()
    shares = {"large": 0.60, "mid": 0.25, "small4": 0.04, "tiny": 0.005, "rest": 0.105}
    corpus = _corpus(20_000, shares, seed=3)
    vectors, profiles, categories = corpus["vectors"], corpus["profiles"], corpus["categories"]
    platform_of = {"article": Platform.MEDIUM, "post": Platform.LINKEDIN, "code": Platform.GITHUB}
    # One chunk per document keeps the bookkeeping trivial; ids map back to rows.
    ids = [uuid.UUID(int=i + 1) for i in range(len(vectors))]
    batch: list[Upsert] = []
    for i in range(len(vectors)):
        batch.append(
            doc(
                ids[i],
                1,
                profile=str(profiles[i]),
                category=Category(str(categories[i])),
                platform=platform_of[str(categories[i])],
                vectors=[vectors[i]],  # an ndarray row: the store takes any float sequence
            )
        )
        if len(batch) == 2000:
            fs.apply(batch, [])
            batch = []
    fs.apply(batch, [])
    # Small partitions stay exact; with 20k rows, lower the threshold so HNSW serves the large ones.
    built = fs.maintain_indexes(min_rows=1000, concurrently=False)
    assert len(built) >= 4
    retriever = PgRetriever(pg_conn, exact_max_rows=1000)
    rng = np.random.default_rng(5)

    for profile in ("large", "tiny"):
        for filtered in (False, True):
            rows = np.flatnonzero(profiles == profile)
            recalls = []
            for r in rng.choice(rows, size=60):
                q = vectors[r] + 0.3 * rng.standard_normal(DIM).astype(np.float32) / np.sqrt(DIM)
                q /= np.linalg.norm(q)
                cats = (Category(str(categories[r])),) if filtered else ()
                mask = profiles == profile
                if filtered:
                    mask &= categories == categories[r]
                cand = np.flatnonzero(mask)
                truth = {ids[i] for i in cand[np.argsort(-(vectors[cand] @ q))[:10]]}
                query = RetrievalQuery(profile, [float(x) for x in q], k=10, categories=cats)
                hits = retriever.search(query)
                recalls.append(len({h.document_id for h in hits} & truth) / 10)
            plans = retriever.plan(query)
            uses_hnsw = any(p.ef_search is not None for p in plans)
            assert uses_hnsw == (profile == "large"), plans
            assert float(np.mean(recalls)) >= 0.99, (profile, filtered, float(np.mean(recalls)))

    # HNSW branches really run on the partition's partial index (never the btree plus a sort),
    # both per category and over the whole profile.
    q = [float(x) for x in vectors[int(np.flatnonzero(profiles == "large")[0])]]
    for cats in ((Category.ARTICLE,), ()):
        query = RetrievalQuery("large", q, k=10, categories=cats)
        statement = retriever._statement(query, retriever.plan(query))
        pg_conn.execute("SET LOCAL enable_sort = off")  # as search() does when a branch uses HNSW
        plan_text = "\n".join(
            row[0]
            for row in pg_conn.execute(
                b"EXPLAIN " + statement.as_bytes(pg_conn), {"q": np.asarray(q, np.float32)}
            )
        )
        pg_conn.rollback()
        assert "Index Scan using chunks_hnsw_" in plan_text, (cats, plan_text)
    assert time.perf_counter() - started < 90

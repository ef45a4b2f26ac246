"""Filtered top-k retrieval: ``PgRetriever.search`` vs exact search, same corpus, same run.

Starts its own embedded Postgres (pgvector 0.6) in a temp dir, loads N synthetic chunks (default
100,000) through the real write path (``PgFeatureStore.apply`` in batches, then
``maintain_indexes``), and queries every profile as serving does (``PgRetriever.search``), with
and without a category filter. Ground truth is brute force in numpy over the same vectors;
the baseline is exact search in SQL (btree on the partition, then sort), timed in the same run.

Corpus: 384-d unit vectors with a low intrinsic dimension, like real sentence embeddings: 300
shared topics in 15 domains (a centre plus a 12-d topic subspace with decaying scales) plus small
isotropic noise. Profiles draw their topics from the same pool, so another profile's chunks sit right
beside yours (the case the filter trap is about). Profiles hold 60 / 25 / 10 / 4 / 0.8 / 0.2 % of
the rows; categories article / post / code ~ 55 / 30 / 15 %, platforms follow the category.
Queries are a real chunk of the profile (of the category, when filtered) plus noise.

Prints per profile and filter: rows, p50/p95 latency (ms), recall@10, and the plan used; the last
line is JSON: chunks, p95_ms_max, recall_min, recall_smallest, recall_largest, exact_p95_ms,
ours_p95_ms, ratio (= exact_p95 / ours_p95).
Run: ``.venv/bin/python bench/retrieval.py`` (about 3 minutes on 2 cores, most of it loading).
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from twin.domain.documents import Category, Platform
from twin.domain.features import Chunk, CleanedDocument, EmbeddedChunk, RetrievalQuery

DIM = 384
PROFILE_SHARES = {"p60": 0.60, "p25": 0.25, "p10": 0.10, "p04": 0.04, "p008": 0.008, "p002": 0.002}
CATEGORY_SHARES = {Category.ARTICLE: 0.55, Category.POST: 0.30, Category.CODE: 0.15}
PLATFORMS = {
    Category.ARTICLE: [Platform.MEDIUM, Platform.SUBSTACK, Platform.WEB],
    Category.POST: [Platform.LINKEDIN],
    Category.CODE: [Platform.GITHUB],
}
CHUNKS_PER_DOC = 8


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def make_corpus(n: int, seed: int = 7) -> dict[str, Any]:
    """N unit vectors with profile, category and platform labels (see the module docstring)."""
    rng = np.random.default_rng(seed)
    n_topics, sub = 300, 12
    centres = _unit(rng.standard_normal((n_topics, DIM)))
    # Topics group into domains and share a common direction, as sentence embeddings do (random
    # pairs of MiniLM sentences have cosine ~0.1, related topics ~0.5): cosine between topics is
    # ~0.65 within a domain and ~0.15 across. Mutually orthogonal topics would be unrealistic, and
    # the hardest case for HNSW (islands its greedy search cannot reach).
    common = _unit(rng.standard_normal(DIM))
    domains = _unit(rng.standard_normal((15, DIM)))
    centres = _unit(0.4 * common + 0.7 * domains[rng.integers(15, size=n_topics)] + 0.6 * centres)
    bases = rng.standard_normal((n_topics, sub, DIM)) / np.sqrt(DIM)
    scales = np.linspace(0.5, 0.1, sub)
    profiles = np.empty(n, dtype=object)
    counts = {p: max(CHUNKS_PER_DOC, round(n * share)) for p, share in PROFILE_SHARES.items()}
    counts[next(iter(counts))] += n - sum(counts.values())
    start = 0
    topics = np.empty(n, dtype=np.int64)
    for p, count in counts.items():
        profiles[start : start + count] = p
        own = rng.choice(n_topics, size=40, replace=False)
        weights = 1.0 / np.arange(1, 41)
        topics[start : start + count] = rng.choice(own, size=count, p=weights / weights.sum())
        start += count
    coeffs = rng.standard_normal((n, sub)) * scales
    vectors = centres[topics] + np.einsum("ns,nsd->nd", coeffs, bases[topics])
    vectors += 0.015 * rng.standard_normal((n, DIM))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    # Documents of CHUNKS_PER_DOC consecutive chunks share profile, category and platform.
    doc_of = np.arange(n) // CHUNKS_PER_DOC
    n_docs = int(doc_of[-1]) + 1
    cats = list(CATEGORY_SHARES)
    doc_cat = rng.choice(len(cats), size=n_docs, p=list(CATEGORY_SHARES.values()))
    doc_platform = [PLATFORMS[cats[c]][rng.integers(len(PLATFORMS[cats[c]]))] for c in doc_cat]
    # A document never spans two profiles: chunks are assigned per profile block above, so only a
    # block boundary could split one; give each boundary document the profile of its first chunk.
    doc_profile = profiles[np.arange(n_docs) * CHUNKS_PER_DOC]
    profiles = doc_profile[doc_of]
    return {
        "vectors": vectors.astype(np.float32),
        "profiles": profiles,
        "categories": np.array([cats[c].value for c in doc_cat], dtype=object)[doc_of],
        "platforms": np.array([p.value for p in doc_platform], dtype=object)[doc_of],
        "doc_of": doc_of,
        "doc_ids": [uuid.UUID(int=int(rng.integers(0, 2**62)) << 64 | i) for i in range(n_docs)],
    }


def load(conn: Any, corpus: dict[str, Any], batch_docs: int = 250) -> float:
    """Write the corpus through PgFeatureStore.apply in batches; return the seconds it took."""
    from twin.adapters.pgvector_store import PgFeatureStore

    store = PgFeatureStore(conn, dimension=DIM)
    vectors, doc_of = corpus["vectors"], corpus["doc_of"]
    now = datetime.now(UTC)
    upserts = []
    start = time.perf_counter()
    n_docs = len(corpus["doc_ids"])
    for d in range(n_docs):
        rows = (
            np.flatnonzero(doc_of == d)
            if d == n_docs - 1
            else np.arange(d * CHUNKS_PER_DOC, (d + 1) * CHUNKS_PER_DOC)
        )
        first = int(rows[0])
        doc = CleanedDocument(
            id=corpus["doc_ids"][d],
            profile=str(corpus["profiles"][first]),
            platform=Platform(corpus["platforms"][first]),
            category=Category(corpus["categories"][first]),
            url=f"https://example.com/{d}",
            title=f"Document {d}",
            content=f"content of document {d}",
            raw_content_hash=f"{d:064x}",
            lsn=1000 + d,
            committed_at=now,
        )
        chunks = [
            EmbeddedChunk(
                Chunk(doc.id, pos, f"chunk {pos} of document {d} " * 20, 120, f"{d}-{pos}"),
                vectors[int(r)],  # type: ignore[arg-type]  # an ndarray row: the store takes any sequence
            )
            for pos, r in enumerate(rows)
        ]
        upserts.append((doc, chunks))
        if len(upserts) == batch_docs or d == n_docs - 1:
            store.apply(upserts, [])
            upserts = []
    return time.perf_counter() - start


def make_queries(corpus: dict[str, Any], per_profile: int, seed: int = 11) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    vectors = corpus["vectors"]
    queries = []
    for profile in PROFILE_SHARES:
        rows = np.flatnonzero(corpus["profiles"] == profile)
        for filtered in (False, True):
            for r in rng.choice(rows, size=per_profile, replace=True):
                q = vectors[r] + 0.3 * rng.standard_normal(DIM).astype(np.float32) / np.sqrt(DIM)
                q /= np.linalg.norm(q)
                cat = str(corpus["categories"][r]) if filtered else None
                queries.append({"profile": profile, "category": cat, "vector": q.astype(np.float32)})
    return queries


def ground_truth(corpus: dict[str, Any], q: dict[str, Any], k: int) -> list[tuple[uuid.UUID, int]]:
    mask = corpus["profiles"] == q["profile"]
    if q["category"] is not None:
        mask &= corpus["categories"] == q["category"]
    rows = np.flatnonzero(mask)
    sims = corpus["vectors"][rows] @ q["vector"]
    top = rows[np.argsort(-sims)[:k]]
    return [
        (corpus["doc_ids"][corpus["doc_of"][r]], int(r - corpus["doc_of"][r] * CHUNKS_PER_DOC)) for r in top
    ]


def exact_sql(conn: Any, q: dict[str, Any], k: int) -> list[tuple[uuid.UUID, int]]:
    """The baseline: exact search as one would write it without ANN (btree filter, then sort)."""
    where = "profile = %(p)s" + (" AND category = %(c)s" if q["category"] else "")
    with conn.transaction():
        conn.execute("SET LOCAL jit = off")
        conn.execute("SET LOCAL enable_indexscan = off")  # no HNSW here, whatever exists
        rows = conn.execute(
            f"SELECT document_id, position FROM chunks WHERE {where} ORDER BY embedding <=> %(q)s LIMIT {k}",
            {"p": q["profile"], "c": q["category"], "q": q["vector"]},
        ).fetchall()
    return [(r[0], r[1]) for r in rows]


def pct(values: list[float], p: float) -> float:
    return float(np.percentile(np.asarray(values), p))


def run(dsn: str, args: argparse.Namespace) -> dict[str, Any]:  # noqa: PLR0915  (one linear script)
    from pgvector.psycopg import register_vector

    from twin.adapters.pgvector_retriever import PgRetriever
    from twin.adapters.pgvector_store import PgFeatureStore
    from twin.adapters.postgres import connect, migrate

    k = 10
    corpus = make_corpus(args.chunks)
    with connect(dsn) as conn:
        migrate(conn)
        register_vector(conn)
        have = conn.execute("SELECT count(*) FROM chunks").fetchone()
        first = conn.execute(
            "SELECT embedding FROM chunks WHERE document_id = %s AND position = 0", (corpus["doc_ids"][0],)
        ).fetchone()
        conn.commit()
        same = first is not None and np.allclose(first[0].to_numpy(), corpus["vectors"][0], atol=1e-6)
        if have is None or have[0] != args.chunks or not same:
            conn.execute("TRUNCATE cleaned_documents, chunks, document_tombstones")
            conn.commit()
            PgFeatureStore(conn).maintain_indexes(concurrently=False)  # nothing is wanted now: drops all
            print(f"loading {args.chunks} chunks through PgFeatureStore.apply...", file=sys.stderr)
            load_s = load(conn, corpus)
            print(f"  {load_s:.1f} s; building partial HNSW indexes...", file=sys.stderr)
            start = time.perf_counter()
            built = PgFeatureStore(conn).maintain_indexes(concurrently=False)
            index_s = time.perf_counter() - start
            print(f"  {len(built)} indexes in {index_s:.1f} s", file=sys.stderr)
            conn.autocommit = True
            conn.execute("VACUUM ANALYZE chunks")
            conn.autocommit = False
        else:
            load_s = index_s = 0.0
        retriever = PgRetriever(
            conn, dimension=DIM, exact_max_rows=args.exact_max, ef_search_base=args.ef_base
        )
        queries = make_queries(corpus, args.queries)

        def ours(q: dict[str, Any]) -> list[tuple[uuid.UUID, int]]:
            cats = (Category(q["category"]),) if q["category"] else ()
            hits = retriever.search(RetrievalQuery(q["profile"], q["vector"], k=k, categories=cats))  # type: ignore[arg-type]
            return [(h.document_id, h.position) for h in hits]

        for q in queries[:: max(1, len(queries) // 100)]:  # warm caches for both paths
            ours(q)
            exact_sql(conn, q, k)
        groups: dict[tuple[str, bool], dict[str, list[float]]] = {}
        exact_ms: list[float] = []
        ours_ms: list[float] = []
        for q in queries:
            truth = ground_truth(corpus, q, k)
            t0 = time.perf_counter()
            got = ours(q)
            t1 = time.perf_counter()
            exact = exact_sql(conn, q, k)
            t2 = time.perf_counter()
            g = groups.setdefault(
                (q["profile"], q["category"] is not None), {"ms": [], "recall": [], "exact": []}
            )
            g["ms"].append((t1 - t0) * 1000)
            g["recall"].append(len(set(got) & set(truth)) / len(truth))
            g["exact"].append(len(set(exact) & set(truth)) / len(truth))
            ours_ms.append((t1 - t0) * 1000)
            exact_ms.append((t2 - t1) * 1000)
        sizes = {p: int((corpus["profiles"] == p).sum()) for p in PROFILE_SHARES}
        print(
            f"{'profile':>8} {'rows':>7} {'filter':>9} {'p50 ms':>7} {'p95 ms':>7} {'recall@10':>9}"
            f" {'min':>5}  plan"
        )
        for (profile, filtered), g in groups.items():
            sample = next(
                q for q in queries if q["profile"] == profile and (q["category"] is not None) == filtered
            )
            cats = (Category(sample["category"]),) if sample["category"] else ()
            plan = retriever.plan(RetrievalQuery(profile, sample["vector"], k=k, categories=cats))  # type: ignore[arg-type]
            plan_s = ",".join(
                f"{p.category[:4]}:{'exact' if p.ef_search is None else 'hnsw' + str(p.ef_search)}"
                for p in plan
            )
            print(
                f"{profile:>8} {sizes[profile]:>7} {'category' if filtered else 'none':>9}"
                f" {pct(g['ms'], 50):7.2f} {pct(g['ms'], 95):7.2f} {np.mean(g['recall']):9.4f}"
                f" {min(g['recall']):5.2f}  {plan_s}"
            )
        assert all(r == 1.0 for g in groups.values() for r in g["exact"]), "exact SQL disagrees with numpy"
        smallest, largest = min(sizes, key=sizes.__getitem__), max(sizes, key=sizes.__getitem__)
        recall = {key: float(np.mean(g["recall"])) for key, g in groups.items()}
        return {
            "chunks": args.chunks,
            "queries": len(queries),
            "p95_ms_max": round(max(pct(g["ms"], 95) for g in groups.values()), 3),
            "recall_min": round(min(recall.values()), 4),
            "recall_smallest": round(min(recall[(smallest, f)] for f in (False, True)), 4),
            "recall_largest": round(min(recall[(largest, f)] for f in (False, True)), 4),
            "ours_p95_ms": round(pct(ours_ms, 95), 3),
            "exact_p95_ms": round(pct(exact_ms, 95), 3),
            "ratio": round(pct(exact_ms, 95) / pct(ours_ms, 95), 2),
            "load_s": round(load_s, 1),
            "index_build_s": round(index_s, 1),
        }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200, help="per profile and filter")
    parser.add_argument("--exact-max", type=int, default=None, help="override EXACT_MAX_ROWS")
    parser.add_argument("--ef-base", type=int, default=None, help="override EF_SEARCH_BASE")
    parser.add_argument("--dsn", help="use this server (and reuse its corpus when the size matches)")
    args = parser.parse_args()
    from twin.adapters import pgvector_store

    args.exact_max = args.exact_max or pgvector_store.EXACT_MAX_ROWS
    args.ef_base = args.ef_base or pgvector_store.EF_SEARCH_BASE
    if args.dsn:
        result = run(args.dsn, args)
    else:
        from twin.adapters.embedded_postgres import EmbeddedPostgres

        with tempfile.TemporaryDirectory() as tmp:
            pg = EmbeddedPostgres(Path(tmp) / "pg", free_port())
            try:
                result = run(pg.start(), args)
            finally:
                pg.stop()
    print(json.dumps(result))


if __name__ == "__main__":
    main()

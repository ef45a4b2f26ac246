"""The feature store and retrieval on Postgres + pgvector.

Writes (:class:`PgFeatureStore`): one transaction per batch; per document the change with the
greatest lsn wins, whatever the order and the number of deliveries (tombstones stop a replayed
older create); chunks of a document are replaced wholesale (one DELETE, one binary COPY).

Retrieval (:class:`PgRetriever`): always within one profile (an empty profile is refused), by
cosine, score = 1 - distance. pgvector 0.6 has no iterative index scans, so a global HNSW index
under a selective WHERE returns too few rows (INFRA.md, "the filter trap"). The design:

- the unit of search is the partition: a whole profile (category ``*``), or one (profile,
  category). A query without a category filter is ONE branch over its profile; a query with
  categories is the UNION ALL of one branch per category, each top-k, merged top-k;
- exact counts per (profile, category, platform) live in ``chunk_counts``, kept by
  statement-level triggers (so COPY, cascaded deletes and TRUNCATE keep them right); the
  retriever caches them per profile for ``stats_ttl_s`` (2 s). A stale count only changes speed:
  every requested category is searched whatever the cache says;
- a branch is searched exactly (btree ``(profile, category, platform)`` then top-N sort,
  ``ORDER BY (embedding <=> q) + 0`` so no index can be used) when its candidate rows are at most
  ``EXACT_MAX_ROWS`` (2000: ~1.3 us a row, so under 3 ms), when its partition has no valid index
  yet, or when the platform filter is so selective that ef_search would exceed pgvector's 1000;
- otherwise it uses the partition's own partial HNSW index (``WHERE profile = <literal> [AND
  category = <literal>]``, built by :meth:`PgFeatureStore.maintain_indexes`, which the feature
  worker runs in the background, once a partition passes 2000 rows), with ``hnsw.ef_search =
  max(150, 2k) * rows / candidates`` (a platform filter raises it by 1/selectivity). Profile
  and category are inlined with ``sql.Literal`` so the planner can match the partial index;
  ``enable_sort = off`` keeps it from preferring btree + sort when statistics are stale (a test
  caught exactly that after a bulk load). There is no global HNSW index, so no plan can fall
  into the filter trap;
- HNSW graphs are built with m=32, ef_construction=200: on the benchmark's clustered corpus,
  m=16-24 with ef_construction=64 left graph "islands" (whole-query misses: recall 0 for ~1 %
  of queries, 0.976-0.995 overall) that no ef_search could fix; the denser graph costs about
  twice the build time (background work) and removed almost all of them. ``ef_search`` 150
  rather than 100: graph builds are random (pgvector draws node levels from an unseeded PRNG),
  and at 100 about one build in three still left ~1 % of queries whole misses on the test
  corpus; at 150 none in 900 queries over three builds;
- an HNSW answer shorter than ``min(k, candidates)`` (a node the graph cannot reach) is
  thrown away and the query runs exactly: never a short answer;
- settings, search and COMMIT go out in one pipeline (one round trip); JIT is off.

Measurements (``bench/retrieval.py`` on this 2-core VM, idle; 100,000 chunks, profiles of
60/25/10/4/0.8/0.2 %, 200 queries per profile with and without a category filter, recall@10
against exact search):

- writes: 100k chunks through ``apply`` in ~4.4 s with no HNSW index present; building the 13
  partial indexes afterwards ~110 s (m=32, ef_construction=200). Incremental HNSW inserts (indexes
  present) are slower (~800 chunks/s at m=24) but still above the embedder's throughput here.
- small profiles (exact): recall 1.0, p95 1.7-2.2 ms; 4 % profile (whole-profile HNSW): 1.0, 2.5 ms.
- large profiles (HNSW): recall 0.990-1.000 (category-filtered 1.000), p95 3.3-5.4 ms.
- overall: p95 4.1 ms over all 2,400 queries, worst profile p95 5.4 ms, worst recall 0.990;
  exact search over the largest profile, the baseline, p95 54 ms (13x slower).
- global HNSW (rejected): recall 0.02 for a 0.5 % profile (INFRA).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
import uuid
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import psycopg
from pgvector.psycopg import register_vector
from psycopg import sql

from twin.domain.documents import Category, Platform
from twin.domain.errors import InvalidSpec
from twin.domain.features import (
    CleanedDocument,
    EmbeddedChunk,
    RawChange,
    RetrievalHit,
    RetrievalQuery,
)

# Partitions (profile, category) with at most this many candidate rows are searched exactly; a
# partition with more gets a partial HNSW index. See the module docstring for the measurements.
EXACT_MAX_ROWS = 2000
# hnsw.ef_search for an unfiltered partition; divided by the platform filter's selectivity.
EF_SEARCH_BASE = 150
EF_SEARCH_MAX = 1000  # pgvector's upper limit for hnsw.ef_search
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 200
_INDEX_PREFIX = "chunks_hnsw_"


# The category of a whole-profile partition (its index serves queries without a category filter).
WHOLE_PROFILE = "*"


def _partition_filter(profile: str, category: str) -> sql.Composed:
    """The WHERE clause of a partition, with literals so the planner can match its partial index."""
    if category == WHOLE_PROFILE:
        return sql.SQL("profile = {}").format(sql.Literal(profile))
    return sql.SQL("profile = {} AND category = {}").format(sql.Literal(profile), sql.Literal(category))


def index_name(profile: str, category: str) -> str:
    """The partial HNSW index of one partition: derived, so that no user data becomes an identifier.

    Must agree with the SQL in the migration's comment: ``left(md5(profile || E'\\n' || category), 20)``.
    """
    digest = hashlib.md5(f"{profile}\n{category}".encode(), usedforsecurity=False).hexdigest()
    return _INDEX_PREFIX + digest[:20]


def column_dimension(conn: psycopg.Connection[Any]) -> int:
    """The declared dimension of ``chunks.embedding`` (pgvector keeps it in ``atttypmod``)."""
    row = conn.execute(
        "SELECT atttypmod FROM pg_attribute WHERE attrelid = 'chunks'::regclass AND attname = 'embedding'"
    ).fetchone()
    conn.commit()
    if row is None:
        raise InvalidSpec("the feature store has no chunks.embedding column: run the migrations first")
    return int(row[0])


def _check_dimension(conn: psycopg.Connection[Any], dimension: int | None) -> int:
    stored = column_dimension(conn)
    if dimension is not None and dimension != stored:
        raise InvalidSpec(
            f"the embedder makes {dimension}-d vectors but the feature store's chunks.embedding column "
            f"holds {stored}-d vectors: use an embedder of dimension {stored}, or add a migration that "
            "changes the column (and re-embed every chunk)"
        )
    return stored


def _text(value: bytes | str | None) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return value.decode("utf-8", errors="backslashreplace")


# ---------------------------------------------------------------------------------------------
# Writes
# ---------------------------------------------------------------------------------------------

_UPSERT_DOCUMENT = """
INSERT INTO cleaned_documents AS d (
    id, profile, platform, category, url, title, content, raw_content_hash, lsn, committed_at, metadata)
VALUES (%(id)s, %(profile)s, %(platform)s, %(category)s, %(url)s, %(title)s, %(content)s,
        %(raw_content_hash)s, %(lsn)s, %(committed_at)s, %(metadata)s)
ON CONFLICT (id) DO UPDATE SET
    profile = EXCLUDED.profile, platform = EXCLUDED.platform, category = EXCLUDED.category,
    url = EXCLUDED.url, title = EXCLUDED.title, content = EXCLUDED.content,
    raw_content_hash = EXCLUDED.raw_content_hash, lsn = EXCLUDED.lsn,
    committed_at = EXCLUDED.committed_at, metadata = EXCLUDED.metadata, updated_at = now()
"""

_COPY_CHUNKS = (
    "COPY chunks (document_id, position, profile, category, platform, url, title, text, token_count,"
    " content_hash, metadata, embedding) FROM STDIN (FORMAT BINARY)"
)
_CHUNK_TYPES = [
    "uuid",
    "int4",
    "text",
    "text",
    "text",
    "text",
    "text",
    "text",
    "int4",
    "text",
    "jsonb",
    "vector",
]


def _lock_key(document_id: uuid.UUID) -> int:
    return int.from_bytes(document_id.bytes[:8], "big", signed=True)


@dataclass
class _State:
    """One document's state while a batch is replayed: stored lsn (None: absent), tombstone lsn."""

    lsn: int | None
    tombstone: int | None
    upsert: tuple[CleanedDocument, Sequence[EmbeddedChunk]] | None = None  # the write this batch makes
    removed: bool = False  # the stored row goes
    tombstone_changed: bool = False


def _replay(
    states: dict[uuid.UUID, _State],
    events: Sequence[tuple[int, int, int]],
    upserts: Sequence[tuple[CleanedDocument, Sequence[EmbeddedChunk]]],
    deletes: Sequence[tuple[uuid.UUID, int]],
) -> int:
    """Apply a batch's changes, in lsn order, to the documents' states; return how many took effect."""
    effective = 0
    for lsn, kind, index in events:
        if kind == 0:
            doc, chunks = upserts[index]
            st = states[doc.id]
            if (st.lsn is None or lsn >= st.lsn) and (st.tombstone is None or lsn > st.tombstone):
                st.lsn, st.upsert, st.removed = lsn, (doc, chunks), False
                if st.tombstone is not None:
                    st.tombstone, st.tombstone_changed = None, True
                effective += 1
            continue
        st = states[deletes[index][0]]
        if st.lsn is None or lsn >= st.lsn:
            took = st.lsn is not None
            st.lsn, st.upsert, st.removed = None, None, True
            if st.tombstone is None or lsn > st.tombstone:
                st.tombstone, st.tombstone_changed, took = lsn, True, True
            effective += int(took)
    return effective


class PgFeatureStore:
    """The :class:`twin.ports.FeatureStore` on Postgres + pgvector. One connection, one thread.

    Ordering rules (per document id, ``lsn`` = the change's WAL position):

    - an upsert takes effect when its lsn is >= the stored document's lsn and > the tombstone's;
      it replaces the document row and all its chunks, and removes the (older) tombstone;
    - a delete takes effect when the document is absent or its lsn is >= the stored lsn (on a tie
      the delete wins, so that every order converges); it removes the row (chunks cascade) and
      keeps the larger of its lsn and any earlier tombstone's.

    So the state of a document is always the one its greatest change makes, whatever the order or
    the number of times changes arrive. Documents are locked (advisory locks, in key order) for
    the transaction, so concurrent workers applying the same document serialise instead of racing.
    """

    def __init__(self, conn: psycopg.Connection[Any], *, dimension: int | None = None) -> None:
        self._conn = conn
        register_vector(conn)
        self.dimension = _check_dimension(conn, dimension)

    def versions(self, ids: Collection[uuid.UUID]) -> dict[uuid.UUID, tuple[int, str | None]]:
        if not ids:
            return {}
        id_list = list(ids)
        found: dict[uuid.UUID, tuple[int, str | None]] = {}
        for doc_id, lsn in self._conn.execute(
            "SELECT document_id, lsn FROM document_tombstones WHERE document_id = ANY(%s)", (id_list,)
        ):
            found[doc_id] = (lsn, None)
        for doc_id, lsn, content_hash in self._conn.execute(
            "SELECT id, lsn, raw_content_hash FROM cleaned_documents WHERE id = ANY(%s)", (id_list,)
        ):
            found[doc_id] = (lsn, content_hash)  # a live document outranks an older tombstone
        self._conn.commit()  # end the read transaction
        return found

    def apply(
        self,
        upserts: Sequence[tuple[CleanedDocument, Sequence[EmbeddedChunk]]],
        deletes: Sequence[tuple[uuid.UUID, int]],
    ) -> int:
        for doc, chunks in upserts:
            for ec in chunks:
                if ec.chunk.document_id != doc.id:
                    raise ValueError(
                        f"chunk {ec.chunk.position} of {doc.id} names document {ec.chunk.document_id}"
                    )
                if len(ec.embedding) != self.dimension:
                    raise ValueError(
                        f"chunk {ec.chunk.position} of {doc.id} has a {len(ec.embedding)}-d embedding;"
                        f" the store holds {self.dimension}-d vectors"
                    )
        ids = sorted({doc.id for doc, _ in upserts} | {doc_id for doc_id, _ in deletes}, key=_lock_key)
        if not ids:
            return 0
        # Every change, ordered by lsn (a delete after an upsert of the same lsn: the delete wins).
        events: list[tuple[int, int, int]] = []  # (lsn, 0 upsert / 1 delete, index)
        events += [(doc.lsn, 0, i) for i, (doc, _) in enumerate(upserts)]
        events += [(lsn, 1, i) for i, (_, lsn) in enumerate(deletes)]
        events.sort()

        with self._conn.transaction():
            self._conn.execute(
                "SELECT pg_advisory_xact_lock(k) FROM unnest(%s::bigint[]) AS k",
                ([_lock_key(i) for i in ids],),
            )
            states = {i: _State(None, None) for i in ids}
            for doc_id, lsn in self._conn.execute(
                "SELECT id, lsn FROM cleaned_documents WHERE id = ANY(%s)", (ids,)
            ):
                states[doc_id].lsn = lsn
            for doc_id, lsn in self._conn.execute(
                "SELECT document_id, lsn FROM document_tombstones WHERE document_id = ANY(%s)", (ids,)
            ):
                states[doc_id].tombstone = lsn
            stored = {i for i, s in states.items() if s.lsn is not None}

            effective = _replay(states, events, upserts, deletes)
            self._write(states, stored)
        return effective

    def _write(self, states: dict[uuid.UUID, _State], stored: set[uuid.UUID]) -> None:
        conn = self._conn
        writes = [s.upsert for s in states.values() if s.upsert is not None]
        removed = [i for i, s in states.items() if s.removed and s.upsert is None and i in stored]
        tombstones = [(i, s.tombstone) for i, s in states.items() if s.tombstone_changed and s.tombstone]
        untombstoned = [i for i, s in states.items() if s.tombstone_changed and s.tombstone is None]
        if removed:
            conn.execute("DELETE FROM cleaned_documents WHERE id = ANY(%s)", (removed,))
        if untombstoned:
            conn.execute("DELETE FROM document_tombstones WHERE document_id = ANY(%s)", (untombstoned,))
        if tombstones:
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO document_tombstones (document_id, lsn) VALUES (%s, %s)"
                    " ON CONFLICT (document_id) DO UPDATE SET lsn = EXCLUDED.lsn, deleted_at = now()",
                    tombstones,
                )
        if not writes:
            return
        with conn.cursor() as cur:
            cur.executemany(
                _UPSERT_DOCUMENT,
                [
                    {
                        "id": d.id,
                        "profile": d.profile,
                        "platform": d.platform.value,
                        "category": d.category.value,
                        "url": d.url,
                        "title": d.title,
                        "content": d.content,
                        "raw_content_hash": d.raw_content_hash,
                        "lsn": d.lsn,
                        "committed_at": d.committed_at,
                        "metadata": json.dumps(d.metadata, ensure_ascii=False, default=str),
                    }
                    for d, _ in writes
                ],
            )
        # Replace chunks wholesale: one DELETE, one COPY. Readers see the old set or the new one.
        conn.execute("DELETE FROM chunks WHERE document_id = ANY(%s)", ([d.id for d, _ in writes],))
        with conn.cursor() as cur, cur.copy(_COPY_CHUNKS) as copy:
            copy.set_types(_CHUNK_TYPES)
            for d, chunks in writes:
                for ec in chunks:
                    c = ec.chunk
                    copy.write_row(
                        (
                            d.id,
                            c.position,
                            d.profile,
                            d.category.value,
                            d.platform.value,
                            d.url,
                            d.title,
                            c.text,
                            c.token_count,
                            c.content_hash,
                            c.metadata,
                            np.asarray(ec.embedding, dtype=np.float32),
                        )
                    )

    def cleaned_documents(self, profile: str) -> list[CleanedDocument]:
        """The training snapshot of ``profile``: every cleaned document, ordered by id."""
        rows = self._conn.execute(
            "SELECT id, profile, platform, category, url, title, content, raw_content_hash, lsn,"
            " committed_at, metadata FROM cleaned_documents WHERE profile = %s ORDER BY id",
            (profile,),
        ).fetchall()
        self._conn.commit()
        return [
            CleanedDocument(
                id=r[0],
                profile=r[1],
                platform=Platform(r[2]),
                category=Category(r[3]),
                url=r[4],
                title=r[5],
                content=r[6],
                raw_content_hash=r[7],
                lsn=r[8],
                committed_at=r[9],
                metadata=r[10] or {},
            )
            for r in rows
        ]

    def dead_letter(self, change: RawChange, reason: str) -> None:
        with self._conn.transaction():
            self._conn.execute(
                "INSERT INTO dead_letters (position, reason, key, value) VALUES (%s, %s, %s, %s)",
                (change.position, reason, _text(change.key), _text(change.value)),
            )

    def maintain_indexes(
        self,
        *,
        min_rows: int = EXACT_MAX_ROWS,
        concurrently: bool = True,
        maintenance_work_mem: str = "256MB",
    ) -> list[str]:
        """Create the partial HNSW index of every partition past ``min_rows``; drop those of
        partitions that shrank below a quarter of it, and any left invalid by a failed build.

        Run it outside :meth:`apply` (the feature worker calls it every so often): a concurrent
        build does not block writers. Until a partition's index exists, retrieval searches it
        exactly: slower, never wrong. Returns the names of the indexes created.
        """
        conn = self._conn
        # Partitions: each (profile, category), and each whole profile (category "*"), which
        # serves unfiltered queries with one index scan instead of one per category.
        wanted = {
            index_name(p, c): (p, c, n)
            for p, c, n in conn.execute(
                "SELECT profile, category, sum(n) FROM chunk_counts GROUP BY profile, category"
                " UNION ALL SELECT profile, %s, sum(n) FROM chunk_counts GROUP BY profile",
                (WHOLE_PROFILE,),
            )
        }
        existing: dict[str, bool] = dict(
            conn.execute(
                "SELECT r.relname, i.indisvalid FROM pg_index i JOIN pg_class r ON r.oid = i.indexrelid"
                " WHERE i.indrelid = 'chunks'::regclass AND r.relname LIKE %s",
                (_INDEX_PREFIX + "%",),
            ).fetchall()
        )
        conn.commit()
        drop = [
            name
            for name, valid in existing.items()
            if not valid or name not in wanted or wanted[name][2] < min_rows // 4
        ]
        create = [
            (name, p, c)
            for name, (p, c, n) in sorted(wanted.items(), key=lambda kv: -kv[1][2])
            if n >= min_rows and (name in drop or name not in existing)
        ]
        if not drop and not create:
            return []
        conc = sql.SQL("CONCURRENTLY ") if concurrently else sql.SQL("")
        previous = conn.autocommit
        conn.autocommit = True  # CREATE/DROP INDEX CONCURRENTLY cannot run in a transaction
        try:
            conn.execute("SELECT set_config('maintenance_work_mem', %s, false)", (maintenance_work_mem,))
            for name in drop:
                conn.execute(sql.SQL("DROP INDEX {}IF EXISTS {}").format(conc, sql.Identifier(name)))
            for name, profile, category in create:
                conn.execute(
                    sql.SQL(
                        "CREATE INDEX {}IF NOT EXISTS {} ON chunks USING hnsw (embedding vector_cosine_ops)"
                        " WITH (m = {}, ef_construction = {}) WHERE {}"
                    ).format(
                        conc,
                        sql.Identifier(name),
                        sql.Literal(HNSW_M),
                        sql.Literal(HNSW_EF_CONSTRUCTION),
                        _partition_filter(profile, category),
                    )
                )
            conn.execute("RESET maintenance_work_mem")
        finally:
            conn.autocommit = previous
        return [name for name, _, _ in create]


# ---------------------------------------------------------------------------------------------
# Retrieval
# ---------------------------------------------------------------------------------------------

_PARTITIONS = """
SELECT c.category, c.platform, c.n,
       coalesce((SELECT i.indisvalid FROM pg_index i WHERE i.indexrelid =
                 to_regclass(%(prefix)s || left(md5(c.profile || E'\\n' || c.category), 20))), false)
FROM chunk_counts c
WHERE c.profile = %(profile)s AND c.n > 0
"""

_COLUMNS = sql.SQL(
    "document_id, position, category, platform, url, title, text, embedding <=> %(q)s AS distance"
)


@dataclass(frozen=True)
class Plan:
    """How one query searches one (profile, category) partition."""

    category: str
    rows: int  # rows in the partition
    candidates: int  # rows that pass the platform filter
    ef_search: int | None  # None: exact search


class PgRetriever:
    """The :class:`twin.ports.Retriever` on pgvector: exact or HNSW per partition, see the module doc."""

    def __init__(
        self,
        conn: psycopg.Connection[Any],
        *,
        dimension: int | None = None,
        exact_max_rows: int = EXACT_MAX_ROWS,
        ef_search_base: int = EF_SEARCH_BASE,
        ef_search_max: int = EF_SEARCH_MAX,
        stats_ttl_s: float = 2.0,
    ) -> None:
        self._conn = conn
        register_vector(conn)
        self.dimension = _check_dimension(conn, dimension)
        self._exact_max_rows = exact_max_rows
        self._ef_base = ef_search_base
        self._ef_max = ef_search_max
        self._stats_ttl_s = stats_ttl_s
        self._cache: dict[str, tuple[float, dict[tuple[str, str], tuple[int, bool]]]] = {}
        self._profile_index_cache: dict[str, tuple[float, bool]] = {}

    def plan(self, query: RetrievalQuery) -> list[Plan]:
        """The per-partition plan :meth:`search` would run (also for tests and the benchmark)."""
        self._validate(query)
        return self._plan(query)

    def search(self, query: RetrievalQuery) -> list[RetrievalHit]:
        self._validate(query)
        if query.k <= 0:
            return []
        plans = self._plan(query)
        rows = self._run(query, plans)
        if any(p.ef_search is not None for p in plans) and len(rows) < min(
            query.k, sum(p.candidates for p in plans)
        ):
            # An HNSW graph can leave a few nodes unreachable from its entry point, so an index scan
            # may come back short although the partition holds k rows. A short answer is never
            # acceptable: search those partitions exactly instead (rare, and still correct).
            rows = self._run(query, [replace(p, ef_search=None) for p in plans])
        return [
            RetrievalHit(
                document_id=document_id,
                position=position,
                profile=query.profile,
                category=Category(category),
                platform=Platform(platform),
                url=url,
                title=title,
                text=text,
                score=1.0 - float(distance),
            )
            for document_id, position, category, platform, url, title, text, distance in rows
        ]

    def _run(self, query: RetrievalQuery, plans: Sequence[Plan]) -> list[tuple[Any, ...]]:
        hnsw = [p.ef_search for p in plans if p.ef_search is not None]
        conn = self._conn
        # One round trip: BEGIN, the settings, the search and COMMIT go out as one pipeline.
        with conn.pipeline(), conn.transaction():
            # JIT would compile for tens of ms what runs here in one: never worth it for top-k.
            # With stale statistics the planner may prefer btree + sort over the partial HNSW
            # index (seen: estimates of 1 row right after a bulk load); enable_sort = off leaves
            # it the index. Exact branches still sort: no other plan can serve them.
            conn.execute(
                "SELECT set_config('hnsw.ef_search', %s, true), set_config('jit', 'off', true),"
                " set_config('enable_sort', %s, true)",
                (str(max(hnsw, default=self._ef_base)), "off" if hnsw else "on"),
            )
            cur = conn.execute(
                self._statement(query, plans), {"q": np.asarray(query.embedding, dtype=np.float32)}
            )
        return cur.fetchall()

    def _validate(self, query: RetrievalQuery) -> None:
        if not query.profile:
            raise ValueError("a retrieval query must name a profile: retrieval never crosses owners")
        if len(query.embedding) != self.dimension:
            raise ValueError(
                f"the query embedding has {len(query.embedding)} dimensions; the store holds {self.dimension}"
            )
        if not all(math.isfinite(x) for x in query.embedding):
            raise ValueError("the query embedding holds a NaN or an infinity")

    def _partitions(self, profile: str) -> dict[tuple[str, str], tuple[int, bool]]:
        """(category, platform) → (rows, partition indexed?), cached for ``stats_ttl_s``.

        A stale entry only costs speed, never results: every category the query asks for is
        searched whatever the counts say (an unknown one exactly), and an HNSW plan for an index
        that has gone falls back to exact search inside Postgres.
        """
        now = time.monotonic()
        cached = self._cache.get(profile)
        if cached is not None and now - cached[0] < self._stats_ttl_s:
            return cached[1]
        with self._conn.transaction():
            found = {
                (category, platform): (n, valid)
                for category, platform, n, valid in self._conn.execute(
                    _PARTITIONS, {"prefix": _INDEX_PREFIX, "profile": profile}
                )
            }
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[profile] = (now, found)
        return found

    def _profile_index_valid(self, profile: str) -> bool:
        """Whether the profile's own HNSW index exists and is valid, cached like the counts."""
        now = time.monotonic()
        cached = self._profile_index_cache.get(profile)
        if cached is not None and now - cached[0] < self._stats_ttl_s:
            return cached[1]
        with self._conn.transaction():
            row = self._conn.execute(
                "SELECT coalesce((SELECT indisvalid FROM pg_index"
                " WHERE indexrelid = to_regclass(%s)), false)",
                (index_name(profile, WHOLE_PROFILE),),
            ).fetchone()
        valid = bool(row and row[0])
        if len(self._profile_index_cache) > 10_000:
            self._profile_index_cache.clear()
        self._profile_index_cache[profile] = (now, valid)
        return valid

    def _plan(self, query: RetrievalQuery) -> list[Plan]:
        if not query.categories or {c.value for c in query.categories} == {c.value for c in Category}:
            whole = self._plan_whole_profile(query)
            if whole is not None:
                return [whole]
        return self._plan_per_category(query)

    def _plan_whole_profile(self, query: RetrievalQuery) -> Plan | None:
        """One branch for an unfiltered query: the profile's own index, or one exact scan when the
        profile is small. None when the profile is large but its index is not built yet."""
        platforms = {p.value for p in query.platforms}
        partitions = self._partitions(query.profile)
        n = sum(rows for rows, _ in partitions.values())
        m = sum(
            rows for (_, platform), (rows, _) in partitions.items() if not platforms or platform in platforms
        )
        if m <= self._exact_max_rows:
            return Plan(WHOLE_PROFILE, n, m, None)
        if not self._profile_index_valid(query.profile):
            return None
        need = math.ceil(max(self._ef_base, 2 * query.k) * n / m)
        return Plan(WHOLE_PROFILE, n, m, need) if need <= self._ef_max else None

    def _plan_per_category(self, query: RetrievalQuery) -> list[Plan]:
        wanted = {c.value for c in query.categories} or {c.value for c in Category}
        platforms = {p.value for p in query.platforms}
        rows = dict.fromkeys(wanted, 0)
        candidates = dict.fromkeys(wanted, 0)
        indexed = dict.fromkeys(wanted, False)
        for (category, platform), (n, valid) in self._partitions(query.profile).items():
            if category not in wanted:
                continue
            rows[category] += n
            candidates[category] += n if not platforms or platform in platforms else 0
            indexed[category] = valid
        plans = []
        for category in sorted(wanted):
            n, m = rows[category], candidates[category]
            ef: int | None = None
            if indexed[category] and m > self._exact_max_rows:
                # The index scan yields ef_search rows of the partition; the platform filter keeps a
                # share m/n of them, so ef_search grows with 1/selectivity to keep the same yield.
                need = math.ceil(max(self._ef_base, 2 * query.k) * n / m)
                ef = need if need <= self._ef_max else None  # beyond pgvector's limit: exact
            plans.append(Plan(category, n, m, ef))
        return plans

    def _statement(self, query: RetrievalQuery, plans: Iterable[Plan]) -> sql.Composed:
        branches = []
        for p in plans:
            where = _partition_filter(query.profile, p.category)
            if query.platforms:
                where = sql.SQL("{} AND platform = ANY({})").format(
                    where, sql.Literal(sorted({x.value for x in query.platforms}))
                )
            # Profile and category are literals, so that the planner can match the partition's
            # partial index. Exact branches order by distance + 0, which no index can serve: the
            # planner must read the partition (btree) and sort, whatever its estimates say.
            order = (
                sql.SQL("embedding <=> %(q)s")
                if p.ef_search is not None
                else sql.SQL("(embedding <=> %(q)s) + 0")
            )
            branches.append(
                sql.SQL("(SELECT {} FROM chunks WHERE {} ORDER BY {} LIMIT {})").format(
                    _COLUMNS, where, order, sql.Literal(query.k)
                )
            )
        return sql.SQL("SELECT * FROM ({}) AS hits ORDER BY distance LIMIT {}").format(
            sql.SQL(" UNION ALL ").join(branches), sql.Literal(query.k)
        )

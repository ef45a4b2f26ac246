"""Profile-scoped retrieval on pgvector: exact or HNSW per partition, never a short answer.

:class:`PgRetriever` searches always within one profile (an empty profile is refused), by cosine,
score = 1 - distance. pgvector 0.6 has no iterative index scans, so a global HNSW index under a
selective WHERE returns too few rows ("the filter trap": recall 0.02 for a 0.5 % profile, see
docs/decisions.md). The design:

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
  category = <literal>]``, built by :func:`twin.adapters.pgvector_indexes.maintain_indexes`, which the feature
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

The measurements behind these numbers are in ``docs/decisions.md`` (retrieval) and
``docs/benchmarks.md``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import psycopg
from pgvector.psycopg import register_vector
from psycopg import sql

from twin.adapters.pgvector_store import (
    _INDEX_PREFIX,
    EF_SEARCH_BASE,
    EF_SEARCH_MAX,
    EXACT_MAX_ROWS,
    WHOLE_PROFILE,
    _check_dimension,
    _partition_filter,
    index_name,
)
from twin.domain.documents import Category, Platform
from twin.domain.features import RetrievalHit, RetrievalQuery

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

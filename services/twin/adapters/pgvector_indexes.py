"""Partial HNSW indexes per feature-store partition: built as partitions grow, dropped as they shrink.

Retrieval (:mod:`twin.adapters.pgvector_retriever`) searches a partition exactly until its index
exists, so this runs in the background (the feature worker calls it every so often).
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from twin.adapters.pgvector_store import (
    _INDEX_PREFIX,
    EXACT_MAX_ROWS,
    HNSW_EF_CONSTRUCTION,
    HNSW_M,
    WHOLE_PROFILE,
    _partition_filter,
    index_name,
)


def maintain_indexes(
    conn: psycopg.Connection[Any],
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

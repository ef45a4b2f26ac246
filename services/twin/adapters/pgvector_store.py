"""The feature store and retrieval on Postgres + pgvector.

Writes (:class:`PgFeatureStore`): one transaction per batch; per document the change with the
greatest lsn wins, whatever the order and the number of deliveries (tombstones stop a replayed
older create); chunks of a document are replaced wholesale (one DELETE, one binary COPY).

Retrieval over these tables is :mod:`twin.adapters.pgvector_retriever`.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
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
)

# Partitions (profile, category) with at most this many candidate rows are searched exactly; a
# partition with more gets a partial HNSW index (twin.adapters.pgvector_retriever says why; the
# measurements are in docs/decisions.md).
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
        """See :func:`twin.adapters.pgvector_indexes.maintain_indexes` (on this store's connection)."""
        from twin.adapters.pgvector_indexes import maintain_indexes

        return maintain_indexes(
            self._conn,
            min_rows=min_rows,
            concurrently=concurrently,
            maintenance_work_mem=maintenance_work_mem,
        )

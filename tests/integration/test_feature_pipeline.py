"""FeaturePipeline.handle against the real store, with the hashing embedder at the model seam.

The real model runs in test_features_embedded.py / test_features_kafka.py; here the batch
logic is checked fast: newest change wins within a batch, stale and unchanged changes cost no
embedding, tombstones are skipped, poison goes to the dead-letter table.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import psycopg

from support.fake_embedder import HashingEmbedder
from support.features import articles, edited
from twin.adapters.pgvector_store import PgFeatureStore
from twin.domain.documents import RawDocument
from twin.domain.features import RawChange
from twin.features.pipeline import FeaturePipeline


class CountingEmbedder(HashingEmbedder):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0
        self.texts = 0

    def embed(self, texts: Any) -> list[list[float]]:
        self.calls += 1
        self.texts += len(texts)
        return super().embed(texts)


def envelope(op: str, doc: RawDocument | None, lsn: int, doc_id: uuid.UUID | None = None) -> RawChange:
    row = None
    if doc is not None:
        row = {
            **doc.model_dump(mode="json"),
            "metadata": json.dumps(doc.metadata),
        }
    identity = str(doc.id if doc is not None else doc_id)
    value = {
        "before": {"id": identity} if op == "d" else None,
        "after": row if op != "d" else None,
        "source": {
            "connector": "postgresql",
            "schema": "public",
            "table": "raw_documents",
            "lsn": lsn,
            "ts_ms": 1_700_000_000_000 + lsn,
            "snapshot": "false",
        },
        "op": op,
        "ts_ms": 1_700_000_000_000 + lsn,
    }
    return RawChange(key=json.dumps({"id": identity}), value=json.dumps(value), position=f"test@{lsn}")


def test_batches_apply_newest_skip_stale_and_unchanged_and_dead_letter_poison(
    pg_conn: psycopg.Connection[Any],
) -> None:
    embedder = CountingEmbedder()
    pipeline = FeaturePipeline(PgFeatureStore(pg_conn, dimension=embedder.dimension), embedder)
    a, b = articles(2)
    a2 = edited(a, "A second thought.")

    report = pipeline.handle(
        [
            envelope("c", a, 10),
            envelope("u", a2, 20),  # newer version of a in the same batch: only this one counts
            envelope("c", b, 30),
            RawChange(key=json.dumps({"id": str(b.id)}), value=None, position="tombstone"),
            RawChange(key=None, value="{not json", position="poison@1"),
        ]
    )
    assert (report.applied, report.stale, report.tombstones, report.dead_lettered) == (2, 1, 1, 1)
    texts_after_first = embedder.texts
    stored = dict(pg_conn.execute("SELECT id, raw_content_hash FROM cleaned_documents").fetchall())
    assert stored == {a.id: a2.content_hash, b.id: b.content_hash}

    # A replay of the whole batch (at-least-once delivery): nothing applied, nothing embedded.
    replay = pipeline.handle([envelope("c", a, 10), envelope("u", a2, 20), envelope("c", b, 30)])
    assert replay.applied == 0 and replay.stale == 3
    # A snapshot read of content the store already has, at a newer position: skipped unembedded.
    snapshot = pipeline.handle([envelope("r", b, 40)])
    assert snapshot.unchanged == 1 and snapshot.applied == 0
    assert embedder.texts == texts_after_first

    # A delete, then an older create delivered late: the document stays deleted.
    pipeline.handle([envelope("d", None, 50, doc_id=a.id)])
    late = pipeline.handle([envelope("c", a, 15)])
    assert late.applied == 0
    ids = {r[0] for r in pg_conn.execute("SELECT id FROM cleaned_documents").fetchall()}
    chunk_docs = {r[0] for r in pg_conn.execute("SELECT DISTINCT document_id FROM chunks").fetchall()}
    assert ids == chunk_docs == {b.id}
    # Undecodable text (a body of replacement characters) is poison too; the stream goes on.
    garbage = edited(b, "\ufffd" * 2000, url=f"{b.canonical_url}-garbage")
    after = pipeline.handle([envelope("c", garbage, 60)])
    assert (after.dead_lettered, after.applied) == (1, 0)
    reasons = [r[0] for r in pg_conn.execute("SELECT reason FROM dead_letters ORDER BY id").fetchall()]
    assert len(reasons) == 2 and "JSON" in reasons[0] and str(garbage.id) in reasons[1], reasons

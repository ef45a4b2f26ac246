"""The consume-clean-chunk-embed-upsert step, shared by both runtimes.

:meth:`FeaturePipeline.handle` takes one batch of raw changes from a change feed and returns
only once its effects are in the store, so the feed may commit its position afterwards
(at-least-once). Within a batch only the newest change per document counts; changes the store
already holds (by lsn) or whose content it already has are skipped without embedding, which
makes replays cheap as well as harmless. Poison changes go to the dead-letter table.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from twin import observability as obs
from twin.domain.chunking import ChunkPolicy, chunk_document
from twin.domain.cleaning import clean_document
from twin.domain.envelope import decode_change
from twin.domain.errors import PoisonEvent
from twin.domain.features import ChangeEvent, ChangeOp, Chunk, CleanedDocument, EmbeddedChunk, RawChange
from twin.ports import Embedder, FeatureStore


@dataclass
class BatchReport:
    received: int = 0
    applied: int = 0
    stale: int = 0
    unchanged: int = 0
    dead_lettered: int = 0
    tombstones: int = 0
    chunks: int = 0
    freshness_s: list[float] = field(default_factory=list)


class FeaturePipeline:
    def __init__(
        self,
        store: FeatureStore,
        embedder: Embedder,
        *,
        policy: ChunkPolicy | None = None,
        max_content_chars: int = 2_000_000,
    ) -> None:
        self.store = store
        self.embedder = embedder
        self.policy = policy or ChunkPolicy()
        self.max_content_chars = max_content_chars

    def _poison(self, raw: RawChange, error: PoisonEvent, op: str, report: BatchReport) -> None:
        self.store.dead_letter(raw, str(error))
        report.dead_lettered += 1
        obs.FEATURE_DEAD_LETTERS.inc()
        obs.FEATURE_EVENTS.labels(op=op, outcome="dead_lettered").inc()

    def _decode(
        self, batch: Sequence[RawChange], report: BatchReport
    ) -> dict[uuid.UUID, tuple[RawChange, ChangeEvent]]:
        newest: dict[uuid.UUID, tuple[RawChange, ChangeEvent]] = {}
        for raw in batch:
            try:
                event = decode_change(raw, max_content_chars=self.max_content_chars)
            except PoisonEvent as exc:
                self._poison(raw, exc, "unknown", report)
                continue
            if event is None:
                report.tombstones += 1
                obs.FEATURE_EVENTS.labels(op="tombstone", outcome="tombstone").inc()
                continue
            held = newest.get(event.document_id)
            if held is None or held[1].lsn <= event.lsn:
                if held is not None:  # superseded within the batch
                    report.stale += 1
                    obs.FEATURE_EVENTS.labels(op=held[1].op.value, outcome="stale").inc()
                newest[event.document_id] = (raw, event)
            else:
                report.stale += 1
                obs.FEATURE_EVENTS.labels(op=event.op.value, outcome="stale").inc()
        return newest

    def handle(self, batch: Sequence[RawChange]) -> BatchReport:
        report = BatchReport(received=len(batch))
        newest = self._decode(batch, report)
        versions = self.store.versions(list(newest)) if newest else {}
        deletes: list[tuple[uuid.UUID, int]] = []
        prepared: list[tuple[CleanedDocument, list[Chunk]]] = []
        applied: list[ChangeEvent] = []
        for raw, event in newest.values():
            stored = versions.get(event.document_id)
            if stored is not None and stored[0] >= event.lsn:
                report.stale += 1
                obs.FEATURE_EVENTS.labels(op=event.op.value, outcome="stale").inc()
                continue
            if event.op is ChangeOp.DELETE:
                deletes.append((event.document_id, event.lsn))
                applied.append(event)
                continue
            assert event.document is not None
            if stored is not None and stored[1] == event.document.content_hash:
                report.unchanged += 1  # a replay or snapshot of content the store already has
                obs.FEATURE_EVENTS.labels(op=event.op.value, outcome="unchanged").inc()
                continue
            try:
                cleaned = clean_document(event.document, lsn=event.lsn, committed_at=event.committed_at)
                chunks = chunk_document(
                    cleaned,
                    self.embedder.count_tokens,
                    self.policy,
                    max_model_tokens=self.embedder.max_tokens,
                )
            except PoisonEvent as exc:
                self._poison(raw, exc, event.op.value, report)
                continue
            prepared.append((cleaned, chunks))
            applied.append(event)
        texts = [c.text for _, chunks in prepared for c in chunks]
        started = time.perf_counter()
        vectors = self.embedder.embed(texts) if texts else []
        if texts:
            obs.EMBEDDING_BATCH_SECONDS.observe(time.perf_counter() - started)
        upserts: list[tuple[CleanedDocument, list[EmbeddedChunk]]] = []
        cursor = 0
        for cleaned, chunks in prepared:
            upserts.append((cleaned, [EmbeddedChunk(c, vectors[cursor + i]) for i, c in enumerate(chunks)]))
            cursor += len(chunks)
        if upserts or deletes:
            self.store.apply(upserts, deletes)
        now = datetime.now(UTC)
        report.applied = len(applied)
        report.chunks = len(texts)
        obs.FEATURE_CHUNKS_WRITTEN.inc(len(texts))
        for event in applied:
            age = (now - event.committed_at).total_seconds()
            report.freshness_s.append(age)
            obs.FEATURE_FRESHNESS.observe(age)
            obs.FEATURE_EVENTS.labels(op=event.op.value, outcome="applied").inc()
        if applied:
            obs.FEATURE_LAG_SECONDS.set(min(report.freshness_s))
        return report

"""The feature pipeline's domain: change events, cleaned documents, chunks, and retrieval hits.

Change events are what both change feeds (Debezium on Kafka, Debezium's embedded engine) decode
to; cleaned documents are the training snapshot; chunks (with their vectors) the RAG snapshot.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from twin.domain.documents import Category, Platform, RawDocument


class ChangeOp(StrEnum):
    """Debezium's ``op`` codes."""

    CREATE = "c"
    UPDATE = "u"
    DELETE = "d"
    READ = "r"  # a snapshot read: the row existed before capture started


@dataclass(frozen=True)
class ChangeEvent:
    """One decoded change to ``raw_documents``.

    ``lsn`` orders changes to the same row (Postgres WAL position of the change); applying an
    event older than what the store holds is a no-op, which makes replays harmless.
    """

    op: ChangeOp
    document_id: uuid.UUID
    lsn: int
    committed_at: datetime  # source commit time: the start of the freshness clock
    document: RawDocument | None  # None for deletes


@dataclass(frozen=True)
class RawChange:
    """A change as a feed delivers it, before decoding: Debezium's JSON key and value."""

    key: bytes | str | None
    value: bytes | str | None  # None: a tombstone (follows every delete; skipped)
    position: str  # where it came from, for dead letters and logs ("topic/partition@offset", ...)


@dataclass(frozen=True)
class CleanedDocument:
    """A document as training and chunking read it: cleaned text plus identity and provenance."""

    id: uuid.UUID
    profile: str
    platform: Platform
    category: Category
    url: str
    title: str
    content: str
    raw_content_hash: str  # the raw document's hash: unchanged raw content → nothing to redo
    lsn: int
    committed_at: datetime
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Chunk:
    """One retrievable piece of a cleaned document, in document order."""

    document_id: uuid.UUID
    position: int  # 0-based order within the document
    text: str
    token_count: int
    content_hash: str  # SHA-256 of text
    # Where in the document: {"section": "Heading"} for articles, {"lines": [a, b]} (1-based) for code.
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class EmbeddedChunk:
    chunk: Chunk
    embedding: list[float]


@dataclass(frozen=True)
class RetrievalHit:
    """What retrieval returns: the chunk, its document's identity, and cosine similarity."""

    document_id: uuid.UUID
    position: int
    profile: str
    category: Category
    platform: Platform
    url: str
    title: str
    text: str
    score: float  # cosine similarity in [-1, 1], higher is closer


@dataclass(frozen=True)
class RetrievalQuery:
    """Top-k by cosine. ``profile`` is mandatory: retrieval never crosses owners."""

    profile: str
    embedding: list[float]
    k: int = 10
    categories: tuple[Category, ...] = ()
    platforms: tuple[Platform, ...] = ()

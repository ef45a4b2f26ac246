"""The ports of the data path: the address guard, the document and feature stores, embedding,
retrieval and the change feed (crawl and features).

Part of :mod:`twin.ports`; import them from there.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Collection, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol

from twin.domain.crawl import SourceReport, UpsertOutcome
from twin.domain.documents import RawDocument
from twin.domain.features import (
    CleanedDocument,
    EmbeddedChunk,
    RawChange,
    RetrievalHit,
    RetrievalQuery,
)


class AddressCheck(Protocol):
    """The address guard: refuses URLs whose host is internal (private, loopback, link-local...)
    unless allow-listed. Every crawler request, browser sub-request and link read passes it."""

    def check(self, url: str) -> None:
        """Return when ``url`` may be fetched; raise :class:`twin.domain.errors.BlockedTarget` if not."""
        ...


class DocumentStore(Protocol):
    """The ``raw_documents`` contract (owner: the crawler; reader: change capture)."""

    def begin_run(self, profile: str) -> uuid.UUID:
        """Record the start of a crawl run and return its id."""
        ...

    def upsert(self, documents: Sequence[RawDocument]) -> list[UpsertOutcome]:
        """Insert new documents, update changed ones, and write nothing for unchanged ones."""
        ...

    def delete_missing(self, profile: str, source_url: str, keep: Collection[str]) -> int:
        """Delete the source's documents whose canonical URL is not in ``keep``; return how many."""
        ...

    def finish_run(self, run_id: uuid.UUID, reports: Sequence[SourceReport]) -> None:
        """Record each source's outcome and close the run."""
        ...

    def documents(self, profile: str) -> list[RawDocument]:
        """Every stored document of ``profile``, ordered by platform then URL."""
        ...


class Embedder(Protocol):
    """Text → unit-length vectors. The same code path embeds chunks and, later, queries."""

    model_name: str
    dimension: int
    max_tokens: int  # the model's input limit; chunking stays under it

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One unit-normalised vector per text, in order."""
        ...

    def count_tokens(self, text: str) -> int:
        """Tokens the model sees for ``text`` (without special tokens)."""
        ...


class FeatureStore(Protocol):
    """The logical feature store: cleaned documents (training) and embedded chunks (RAG)."""

    def versions(self, ids: Collection[uuid.UUID]) -> dict[uuid.UUID, tuple[int, str | None]]:
        """For each id the store knows: (lsn, raw content hash), hash None when deleted."""
        ...

    def apply(
        self,
        upserts: Sequence[tuple[CleanedDocument, Sequence[EmbeddedChunk]]],
        deletes: Sequence[tuple[uuid.UUID, int]],
    ) -> int:
        """In one transaction: replace each upserted document and all its chunks, delete each
        deleted one; any change older (by lsn) than what is stored is skipped. Returns how many
        changes took effect."""
        ...

    def dead_letter(self, change: RawChange, reason: str) -> None:
        """Keep a change that can never be processed, with why, and move on."""
        ...


class TrainingSnapshot(Protocol):
    """The training side of the feature store: the cleaned documents of one profile."""

    def cleaned_documents(self, profile: str) -> list[CleanedDocument]: ...


class Retriever(Protocol):
    def search(self, query: RetrievalQuery) -> list[RetrievalHit]:
        """Top-k chunks by cosine similarity, always within ``query.profile``."""
        ...


class ChangeFeed(Protocol):
    """Delivers raw changes of ``raw_documents`` in batches, at least once.

    ``run`` blocks, calling ``handler`` with each batch; the feed commits its position only after
    ``handler`` returns, so a crash replays the batch (the store makes replays harmless).
    """

    def run(
        self, handler: Callable[[Sequence[RawChange]], None], heartbeat: Callable[[], None] | None = None
    ) -> None:
        """Deliver batches until :meth:`stop`. ``heartbeat`` is called whenever the feed is up and
        has nothing to deliver (an empty poll, a Debezium heartbeat): the sign it has caught up."""
        ...

    def stop(self) -> None: ...


@dataclass(frozen=True)
class FeatureDeps:
    """What the feature service consumes, built by :func:`twin.wiring.feature_deps`.

    Factories rather than instances: the service (re)connects after a lost database or broker,
    and each reconnection needs a fresh feed and store connection.
    """

    embedder: Callable[[], Embedder]  # called once per run (Ray actors start here)
    feed: Callable[[], ChangeFeed]  # a fresh feed per (re)connection
    # The feature store on a fresh connection, checked against the embedder's dimension.
    store: Callable[[int], AbstractContextManager[FeatureStore]]
    # Build the HNSW index of each partition that outgrew exact search; returns the names built.
    maintain_indexes: Callable[[], list[str]]

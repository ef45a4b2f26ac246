"""The Protocols at each expensive seam. Adapters implement them; fakes implement them too.

A fake is used beside, never instead of, a test against the real service.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from typing import Any, Protocol

from twin.domain.crawl import SourceReport, UpsertOutcome
from twin.domain.dataset import InstructionGenerator
from twin.domain.documents import RawDocument
from twin.domain.features import (
    CleanedDocument,
    EmbeddedChunk,
    RawChange,
    RetrievalHit,
    RetrievalQuery,
)
from twin.domain.generation import AdapterRef, EngineDelta, GenerationParams


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


class ChatEngine(Protocol):
    """Generation for serving: vLLM (``twin.adapters.vllm_engine``) or transformers
    (``twin.adapters.transformers_engine``), with LoRA adapters loaded and unloaded at runtime."""

    name: str
    tokenizer: Any  # the base model's (it carries the chat template)

    async def load_adapter(self, adapter: AdapterRef) -> None:
        """Make ``adapter`` usable; a broken adapter raises and leaves the engine serving."""
        ...

    async def unload_adapter(self, adapter: AdapterRef) -> None: ...

    def generate(
        self, prompt_ids: list[int], params: GenerationParams, adapter: AdapterRef | None, request_id: str
    ) -> AsyncIterator[EngineDelta]:
        """Stream the completion of ``prompt_ids`` (with ``adapter``, or the base model)."""
        ...

    async def shutdown(self) -> None: ...

    def close(self) -> None:
        """Release the engine now (from a finaliser: no event loop needed)."""
        ...


__all__ = [
    "ChangeFeed",
    "ChatEngine",
    "DocumentStore",
    "Embedder",
    "FeatureStore",
    "InstructionGenerator",
    "Retriever",
    "TrainingSnapshot",
]

"""The Protocols at each expensive seam. Adapters implement them; fakes implement them too.

A fake is used beside, never instead of, a test against the real service.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from typing import Protocol

from twin.domain.crawl import SourceReport, UpsertOutcome
from twin.domain.documents import RawDocument


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

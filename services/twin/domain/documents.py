"""Platforms, categories and the documents that flow from the crawler into ``raw_documents``."""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Platform(StrEnum):
    """Where a document came from. ``web`` is any other link, read by main-text extraction."""

    MEDIUM = "medium"
    SUBSTACK = "substack"
    LINKEDIN = "linkedin"
    GITHUB = "github"
    WEB = "web"


class Category(StrEnum):
    """What kind of writing a document is; cleaning and chunking differ per category."""

    ARTICLE = "article"
    POST = "post"
    CODE = "code"


# Namespace for deterministic document ids: the same (profile, canonical URL) always maps to the same
# id, so replays, re-crawls and rebuilds agree on identity without a lookup.
_DOCUMENT_NAMESPACE = uuid.UUID("6f1f6c3e-5b7a-4c55-9d0e-2a7c1b0e4d11")


def document_id(profile: str, canonical_url: str) -> uuid.UUID:
    """The stable id of the document at ``canonical_url`` in ``profile``."""
    return uuid.uuid5(_DOCUMENT_NAMESPACE, f"{profile}\n{canonical_url}")


class ExtractedDocument(BaseModel):
    """What an extractor makes of one source item, before provenance is attached."""

    model_config = ConfigDict(frozen=True)

    canonical_url: str
    category: Category
    title: str
    content: str
    author: str | None = None
    published_at: datetime | None = None
    # Extractor-specific facts worth keeping (language, repository, path, tags...). Not hashed.
    metadata: dict[str, Any] = Field(default_factory=dict)

    def content_hash(self) -> str:
        """SHA-256 over the fields that make a document different to a reader.

        Metadata and fetch times are left out on purpose: re-fetching an unchanged article must
        produce the same hash, so the store writes nothing and change capture sees nothing.
        """
        payload = json.dumps(
            {
                "category": self.category.value,
                "title": self.title,
                "content": self.content,
                "author": self.author,
                "published_at": self.published_at.isoformat() if self.published_at else None,
            },
            sort_keys=True,
            ensure_ascii=False,
        )
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class RawDocument(BaseModel):
    """One row of ``raw_documents``: an extracted document with its provenance."""

    model_config = ConfigDict(frozen=True)

    id: uuid.UUID
    profile: str
    platform: Platform
    category: Category
    source_url: str
    canonical_url: str
    title: str
    content: str
    author: str | None
    published_at: datetime | None
    content_hash: str
    fetched_at: datetime
    crawl_run_id: uuid.UUID
    metadata: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def from_extracted(
        cls,
        doc: ExtractedDocument,
        *,
        profile: str,
        platform: Platform,
        source_url: str,
        fetched_at: datetime,
        crawl_run_id: uuid.UUID,
    ) -> RawDocument:
        return cls(
            id=document_id(profile, doc.canonical_url),
            profile=profile,
            platform=platform,
            category=doc.category,
            source_url=source_url,
            canonical_url=doc.canonical_url,
            title=doc.title,
            content=doc.content,
            author=doc.author,
            published_at=doc.published_at,
            content_hash=doc.content_hash(),
            fetched_at=fetched_at,
            crawl_run_id=crawl_run_id,
            metadata=doc.metadata,
        )

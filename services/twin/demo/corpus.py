"""The sample owner's writing as cleaned documents, without crawling: for tests and benchmarks of
what the feature and training pipelines do with real prose, posts and code."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

from twin.demo.content import load_demo_content
from twin.domain.cleaning import clean_document
from twin.domain.documents import Category, ExtractedDocument, Platform, RawDocument
from twin.domain.features import CleanedDocument


def demo_documents() -> Iterator[tuple[str, CleanedDocument]]:
    """Every document of the demo content, through the real cleaning step."""
    demo = load_demo_content()
    extracted: list[tuple[Platform, ExtractedDocument]] = []
    for platform, articles in (
        (Platform.MEDIUM, demo.medium),
        (Platform.SUBSTACK, demo.substack),
        (Platform.WEB, demo.web),
    ):
        for a in articles:
            extracted.append(
                (
                    platform,
                    ExtractedDocument(
                        canonical_url=f"https://x/{a.slug}",
                        category=Category.ARTICLE,
                        title=a.title,
                        content=a.body,
                    ),
                )
            )
    for p in demo.linkedin:
        title = p.text.strip().split("\n")[0][:80]
        extracted.append(
            (
                Platform.LINKEDIN,
                ExtractedDocument(
                    canonical_url=f"https://li/{p.id}", category=Category.POST, title=title, content=p.text
                ),
            )
        )
    for repo in demo.github:
        for f in repo.files:
            if f.binary or not f.content.strip():
                continue
            extracted.append(
                (
                    Platform.GITHUB,
                    ExtractedDocument(
                        canonical_url=f"https://github.com/alice/{repo.name}/blob/main/{f.path}",
                        category=Category.CODE,
                        title=f"{repo.name}/{f.path}",
                        content=f.content,
                        metadata={
                            "path": f.path,
                            "language": repo.language if f.path.endswith((".py", ".go")) else None,
                        },
                    ),
                )
            )
    for platform, doc in extracted:
        raw = RawDocument.from_extracted(
            doc,
            profile="alice",
            platform=platform,
            source_url="https://x",
            fetched_at=datetime(2025, 1, 1, tzinfo=UTC),
            crawl_run_id=uuid.UUID(int=1),
        )
        yield doc.title, clean_document(raw, lsn=1, committed_at=datetime(2025, 1, 1, tzinfo=UTC))

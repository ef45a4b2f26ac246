from __future__ import annotations

import uuid
from datetime import UTC, datetime

from twin.domain.crawl import PageError, SourceReport, SourceStatus, UpsertOutcome
from twin.domain.documents import Category, ExtractedDocument, Platform, RawDocument, document_id


def doc(**changes: object) -> ExtractedDocument:
    base = ExtractedDocument(
        canonical_url="https://medium.com/@alice/a",
        category=Category.ARTICLE,
        title="T",
        content="Body",
        author="Alice",
        published_at=datetime(2025, 1, 2, tzinfo=UTC),
        metadata={"tags": ["x"]},
    )
    return base.model_copy(update=changes)


def test_content_hash_ignores_metadata_and_tracks_content() -> None:
    assert doc().content_hash() == doc(metadata={"tags": ["y"], "fetched": 1}).content_hash()
    assert doc().content_hash() != doc(content="Body!").content_hash()
    assert doc().content_hash() != doc(title="T2").content_hash()
    assert doc().content_hash() != doc(published_at=None).content_hash()


def test_document_id_is_stable_per_profile_and_url() -> None:
    assert document_id("alice", "https://x/a") == document_id("alice", "https://x/a")
    assert document_id("alice", "https://x/a") != document_id("bob", "https://x/a")


def test_raw_document_carries_provenance() -> None:
    run = uuid.uuid4()
    raw = RawDocument.from_extracted(
        doc(),
        profile="alice",
        platform=Platform.MEDIUM,
        source_url="https://medium.com/@alice",
        fetched_at=datetime.now(UTC),
        crawl_run_id=run,
    )
    assert raw.id == document_id("alice", "https://medium.com/@alice/a")
    assert raw.content_hash == doc().content_hash()
    assert raw.crawl_run_id == run


def test_source_status_rules() -> None:
    report = SourceReport("https://x", Platform.WEB)
    assert report.status is SourceStatus.OK
    report.count(UpsertOutcome.NEW)
    report.truncated = True
    assert report.status is SourceStatus.PARTIAL  # a cap cut it short: no deletions
    report.truncated = False
    report.errors.append(PageError("https://x/2", "HttpError", "HTTP 500"))
    assert report.status is SourceStatus.PARTIAL
    failed = SourceReport("https://y", Platform.WEB, errors=[PageError("https://y", "HttpError", "HTTP 404")])
    assert failed.status is SourceStatus.FAILED

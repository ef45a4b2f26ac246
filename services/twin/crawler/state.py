"""The state of one crawl run, shared by the spider (requests, errors, caps) and the pipeline (writes)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from twin.domain.crawl import PageError, SourceReport, UpsertOutcome
from twin.domain.documents import Platform
from twin.extractors.base import ExtractOptions, Extractor
from twin.observability import crawl as metrics


@dataclass
class SourceJob:
    """One source of the profile being crawled."""

    index: int
    source_url: str  # as written in the profile: the provenance key of its documents
    platform: Platform
    extractor: Extractor | None  # None when the source failed before crawling (invalid URL)
    max_items: int | None
    report: SourceReport
    seen: set[str] = field(default_factory=set)  # canonical URLs stored this run
    paywalled: set[str] = field(default_factory=set)  # paid posts seen and not stored
    outstanding: int = 0  # requests issued and not yet answered
    pages: int = 0


@dataclass
class CrawlState:
    profile: str
    run_id: uuid.UUID
    jobs: list[SourceJob]
    options: ExtractOptions
    max_items: int
    accepted: int = 0
    on_change: Callable[[SourceJob], None] | None = None

    def touched(self, job: SourceJob) -> None:
        if self.on_change is not None:
            self.on_change(job)

    def error(self, job: SourceJob, url: str, error: str, message: str) -> None:
        job.report.errors.append(PageError(url=url, error=error, message=message))
        metrics.error(self.profile, job.platform.value, error)
        self.touched(job)

    def fetched(self, job: SourceJob, outcome: str) -> None:
        """Count one request's outcome (``ok``, ``failed``, ``blocked``) for the run's metrics."""
        metrics.page(self.profile, job.platform.value, outcome)

    def stored(self, job: SourceJob, outcome: UpsertOutcome) -> None:
        job.report.count(outcome)
        metrics.document(self.profile, job.platform.value, outcome.value)

    def paid_skipped(self, job: SourceJob, canonical_url: str) -> None:
        """Count a paid post the extractor would not store (once per URL: feeds and archive pages
        can name the same post twice)."""
        if canonical_url not in job.paywalled:
            job.paywalled.add(canonical_url)
            job.report.paid_skipped = len(job.paywalled)
            self.touched(job)

    def accept(self, job: SourceJob, canonical_url: str) -> bool:
        """Whether one more document of ``job`` may be stored (caps); marks truncation when not."""
        if canonical_url in job.seen:
            return False  # already stored this run (an extractor yielded it twice)
        cap = job.max_items
        if self.accepted >= self.max_items or (cap is not None and len(job.seen) >= cap):
            job.report.truncated = True
            return False
        job.seen.add(canonical_url)
        self.accepted += 1
        return True

    def run_cap_reached(self) -> bool:
        return self.accepted >= self.max_items

    def finish(self) -> None:
        """Called when the spider closes: a source with requests still in flight was cut short."""
        for job in self.jobs:
            if job.outstanding > 0:
                job.report.truncated = True

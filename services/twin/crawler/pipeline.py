"""The persistence pipeline: batches crawled items into the store, then applies deletions.

Writes are synchronous on the reactor thread, in batches: a local upsert batch costs about a
millisecond per document, far below a page fetch, and one connection keeps ordering simple.
Deletions run only for sources whose crawl completed cleanly (status ``ok``): a page we failed
to fetch, or one a cap kept us from reaching, is not a page that disappeared.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from twin.crawler.spider import CrawledItem, TwinSpider
from twin.domain.crawl import SourceStatus
from twin.domain.documents import RawDocument
from twin.observability import crawl as metrics
from twin.ports import DocumentStore

BATCH_SIZE = 50


class PersistencePipeline:
    def __init__(self, crawler: Any) -> None:
        self._crawler = crawler
        self._buffer: list[CrawledItem] = []

    @classmethod
    def from_crawler(cls, crawler: Any) -> PersistencePipeline:
        return cls(crawler)

    @property
    def _spider(self) -> TwinSpider:
        spider: TwinSpider = self._crawler.spider
        return spider

    @property
    def _store(self) -> DocumentStore:
        return self._spider.store

    def process_item(self, item: Any) -> Any:
        if isinstance(item, CrawledItem):
            self._buffer.append(item)
            if len(self._buffer) >= BATCH_SIZE:
                self._flush()
        return item

    def _flush(self) -> None:
        if not self._buffer:
            return
        state = self._spider.state
        now = datetime.now(UTC)
        batch, self._buffer = self._buffer, []
        docs = [
            RawDocument.from_extracted(
                item.document,
                profile=state.profile,
                platform=state.jobs[item.job_index].platform,
                source_url=state.jobs[item.job_index].source_url,
                fetched_at=now,
                crawl_run_id=state.run_id,
            )
            for item in batch
        ]
        for item, outcome in zip(batch, self._store.upsert(docs), strict=True):
            job = state.jobs[item.job_index]
            state.stored(job, outcome)
            state.touched(job)

    def close_spider(self) -> None:
        self._flush()
        state = self._spider.state
        state.finish()
        for job in state.jobs:
            if job.report.status is SourceStatus.OK and not job.seen:
                # A source that suddenly yields nothing is far more often a changed page layout or
                # a soft block than an owner who deleted everything: keep what is stored.
                state.error(
                    job,
                    job.source_url,
                    "EmptyExtraction",
                    f"{job.source_url}: no documents found; stored documents were kept",
                )
            if job.report.status is SourceStatus.OK:
                job.report.deleted = self._store.delete_missing(state.profile, job.source_url, job.seen)
                metrics.document(state.profile, job.platform.value, "deleted", job.report.deleted)
                state.touched(job)

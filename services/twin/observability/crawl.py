"""The crawler's metrics: pages fetched, documents written and errors, per profile and platform.

A crawl is a short process (``twin crawl``, one Kubernetes Job per crawl), so its counters live
only while it runs; ``twin crawl --metrics-port`` serves them meanwhile. :func:`crawl_started`
creates every series of the run at zero, so the first scrape already sees them and ``increase()``
counts from there; the run's outcome per source is counted by :func:`crawl_finished` (alerts read
it with ``max_over_time``: a finished crawl's pod is gone, its last scrape is not). Profile and
platform are bounded (TwinProfile objects, the platform registry); URLs never become labels, and
an error's kind is its exception class name, a vocabulary the code bounds.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from prometheus_client import Counter, Histogram

from twin.domain.crawl import SourceReport, SourceStatus, UpsertOutcome

PAGE_OUTCOMES = ("ok", "failed", "blocked")
DOCUMENT_OUTCOMES = (*(o.value for o in UpsertOutcome), "deleted")

CRAWL_PAGES = Counter(
    "twin_crawl_pages_total",
    "Pages (and API answers) the crawler requested, by what came of the request.",
    ["profile", "platform", "outcome"],  # outcome: ok | failed | blocked (address guard or robots.txt)
)
CRAWL_DOCUMENTS = Counter(
    "twin_crawl_documents_total",
    "Documents written to raw_documents, by the upsert's outcome (deleted: gone from a clean source).",
    ["profile", "platform", "outcome"],  # outcome: new | updated | unchanged | deleted
)
CRAWL_ERRORS = Counter(
    "twin_crawl_errors_total",
    "Errors recorded against a source, by kind (the error's class name, e.g. HttpError, BlockedTarget).",
    ["profile", "platform", "kind"],
)
CRAWL_SOURCES = Counter(
    "twin_crawl_sources_total",
    "Sources crawled, by their outcome at the end of the run (ok | partial | failed).",
    ["profile", "platform", "status"],
)
CRAWL_RUNS = Counter(
    "twin_crawl_runs_total",
    "Crawl runs finished: ok (every source ok), failed (every source failed) or partial.",
    ["profile", "outcome"],
)
CRAWL_RUN_SECONDS = Histogram(
    "twin_crawl_run_seconds",
    "Wall time of one crawl run, plan to last write.",
    ["profile"],
    buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200),
)

# The error kinds a crawl names most (Scrapy's and Twisted's failures, the extractors' refusals),
# created at zero per platform when a crawl starts: every crawl is a fresh process, so without this
# the first error of each kind would be a series born at 1, which increase() cannot see. A rarer
# kind still counts; only its first occurrence in a run is invisible to rate() and increase().
COMMON_ERROR_KINDS = (
    "HttpError",
    "BlockedTarget",
    "IgnoreRequest",
    "Incomplete",
    "InvalidSourceURL",
    "TimeoutError",
    "DNSLookupError",
    "ConnectionRefusedError",
    "ResponseNeverReceived",
    "UnsupportedContent",
    "UndecodableContent",
    "PageTooLarge",
    "EmptyExtraction",
    "CredentialsRequired",
    "LoginFailed",
)

_KIND = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


def error_kind(name: str) -> str:
    """An error name fit to be a label: a class-like identifier, else ``Other`` (never a message)."""
    return name if _KIND.match(name) else "Other"


def crawl_started(profile: str, platforms: Iterable[str]) -> None:
    """Create the run's series at zero, so the first scrape sees them and later increases count."""
    for platform in set(platforms):
        for outcome in PAGE_OUTCOMES:
            CRAWL_PAGES.labels(profile, platform, outcome)
        for outcome in DOCUMENT_OUTCOMES:
            CRAWL_DOCUMENTS.labels(profile, platform, outcome)
        for status in SourceStatus:
            CRAWL_SOURCES.labels(profile, platform, status.value)
        for kind in COMMON_ERROR_KINDS:
            CRAWL_ERRORS.labels(profile, platform, kind)
    for outcome in ("ok", "partial", "failed"):
        CRAWL_RUNS.labels(profile, outcome)
    CRAWL_RUN_SECONDS.labels(profile)  # its one observation then shows as an increase (a rate)


def page(profile: str, platform: str, outcome: str) -> None:
    CRAWL_PAGES.labels(profile, platform, outcome).inc()


def document(profile: str, platform: str, outcome: str, count: int = 1) -> None:
    if count:
        CRAWL_DOCUMENTS.labels(profile, platform, outcome).inc(count)


def error(profile: str, platform: str, name: str) -> None:
    CRAWL_ERRORS.labels(profile, platform, error_kind(name)).inc()


def crawl_finished(profile: str, reports: Sequence[SourceReport], seconds: float) -> None:
    """Count each source's outcome and the run's, and the run's duration."""
    statuses = [r.status for r in reports]
    for report in reports:
        CRAWL_SOURCES.labels(profile, report.platform.value, report.status.value).inc()
    if statuses and all(s is SourceStatus.OK for s in statuses):
        outcome = "ok"
    elif statuses and all(s is SourceStatus.FAILED for s in statuses):
        outcome = "failed"
    else:
        outcome = "partial"
    CRAWL_RUNS.labels(profile, outcome).inc()
    CRAWL_RUN_SECONDS.labels(profile).observe(seconds)

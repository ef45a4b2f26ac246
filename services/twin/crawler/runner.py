"""Run one crawl of a profile in this process: build the plan, run Scrapy, record the outcome.

Scrapy's reactor cannot be restarted, so this runs once per process (the CLI, a crawl Job).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from twin.crawler.state import CrawlState, SourceJob
from twin.domain.crawl import PageError, SourceReport
from twin.domain.errors import InvalidSourceURL
from twin.domain.profile import TwinProfile
from twin.extractors import extractor_for
from twin.extractors.base import ExtractOptions
from twin.observability import crawl as metrics
from twin.ports import AddressCheck, DocumentStore
from twin.settings import CrawlerSettings

# Headless Chromium on a locked-down host: no sandbox (containers run it as root), and none of the
# background traffic (updates, sync, QUIC probes) a closed network answers with refusals.
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
)


@dataclass(frozen=True)
class CrawlResult:
    run_id: uuid.UUID
    reports: list[SourceReport]


def plan(
    profile: TwinProfile, config: CrawlerSettings, options: ExtractOptions, run_id: uuid.UUID
) -> CrawlState:
    """The run's state: one job per source. Invalid URLs fail their source here, before any fetch."""
    jobs: list[SourceJob] = []
    for index, source in enumerate(profile.spec.sources):
        platform = source.resolved_platform()
        report = SourceReport(source_url=source.url, platform=platform)
        job = SourceJob(index, source.url, platform, extractor_for(platform), source.max_items, report)
        try:
            source.checked_url()
        except InvalidSourceURL as exc:
            job.extractor = None
            report.errors.append(PageError(url=source.url, error="InvalidSourceURL", message=str(exc)))
        jobs.append(job)
    return CrawlState(
        profile=profile.name,
        run_id=run_id,
        jobs=jobs,
        options=options,
        max_items=min(config.max_items_per_run, profile.spec.crawl.max_items),
    )


def scrapy_settings(c: CrawlerSettings) -> dict[str, Any]:
    return {
        "BOT_NAME": "llm-twin",
        "USER_AGENT": c.user_agent,
        "ROBOTSTXT_OBEY": c.obey_robots_txt,
        "CONCURRENT_REQUESTS": c.concurrent_requests,
        "CONCURRENT_REQUESTS_PER_DOMAIN": c.concurrent_requests_per_domain,
        "DOWNLOAD_DELAY": c.download_delay_s,
        "DOWNLOAD_TIMEOUT": c.download_timeout_s,
        "DOWNLOAD_MAXSIZE": c.max_page_bytes,
        "DOWNLOAD_WARNSIZE": 0,
        "REDIRECT_MAX_TIMES": c.max_redirects,
        "RETRY_ENABLED": True,
        "RETRY_TIMES": c.retry_times,
        # AutoThrottle backs off from slow or failing servers (latency-driven delays per domain).
        "AUTOTHROTTLE_ENABLED": True,
        "AUTOTHROTTLE_START_DELAY": max(c.download_delay_s, 0.0),
        "AUTOTHROTTLE_MAX_DELAY": 30.0,
        "AUTOTHROTTLE_TARGET_CONCURRENCY": float(c.concurrent_requests_per_domain),
        "COOKIES_ENABLED": True,
        "TELNETCONSOLE_ENABLED": False,
        "LOG_LEVEL": "ERROR",
        "LOG_INSTALL_ROOT_HANDLER": False,
        "DOWNLOADER_MIDDLEWARES": {
            "twin.crawler.safety.AddressGuardMiddleware": 50,
            # Scrapy's own robots middleware lets through requests that queued behind robots.txt.
            "scrapy.downloadermiddlewares.robotstxt.RobotsTxtMiddleware": None,
            "twin.crawler.robots.SharedRobotsTxtMiddleware": 100,
            "scrapy.downloadermiddlewares.retry.RetryMiddleware": None,
            "twin.crawler.retry.BackoffRetryMiddleware": 550,
        },
        "TWIN_RETRY_BACKOFF_S": c.retry_backoff_s,
        "ITEM_PIPELINES": {"twin.crawler.pipeline.PersistencePipeline": 300},
        "TWISTED_REACTOR": "twisted.internet.asyncioreactor.AsyncioSelectorReactor",
        "DOWNLOAD_HANDLERS": {
            "http": "scrapy_playwright.handler.ScrapyPlaywrightDownloadHandler",
            "https": "scrapy_playwright.handler.ScrapyPlaywrightDownloadHandler",
        },
        "PLAYWRIGHT_BROWSER_TYPE": "chromium",
        "PLAYWRIGHT_LAUNCH_OPTIONS": {
            "executable_path": str(c.chromium_path),
            "headless": True,
            "args": list(CHROMIUM_ARGS),
        },
        # Let the browser send its own headers: overriding them through interception drops the
        # context's cookies from sub-requests. The user agent is set on the context instead.
        "PLAYWRIGHT_PROCESS_REQUEST_HEADERS": None,
        "PLAYWRIGHT_CONTEXTS": {"default": {"user_agent": c.user_agent, "java_script_enabled": True}},
        "PLAYWRIGHT_DEFAULT_NAVIGATION_TIMEOUT": int(c.render_timeout_s * 1000),
        "PLAYWRIGHT_ABORT_REQUEST": "twin.crawler.safety.abort_browser_request",
        "PLAYWRIGHT_MAX_PAGES_PER_CONTEXT": 4,
    }


def run_crawl(
    profile: TwinProfile,
    store: DocumentStore,
    *,
    config: CrawlerSettings,
    options: ExtractOptions,
    guard: AddressCheck,
    on_change: Callable[[SourceJob], None] | None = None,
) -> CrawlResult:
    """Crawl every source of ``profile`` into ``store`` and record the run; return per-source reports.

    ``config`` is the crawler's section of the settings, ``options`` what the extractors may use
    (credentials, limits) and ``guard`` the address guard every request and browser sub-request
    passes; :mod:`twin.wiring` builds them (``extract_options``, ``address_guard``)."""
    from scrapy.crawler import CrawlerProcess

    from twin.crawler.safety import configure_browser_guard
    from twin.crawler.spider import TwinSpider

    started = time.monotonic()
    run_id = store.begin_run(profile.name)
    state = plan(profile, config, options, run_id)
    metrics.crawl_started(profile.name, (job.platform.value for job in state.jobs))
    for job in state.jobs:  # a source refused before any fetch (an invalid URL) is an error too
        for e in job.report.errors:
            metrics.error(profile.name, job.platform.value, e.error)
    state.on_change = on_change
    configure_browser_guard(guard)
    process = CrawlerProcess(scrapy_settings(config))
    logging.getLogger("scrapy").setLevel(logging.ERROR)
    process.crawl(
        TwinSpider,
        state=state,
        store=store,
        address_guard=guard,
        max_page_bytes=config.max_page_bytes,
        render_timeout_ms=int(config.render_timeout_s * 1000),
    )
    process.start()
    reports = [job.report for job in state.jobs]
    store.finish_run(run_id, reports)
    metrics.crawl_finished(profile.name, reports, time.monotonic() - started)
    return CrawlResult(run_id=run_id, reports=reports)

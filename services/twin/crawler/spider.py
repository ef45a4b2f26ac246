"""The one spider: turns each source into extractor steps, and responses into pages and items.

Everything platform-specific lives in the pure extractors; everything about fetching (safety,
politeness, retries, JavaScript rendering, caps, errors) lives here and in Scrapy's settings.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import scrapy
from scrapy.http import FormRequest, Request, Response, TextResponse
from twisted.python.failure import Failure

from twin.crawler.state import CrawlState, SourceJob
from twin.domain.documents import ExtractedDocument
from twin.domain.errors import InvalidSourceURL, PageTooLarge, TwinError, UndecodableContent
from twin.domain.urls import canonical_url, validate_url
from twin.extractors.base import FEED_TYPES, HTML_TYPES, JSON_TYPES, Follow, Incomplete, Page, Paywalled
from twin.ports import AddressCheck, DocumentStore

# Share of U+FFFD replacement characters above which a text body counts as undecodable garbage
# (a stray bad byte in a long page is tolerated; a binary or wrongly-labelled body is not).
_MAX_REPLACEMENT_RATIO = 0.01
_DOCUMENT_TYPES = (*HTML_TYPES, *FEED_TYPES, *JSON_TYPES)


@dataclass(frozen=True)
class CrawledItem:
    """What the spider hands the persistence pipeline."""

    job_index: int
    document: ExtractedDocument


def _media_type(response: Response) -> str:
    raw = response.headers.get(b"Content-Type") or b""
    return raw.decode("latin-1").split(";")[0].strip().lower()


def _decoded(response: Response, media_type: str) -> str:
    if not isinstance(response, TextResponse):
        return ""
    text: str = response.text
    if media_type in _DOCUMENT_TYPES and text:
        bad = text.count("\ufffd") + text.count("\x00")
        if bad / len(text) > _MAX_REPLACEMENT_RATIO:
            raise UndecodableContent(
                f"{response.url}: body does not decode as {response.encoding} ({bad} bad characters)"
            )
    return text


async def _share_cookies_with_browser(page: Any, request: Request) -> None:
    """Give the browser the cookies Scrapy holds for this request (a login session, say).

    Scrapy's CookiesMiddleware puts them in the ``Cookie`` header, but Chromium ignores a Cookie
    header set through request interception, and the page's own sub-requests (the XHR that loads
    a feed) would not carry it anyway: they must be in the browser context's cookie store.
    """
    header = request.headers.get(b"Cookie")
    if not header:
        return
    # Scrapy's header does not say which path each cookie was set for; "/" on the same origin is the
    # closest (Playwright would otherwise scope them to this page's path and hide them from the XHRs).
    parts = urlsplit(request.url)
    origin = f"{parts.scheme}://{parts.netloc}/"
    cookies = []
    for pair in header.decode("latin-1").split(";"):
        name, sep, value = pair.strip().partition("=")
        if sep and name:
            cookies.append({"name": name, "value": value, "url": origin})
    if cookies:
        await page.context.add_cookies(cookies)


class TwinSpider(scrapy.Spider):
    name = "twin"

    def __init__(
        self,
        state: CrawlState,
        store: DocumentStore,
        address_guard: AddressCheck,
        max_page_bytes: int,
        render_timeout_ms: int,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.state = state
        # Used by the persistence pipeline and the guard middleware (Scrapy deep-copies settings:
        # objects cannot travel there).
        self.store = store
        self.address_guard = address_guard
        self.max_page_bytes = max_page_bytes
        self.render_timeout_ms = render_timeout_ms

    async def start(self) -> AsyncIterator[Any]:
        for job in self.state.jobs:
            if job.extractor is None:
                continue
            try:
                follows = list(job.extractor.start(validate_url(job.source_url), self.state.options))
            except TwinError as exc:
                self.state.error(job, job.source_url, type(exc).__name__, str(exc))
                continue
            for follow in follows:
                request = self._request(job, follow)
                if request is not None:
                    yield request

    def _request(self, job: SourceJob, follow: Follow) -> Request | None:
        try:
            url = validate_url(follow.url)
        except InvalidSourceURL as exc:
            self.state.error(job, follow.url, type(exc).__name__, str(exc))
            return None
        if self.state.run_cap_reached() or (job.max_items is not None and len(job.seen) >= job.max_items):
            job.report.truncated = True
            return None
        meta: dict[str, Any] = {"twin_job": job.index, "twin_follow": follow}
        if follow.accept_errors:
            meta["handle_httpstatus_all"] = True
        if follow.render_js:
            meta["playwright"] = True
            meta["playwright_page_init_callback"] = _share_cookies_with_browser
            meta["playwright_page_goto_kwargs"] = {
                "wait_until": "networkidle",
                "timeout": self.render_timeout_ms,
            }
        job.outstanding += 1
        common: dict[str, Any] = {
            "callback": self.parse_page,
            "errback": self.on_error,
            "meta": meta,
            "headers": dict(follow.headers),
            # Extractors deduplicate within a source; Scrapy's filter would silently drop a page two
            # sources share, and an unseen page must never look like a deleted one.
            "dont_filter": True,
        }
        if follow.form is not None:
            return FormRequest(url, method=follow.method, formdata=dict(follow.form), **common)
        return Request(url, method=follow.method, **common)

    def _job(self, meta: dict[str, Any]) -> SourceJob:
        job: SourceJob = self.state.jobs[int(meta["twin_job"])]
        return job

    def parse_page(self, response: Response) -> Iterator[Any]:
        job = self._job(response.meta)
        job.outstanding -= 1
        job.pages += 1
        self.state.fetched(job, "ok")
        follow: Follow = response.meta["twin_follow"]
        try:
            if len(response.body) > self.max_page_bytes:  # the browser path has no DOWNLOAD_MAXSIZE
                size = len(response.body)
                raise PageTooLarge(
                    f"{response.url}: {size} bytes exceeds the page-size cap ({self.max_page_bytes})"
                )
            media_type = _media_type(response)
            page = Page(
                url=response.url,
                status=response.status,
                content_type=media_type,
                headers={
                    k.decode("latin-1").lower(): b", ".join(v).decode("latin-1")
                    for k, v in response.headers.items()
                },
                body=response.body,
                text=_decoded(response, media_type),
                step=follow.step,
                data=follow.data,
                source_url=job.source_url,
                options=self.state.options,
            )
            outputs = list(job.extractor.parse(page)) if job.extractor else []
        except TwinError as exc:
            self.state.error(job, response.url, type(exc).__name__, str(exc))
            return
        for out in outputs:
            if isinstance(out, Incomplete):
                self.state.error(job, response.url, "Incomplete", f"{response.url}: {out.reason}")
            elif isinstance(out, Paywalled):
                self.state.paid_skipped(job, canonical_url(out.url))
            elif isinstance(out, Follow):
                request = self._request(job, out)
                if request is not None:
                    yield request
            else:
                key = canonical_url(out.canonical_url)
                if self.state.accept(job, key):
                    doc = out if key == out.canonical_url else out.model_copy(update={"canonical_url": key})
                    yield CrawledItem(job_index=job.index, document=doc)
        self.state.touched(job)

    def on_error(self, failure: Failure) -> None:
        # Scrapy attaches the failed request to the Failure it hands an errback.
        request: Request = failure.request  # type: ignore[attr-defined]
        job = self._job(request.meta)
        job.outstanding -= 1
        exc = failure.value
        name = type(exc).__name__
        response = getattr(exc, "response", None)
        if response is not None and name == "HttpError":
            message = f"{request.url}: HTTP {response.status}"
        else:
            message = f"{request.url}: {str(exc) or name}"
        if name == "BlockedRequest":
            name = "BlockedTarget"
        self.state.fetched(job, "blocked" if name in ("BlockedTarget", "IgnoreRequest") else "failed")
        self.state.error(job, request.url, name, message)

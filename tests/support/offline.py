"""Drive one extractor against a fixture site without Scrapy: the extractors' own test harness.

Requests go over real HTTP to a :class:`~twin.demo.server.SiteServer` (urllib, following
redirects); steps with ``render_js`` are rendered by real headless Chromium through Playwright.
Scrapy's spider and middlewares are tested separately, in the integration tests.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections import deque
from dataclasses import dataclass, field
from http.cookiejar import CookieJar
from urllib.parse import urlencode

from twin.crawler.runner import CHROMIUM_ARGS
from twin.domain.documents import ExtractedDocument
from twin.domain.errors import FetchError
from twin.extractors.base import ExtractOptions, Extractor, Follow, Incomplete, Page, Paywalled

CHROMIUM = "/usr/bin/chromium"


@dataclass
class OfflineCrawl:
    documents: list[ExtractedDocument] = field(default_factory=list)
    errors: list[tuple[str, FetchError]] = field(default_factory=list)
    fetched: list[Follow] = field(default_factory=list)
    incomplete: list[str] = field(default_factory=list)
    paywalled: list[str] = field(default_factory=list)  # paid posts seen and not stored


def _media_type(value: str | None) -> str:
    return (value or "").split(";")[0].strip().lower()


def _charset(value: str | None) -> str:
    for part in (value or "").split(";")[1:]:
        key, _, val = part.strip().partition("=")
        if key.lower() == "charset" and val:
            return val.strip('"')
    return "utf-8"


def _render(url: str, cookie_header: str) -> tuple[str, int]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=list(CHROMIUM_ARGS))
        try:
            context = browser.new_context(
                extra_http_headers={"Cookie": cookie_header} if cookie_header else {}
            )
            page = context.new_page()
            response = page.goto(url, wait_until="networkidle")
            return page.content(), (response.status if response else 200)
        finally:
            browser.close()


def crawl_offline(
    extractor: Extractor, source_url: str, options: ExtractOptions | None = None, max_requests: int = 2000
) -> OfflineCrawl:
    """Run ``extractor`` from ``source_url`` to exhaustion; collect documents and per-page errors."""
    options = options or ExtractOptions()
    result = OfflineCrawl()
    jar = CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    queue: deque[Follow] = deque(extractor.start(source_url, options))
    while queue and len(result.fetched) < max_requests:
        follow = queue.popleft()
        result.fetched.append(follow)
        data = urlencode(dict(follow.form)).encode() if follow.form is not None else None
        request = urllib.request.Request(
            follow.url, data=data, method=follow.method, headers=dict(follow.headers)
        )
        try:
            with opener.open(request, timeout=20) as resp:
                status, headers, body, final_url = resp.status, resp.headers, resp.read(), resp.geturl()
        except urllib.error.HTTPError as exc:
            if not follow.accept_errors:
                result.errors.append((follow.url, FetchError(f"HTTP {exc.code} for {follow.url}")))
                continue
            status, headers, body, final_url = exc.code, exc.headers, exc.read(), exc.geturl()
        content_type = headers.get("Content-Type")
        text = body.decode(_charset(content_type), errors="replace")
        if follow.render_js:
            jar.add_cookie_header(probe := urllib.request.Request(final_url))
            text, status = _render(final_url, probe.get_header("Cookie") or "")
            body = text.encode("utf-8")
        page = Page(
            url=final_url,
            status=status,
            content_type=_media_type(content_type),
            headers={k.lower(): v for k, v in headers.items()},
            body=body,
            text=text,
            step=follow.step,
            data=follow.data,
            source_url=source_url,
            options=options,
        )
        try:
            outputs = list(extractor.parse(page))
        except FetchError as exc:
            result.errors.append((follow.url, exc))
            continue
        for out in outputs:
            if isinstance(out, Incomplete):
                result.incomplete.append(out.reason)
            elif isinstance(out, Paywalled):
                result.paywalled.append(out.url)
            elif isinstance(out, Follow):
                queue.append(out)
            else:
                result.documents.append(out)
    return result

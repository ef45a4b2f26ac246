"""Links in a user's message, read over HTTP under the crawler's safety rules: the
:class:`twin.ports.LinkReader` serving uses.

A message like "write a LinkedIn post reacting to https://example.com/post" gets that page's main
text (trafilatura, through the crawler's own web extractor in :mod:`twin.extractors.web`) as a
numbered, cited source. Every hop passes the address guard (no private, loopback or link-local
targets unless allow-listed), redirects are followed by hand (each target checked, at most
``max_redirects``), bodies are capped in size and time, and only HTML pages are read. A link that
cannot be read comes back with why (:class:`twin.domain.links.LinkResult`); it never fails the
request.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urljoin

from twin.domain.documents import ExtractedDocument
from twin.domain.errors import FetchError, PageTooLarge, UnsupportedContent
from twin.domain.links import LinkResult
from twin.domain.prompts import Source
from twin.domain.urls import validate_url
from twin.extractors.base import ExtractOptions, Page
from twin.extractors.web import WebExtractor
from twin.ports import AddressCheck

_HTML = ("text/html", "application/xhtml+xml")


class HttpLinkReader:
    """Reads each link with httpx, one at a time, every hop checked by ``guard``."""

    def __init__(
        self,
        guard: AddressCheck,
        *,
        user_agent: str,
        timeout_s: float = 10.0,
        max_bytes: int = 2 * 1024 * 1024,
        max_redirects: int = 5,
        max_chars: int = 3000,
    ) -> None:
        self._guard = guard
        self._user_agent = user_agent
        self._timeout_s = timeout_s
        self._max_bytes = max_bytes
        self._max_redirects = max_redirects
        self._max_chars = max_chars

    def read(self, urls: Sequence[str]) -> list[LinkResult]:
        results = []
        for url in urls:
            try:
                results.append(LinkResult(url, self._fetch(url)))
            except Exception as exc:  # refused, too large, not HTML, network errors: skip the link
                results.append(LinkResult(url, None, f"{type(exc).__name__}: {exc}"))
        return results

    def _fetch(self, url: str) -> Source:
        import httpx

        current = validate_url(url)
        with httpx.Client(
            timeout=self._timeout_s, follow_redirects=False, headers={"User-Agent": self._user_agent}
        ) as client:
            for _ in range(self._max_redirects + 1):
                self._guard.check(current)
                with client.stream("GET", current) as response:
                    if response.is_redirect and "location" in response.headers:
                        current = validate_url(urljoin(current, response.headers["location"]))
                        continue
                    if response.status_code >= 400:
                        raise FetchError(f"{current}: HTTP {response.status_code}")
                    body = bytearray()
                    for piece in response.iter_bytes():
                        body += piece
                        if len(body) > self._max_bytes:
                            raise PageTooLarge(f"{current}: larger than {self._max_bytes} bytes")
                    content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
                    if content_type not in _HTML:
                        raise UnsupportedContent(
                            f"{current}: {content_type or 'no content type'} is not a web page"
                        )
                    page = Page(
                        url=current,
                        status=response.status_code,
                        content_type=content_type,
                        headers={k.lower(): v for k, v in response.headers.items()},
                        body=bytes(body),
                        text=bytes(body).decode(response.encoding or "utf-8", errors="replace"),
                        step="article",
                        data={},
                        source_url=url,
                        options=ExtractOptions(),
                    )
                    return self._source(page)
        raise FetchError(f"{url}: more than {self._max_redirects} redirects")

    def _source(self, page: Page) -> Source:
        docs = [d for d in WebExtractor().parse(page) if isinstance(d, ExtractedDocument)]
        if not docs:
            raise FetchError(f"{page.url}: no main text")
        doc = docs[0]
        return Source(title=doc.title, url=page.url, text=doc.content[: self._max_chars], kind="link")

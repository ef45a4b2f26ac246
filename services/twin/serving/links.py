"""Links in a user's message, read as extra context under the crawler's safety rules.

A message like "write a LinkedIn post reacting to https://example.com/post" gets that page's main
text (trafilatura, through the crawler's own web extractor) as a numbered, cited source. Every hop
is checked by the crawler's address guard (no private, loopback or link-local targets unless
allow-listed), redirects are followed by hand (each target checked, at most
``crawler.max_redirects``), bodies are capped in size and time, and only HTML pages are read. A link
that cannot be read is reported in the answer's ``twin.links`` with why; it never fails the request.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urljoin

from twin.adapters.address_guard import AddressGuard
from twin.domain.errors import FetchError, InvalidSourceURL
from twin.domain.prompts import Source
from twin.domain.urls import validate_url

_URL = re.compile(r"https?://[^\s<>\"'()\[\]{}]+", re.IGNORECASE)
_TRAILING = ".,;:!?"


@dataclass(frozen=True)
class LinkResult:
    url: str
    source: Source | None
    error: str | None = None


def find_links(text: str, limit: int) -> list[str]:
    """Distinct http(s) URLs in ``text``, in order, trailing punctuation dropped."""
    found: list[str] = []
    for match in _URL.finditer(text):
        url = match.group(0).rstrip(_TRAILING)
        if url not in found:
            found.append(url)
        if len(found) >= limit:
            break
    return found


class LinkReader:
    def __init__(
        self,
        allowed_networks: list[str],
        *,
        user_agent: str,
        timeout_s: float = 10.0,
        max_bytes: int = 2 * 1024 * 1024,
        max_redirects: int = 5,
        max_chars: int = 3000,
    ) -> None:
        self._guard = AddressGuard(allowed_networks)
        self._user_agent = user_agent
        self._timeout_s = timeout_s
        self._max_bytes = max_bytes
        self._max_redirects = max_redirects
        self._max_chars = max_chars

    def read(self, urls: list[str]) -> list[LinkResult]:
        results = []
        for url in urls:
            try:
                results.append(LinkResult(url, self._fetch(url)))
            except (FetchError, InvalidSourceURL) as exc:
                results.append(LinkResult(url, None, f"{type(exc).__name__}: {exc}"))
            except Exception as exc:  # network errors, timeouts: the link is skipped, the answer goes on
                results.append(LinkResult(url, None, f"{type(exc).__name__}: {exc}"))
        return results

    def _fetch(self, url: str) -> Source:
        import httpx

        from twin.crawler.extractors.base import ExtractOptions, Page
        from twin.crawler.extractors.web import WebExtractor
        from twin.domain.documents import ExtractedDocument
        from twin.domain.errors import PageTooLarge, UnsupportedContent

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
                    if content_type not in ("text/html", "application/xhtml+xml"):
                        raise UnsupportedContent(
                            f"{current}: {content_type or 'no content type'} is not a web page"
                        )
                    text = bytes(body).decode(response.encoding or "utf-8", errors="replace")
                    page = Page(
                        url=current,
                        status=response.status_code,
                        content_type=content_type,
                        headers={k.lower(): v for k, v in response.headers.items()},
                        body=bytes(body),
                        text=text,
                        step="article",
                        data={},
                        source_url=url,
                        options=ExtractOptions(),
                    )
                    docs = [d for d in WebExtractor().parse(page) if isinstance(d, ExtractedDocument)]
                    if not docs:
                        raise FetchError(f"{current}: no main text")
                    doc = docs[0]
                    return Source(
                        title=doc.title, url=current, text=doc.content[: self._max_chars], kind="link"
                    )
        raise FetchError(f"{url}: more than {self._max_redirects} redirects")

"""Any other link: a blog listing is read through its feed, any other page by main-text extraction.

A listing page that advertises an RSS/Atom feed is worth more through the feed: the feed names
every post explicitly, where scraping a listing's links would also pick up tag pages, the "about"
page and pagination. Every other HTML page is one document, read with trafilatura, which strips
navigation, sidebars, cookie banners, comments and footers. Trafilatura gets the HTML string
only (never a URL to fetch): extractors do no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any
from urllib.parse import urljoin, urlsplit

import parsel

from twin.domain.documents import Category, ExtractedDocument, Platform
from twin.domain.errors import EmptyExtraction, UnsupportedContent
from twin.domain.urls import canonical_url
from twin.extractors.base import FEED_TYPES, HTML_TYPES, ExtractOptions, Follow, Output, Page
from twin.extractors.feeds import feed_entries
from twin.extractors.htmltext import (
    canonical_link,
    drop_repeated_headings,
    ld_article,
    ld_author,
    ld_text,
    normalise_markdown,
    parse_datetime,
    published_time,
    squash,
    word_count,
)

# Fewer words than this after extraction is a stub, an error page or pure chrome: not a document.
MIN_WORDS = 40
_FEED_LINK = (
    '//link[contains(concat(" ", normalize-space(@rel), " "), " alternate ")]'
    '[@type="application/rss+xml" or @type="application/atom+xml"]/@href'
)


def _same_site(a: str, b: str) -> bool:
    return urlsplit(a).netloc.lower() == urlsplit(b).netloc.lower()


def _is_article(sel: parsel.Selector) -> bool:
    """Whether the page says it is one article (Open Graph type or Article-like JSON-LD)."""
    og_type = (sel.css('meta[property="og:type"]::attr(content)').get() or "").strip().lower()
    return og_type == "article" or bool(ld_article(sel))


class WebExtractor:
    platform = Platform.WEB

    def start(self, source_url: str, options: ExtractOptions) -> Iterable[Follow]:
        yield Follow(source_url, step="page")

    def parse(self, page: Page) -> Iterable[Output]:
        if page.step == "feed" or (page.step == "page" and page.content_type in FEED_TYPES):
            return list(self._feed(page))
        if page.step == "page":
            return list(self._page(page))
        if page.step == "article":
            return [self._extract(page)]
        raise UnsupportedContent(f"{page.url}: unknown web step {page.step!r}")

    def _page(self, page: Page) -> Iterator[Output]:
        page.require(*HTML_TYPES)
        sel = parsel.Selector(text=page.text)
        feed = sel.xpath(_FEED_LINK).get()
        if feed and not _is_article(sel):
            feed_url = urljoin(page.url, feed.strip())
            if _same_site(feed_url, page.url):
                yield Follow(feed_url, step="feed", data={"listing": page.url})
                return
        yield self._extract(page, sel)

    def _feed(self, page: Page) -> Iterator[Follow]:
        seen: set[str] = set()
        site = str(page.data.get("listing") or page.url)
        for entry in feed_entries(page):
            link = entry.get("link")
            if not link:
                continue
            url = canonical_url(urljoin(page.url, link))
            if url in seen or not _same_site(url, site):
                continue  # other hosts are not this source (syndicated posts, guest pieces)
            seen.add(url)
            yield Follow(url, step="article", optional=True)

    def _extract(self, page: Page, sel: parsel.Selector | None = None) -> ExtractedDocument:
        import trafilatura  # heavy import, paid only when a page is actually extracted

        page.require(*HTML_TYPES)
        if not page.is_html():
            raise UnsupportedContent(f"{page.url}: not an HTML page")
        sel = sel or parsel.Selector(text=page.text)
        meta = trafilatura.extract_metadata(page.text, default_url=page.url)
        markdown = trafilatura.extract(
            page.text,
            url=page.url,
            output_format="markdown",
            include_comments=False,
            include_tables=True,
            include_images=False,
            include_links=False,
            with_metadata=False,
        )
        ld = ld_article(sel)
        title = ld_text(ld, "headline") or squash(getattr(meta, "title", None) or "")
        text = _drop_title(normalise_markdown(markdown or ""), title)
        if word_count(text) < MIN_WORDS:
            raise EmptyExtraction(f"{page.url}: no main text worth storing")
        if not title:
            raise EmptyExtraction(f"{page.url}: no title")
        return ExtractedDocument(
            canonical_url=canonical_url(urljoin(page.url, canonical_link(sel) or page.url)),
            category=Category.ARTICLE,
            title=title,
            content=text,
            author=ld_author(ld) or (squash(getattr(meta, "author", None) or "") or None),
            published_at=_published(sel, ld, meta),
            metadata=_metadata(meta),
        )


def _drop_title(text: str, title: str) -> str:
    blocks = text.split("\n\n")
    kept = drop_repeated_headings(blocks, title)
    return text if len(kept) == len(blocks) else "\n\n".join(kept).strip()


def _published(sel: parsel.Selector, ld: dict[str, Any], meta: Any) -> datetime | None:
    """The most precise publication time the page states: JSON-LD, Open Graph, then trafilatura's
    date guess (a day, taken as midnight UTC)."""
    return published_time(sel, ld) or parse_datetime(getattr(meta, "date", None))


def _metadata(meta: Any) -> dict[str, Any]:
    tags: list[str] = []
    for value in [*(getattr(meta, "tags", None) or []), *(getattr(meta, "categories", None) or [])]:
        tags.extend(t.strip() for t in str(value).split(",") if t.strip())
    out: dict[str, Any] = {"tags": list(dict.fromkeys(tags))}
    for key in ("sitename", "description", "language"):
        value = getattr(meta, key, None)
        if isinstance(value, str) and value.strip():
            out[key] = value.strip()
    return out

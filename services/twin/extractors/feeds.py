"""RSS and Atom feeds as every extractor with a feed step reads them (Medium, Substack, blogs).

Feeds are labelled inconsistently: the feed media types, plain XML, and sometimes ``text/html``
or ``text/plain`` (some proxies and CDNs relabel what they pass on). One rule for every platform,
so that no extractor accepts a label another refuses: a body labelled as a feed is parsed as one;
a body with any other text label, or none, is accepted when it parses as RSS or Atom and refused
otherwise (a challenge page labelled ``text/html`` is not an empty feed); anything else (a PDF,
JSON) is refused.
"""

from __future__ import annotations

from typing import Any

import feedparser

from twin.domain.errors import UnsupportedContent
from twin.extractors.base import FEED_TYPES, HTML_TYPES, TEXT_TYPES, Page

# Labels a feed is sometimes served under; the body decides.
_SNIFFED_TYPES = ("", *HTML_TYPES, *TEXT_TYPES)


def feed_entries(page: Page) -> list[Any]:
    """The feedparser entries of a feed page; :class:`UnsupportedContent` when it is not a feed."""
    if page.content_type not in (*FEED_TYPES, *_SNIFFED_TYPES):
        raise UnsupportedContent(f"{page.url}: expected an RSS or Atom feed but got {page.content_type!r}")
    parsed = feedparser.parse(page.body)
    # feedparser names the format it recognised ("rss20", "atom10"...); "" means it found none.
    if page.content_type not in FEED_TYPES and not parsed.get("version"):
        label = page.content_type or "no content type"
        raise UnsupportedContent(f"{page.url}: labelled {label} and not an RSS or Atom feed")
    return list(parsed.entries)

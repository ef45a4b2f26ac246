"""Medium: the author's RSS feed first, then the JavaScript profile page for what the feed omits.

Medium's RSS feed is the stable, machine-readable surface: full HTML in ``content:encoded``, the
author in ``dc:creator``, dates in ``pubDate``. It holds only the 10 latest stories, though, so
after parsing it the extractor asks for the profile page, rendered with a browser (Medium is a
JavaScript application: without one it lists nothing), and follows only the story links the feed
did not cover. The profile request is chained from the feed step, carrying the feed's canonical
URLs, so no article is fetched twice.

Story pages (the browser path) are Medium's own markup: the title and subtitle carry the same
``data-selectable-paragraph`` marker as body blocks, and the JSON-LD is ``SocialMediaPosting``;
both are read as such. Feed items of stories in a publication end with Medium's "was originally
published in <publication> on Medium" line, which is dropped: it is Medium's, not the writer's.

Source forms: ``https://medium.com/@user`` (feed ``/feed/@user``), ``https://medium.com/<pub>``
(feed ``/feed/<pub>``), ``https://<user>.medium.com`` or a custom domain (feed ``/feed``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any
from urllib.parse import urljoin, urlsplit, urlunsplit

import parsel

from twin.domain.documents import Category, ExtractedDocument, Platform
from twin.domain.errors import EmptyExtraction, UnsupportedContent
from twin.domain.urls import canonical_url
from twin.extractors.base import (
    HTML_TYPES,
    ExtractOptions,
    Follow,
    Incomplete,
    Output,
    Page,
)
from twin.extractors.feeds import feed_entries
from twin.extractors.htmltext import (
    block_to_markdown,
    canonical_link,
    drop_repeated_headings,
    element_to_markdown,
    entry_datetime,
    html_to_markdown,
    ld_article,
    ld_author,
    ld_text,
    published_time,
    squash,
)

# A story URL ends in "-<hex id>" (Medium ids are 12 hex digits; some old ones 10-11).
_STORY_ID = re.compile(r"-[0-9a-f]{10,12}$")
# The line Medium appends to feed items of stories in a publication: "<story> was originally
# published in <publication> on Medium, where people are continuing the conversation by ...".
_PUBLICATION_FOOTER = re.compile(r"\bwas originally published in\b.+\bon Medium\b", re.IGNORECASE)
# Story-page elements that are the title or subtitle, whatever marker they also carry.
_TITLE_BLOCKS = 'article h1[data-testid="storyTitle"], article .pw-post-title, article .pw-subtitle-paragraph'


def _without_publication_footer(text: str) -> str:
    """``text`` without Medium's trailing "originally published in … on Medium" paragraph."""
    head, sep, last = text.rpartition("\n\n")
    if _PUBLICATION_FOOTER.search(last) and not last.startswith(("```", "## ")):
        return head if sep else ""
    return text


def feed_and_profile(source_url: str) -> tuple[str, str]:
    """The RSS feed and profile page URLs for a Medium source URL."""
    parts = urlsplit(source_url)
    segments = [s for s in parts.path.split("/") if s]
    host = (parts.hostname or "").lower()
    if segments and segments[0].startswith("@"):
        name = segments[0]  # medium.com/@user, or any host serving Medium's user paths
    elif segments and host == "medium.com":
        name = segments[0]  # medium.com/<publication>
    else:
        name = ""  # <user>.medium.com or a custom domain
    root = urlunsplit((parts.scheme, parts.netloc, "", "", ""))
    feed = f"{root}/feed/{name}" if name else f"{root}/feed"
    profile = f"{root}/{name}" if name else f"{root}/"
    return feed, profile


class MediumExtractor:
    platform = Platform.MEDIUM

    def start(self, source_url: str, options: ExtractOptions) -> Iterable[Follow]:
        feed, _ = feed_and_profile(source_url)
        yield Follow(
            feed, step="feed", headers={"Accept": "application/rss+xml, application/xml"}, accept_errors=True
        )

    def parse(self, page: Page) -> Iterable[Output]:
        if page.step == "feed":
            return list(self._feed(page))
        if page.step == "profile":
            return list(self._profile(page))
        if page.step == "article":
            return [self._article(page)]
        raise UnsupportedContent(f"{page.url}: unknown Medium step {page.step!r}")

    # -- feed ------------------------------------------------------------------------------------

    def _feed(self, page: Page) -> Iterator[Output]:
        _, profile = feed_and_profile(page.source_url)
        try:
            entries = feed_entries(page) if page.status < 400 else None
            reason = f"HTTP {page.status}"
        except UnsupportedContent as exc:
            entries, reason = None, str(exc)
        if entries is None:
            # No feed: the profile page alone may not list everything (it scrolls), so nothing may
            # be deleted on this crawl, but the articles it does list are still collected.
            yield Incomplete(f"feed unavailable ({reason}); collected from the profile page only")
            yield Follow(profile, step="profile", render_js=True, data={"seen": []})
            return
        seen: list[str] = []
        for entry in entries:
            doc = self._entry(entry, page)
            if doc is not None:
                seen.append(doc.canonical_url)
                yield doc
        # The profile page lists what the feed's 10 items leave out. Optional: without a browser
        # or with Medium changing its page, the feed's stories still stand.
        yield Follow(profile, step="profile", render_js=True, optional=True, data={"seen": seen})

    def _entry(self, entry: Any, page: Page) -> ExtractedDocument | None:
        link = entry.get("link")
        title = squash(entry.get("title") or "")
        contents = entry.get("content") or []
        html = contents[0].get("value", "") if contents else entry.get("summary", "")
        if not link or not title:
            return None
        text = _without_publication_footer(html_to_markdown(html, drop_title=title))
        if not text:
            return None
        tags = [t.get("term") for t in entry.get("tags") or [] if t.get("term")]
        return ExtractedDocument(
            canonical_url=canonical_url(urljoin(page.url, link)),
            category=Category.ARTICLE,
            title=title,
            content=text,
            author=squash(entry.get("author") or "") or None,
            published_at=entry_datetime(entry),
            metadata={"tags": tags, "via": "feed"},
        )

    # -- profile page ----------------------------------------------------------------------------

    def _profile(self, page: Page) -> Iterator[Follow]:
        page.require(*HTML_TYPES)
        seen = set(page.data.get("seen", []))
        host = urlsplit(page.url).netloc.lower()
        for href in parsel.Selector(text=page.text).css("a::attr(href)").getall():
            url = canonical_url(urljoin(page.url, href.strip()))
            parts = urlsplit(url)
            if parts.netloc != host or not _STORY_ID.search(parts.path) or url in seen:
                continue
            seen.add(url)
            yield Follow(url, step="article", optional=True)

    # -- article page ----------------------------------------------------------------------------

    def _article(self, page: Page) -> ExtractedDocument:
        page.require(*HTML_TYPES)
        sel = parsel.Selector(text=page.text)
        ld = ld_article(sel)
        title = ld_text(ld, "headline") or squash(
            " ".join(sel.css('h1[data-testid="storyTitle"] ::text').getall())
            or sel.css('meta[property="og:title"]::attr(content)').get("")
        )
        if not title:
            raise EmptyExtraction(f"{page.url}: no story title")
        subtitle = ld_text(ld, "description") or squash(
            " ".join(sel.css(".pw-subtitle-paragraph ::text").getall())
        )
        body = self._body(sel, title, subtitle)
        if not body:
            raise EmptyExtraction(f"{page.url}: no story text")
        tags = [squash(t) for t in sel.css(".tags .tag::text, a[href*='/tag/'] ::text").getall() if t.strip()]
        return ExtractedDocument(
            canonical_url=canonical_url(urljoin(page.url, canonical_link(sel) or page.url)),
            category=Category.ARTICLE,
            title=title,
            content=body,
            author=ld_author(ld) or sel.css('meta[name="author"]::attr(content)').get(),
            published_at=published_time(sel, ld),
            metadata={"subtitle": subtitle, "tags": list(dict.fromkeys(tags)), "via": "page"},
        )

    @staticmethod
    def _body(sel: parsel.Selector, title: str, subtitle: str) -> str:
        # Medium marks every body block with data-selectable-paragraph, and the title and subtitle
        # too: leave out the elements that are known to be them, then any leading heading that
        # still repeats them (a changed class name must not put the headline back in the body).
        for heading in sel.css(_TITLE_BLOCKS):
            heading.drop()
        blocks = sel.css("article [data-selectable-paragraph]")
        if blocks:
            parts = [p for p in (block_to_markdown(b.root) for b in blocks) if p]
            return "\n\n".join(drop_repeated_headings(parts, title, subtitle))
        # No marker at all: the <article>'s blocks, minus what repeats the title and subtitle.
        article = sel.css("article")
        if not article:
            return ""
        text = element_to_markdown(article[0].root)
        return "\n\n".join(drop_repeated_headings(text.split("\n\n"), title, subtitle)) if text else ""

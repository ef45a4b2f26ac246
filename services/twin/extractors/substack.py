"""Substack: the publication's archive API, then each free post's page; the RSS feed as fallback.

``/api/v1/archive`` is what Substack's own web app pages through: it lists every post (the feed
holds only the latest ~20) with its audience, so paid posts are skipped before they are fetched.
Post pages give the full text of free posts. When the API answers something other than a JSON
list (blocked, changed, a challenge page), the extractor falls back to ``/feed``.

Paid posts are never stored, not even marked as truncated: their public text is a preview cut at
the paywall, and a writer would not want a teaser that stops mid-thought to train their twin.
Each one is reported (:class:`~twin.extractors.base.Paywalled`), so the crawl summary says how
many were left out. The archive says which posts are paid (``audience``); a post page says it
with its paywall; a feed item says it only by how it ends: Substack cuts the item at the paywall
and closes it with a short paragraph linking back to the post ("Read more"), or, in older feeds,
with its paywall marker.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from typing import Any
from urllib.parse import urljoin, urlsplit, urlunsplit

import parsel

from twin.domain.documents import Category, ExtractedDocument, Platform
from twin.domain.errors import EmptyExtraction, UnsupportedContent
from twin.domain.urls import canonical_url
from twin.extractors.base import (
    HTML_TYPES,
    JSON_TYPES,
    ExtractOptions,
    Follow,
    Incomplete,
    Output,
    Page,
    Paywalled,
)
from twin.extractors.feeds import feed_entries
from twin.extractors.htmltext import (
    canonical_link,
    element_to_markdown,
    entry_datetime,
    html_to_markdown,
    ld_article,
    ld_author,
    ld_text,
    parse_datetime,
    squash,
)

PAGE_SIZE = 12
FREE = "everyone"
# Substack's marker where a paid post's body is cut ("PaywallToDOM"), and the paywall box.
_PAYWALL_MARKERS = ('class="paywall-jump"', "PaywallToDOM")
# A feed item's closing link back to its own post is a call to action ("Read more", "Keep reading
# with a 7-day free trial"), never longer than this; a longer paragraph is the writer's text.
_READ_MORE_MAX_WORDS = 8


def _root(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "", "", ""))


def archive_url(root: str, offset: int) -> str:
    return f"{root}/api/v1/archive?sort=new&offset={offset}&limit={PAGE_SIZE}"


class SubstackExtractor:
    platform = Platform.SUBSTACK

    def start(self, source_url: str, options: ExtractOptions) -> Iterable[Follow]:
        root = _root(source_url)
        yield Follow(
            archive_url(root, 0),
            step="archive",
            headers={"Accept": "application/json"},
            data={"offset": 0, "seen": []},
            accept_errors=True,
        )

    def parse(self, page: Page) -> Iterable[Output]:
        if page.step == "archive":
            return list(self._archive(page))
        if page.step == "post":
            return [self._post(page)]
        if page.step == "feed":
            return list(self._feed(page))
        raise UnsupportedContent(f"{page.url}: unknown Substack step {page.step!r}")

    # -- archive API -----------------------------------------------------------------------------

    def _archive(self, page: Page) -> Iterator[Follow | Incomplete | Paywalled]:
        root = _root(page.url)
        items = self._archive_items(page)
        if items is None:
            # The API is unusable (error status, HTML challenge, changed shape): use the feed. It
            # lists only recent posts, so the source is incomplete and must not delete older ones.
            yield Incomplete(
                f"archive API unusable (HTTP {page.status}, {page.content_type or 'no type'}); "
                "fell back to the RSS feed, which lists only recent posts"
            )
            yield Follow(f"{root}/feed", step="feed", headers={"Accept": "application/rss+xml"})
            return
        seen: list[str] = list(page.data.get("seen", []))
        fresh = 0
        for item in items:
            slug = item.get("slug")
            if not isinstance(slug, str) or not slug or slug in seen:
                continue  # offsets shift when a post is published mid-crawl: skip repeats
            seen.append(slug)
            fresh += 1
            given = item.get("canonical_url")
            url = urljoin(page.url, given if isinstance(given, str) and given else f"/p/{slug}")
            if item.get("audience", FREE) != FREE:
                # Only a preview is readable: not fetched, not stored, counted.
                yield Paywalled(canonical_url(url))
                continue
            yield Follow(
                url,
                step="post",
                optional=True,
                data={"archive": _archive_facts(item)},
            )
        if fresh:  # an empty page (or one with nothing new) ends the archive
            offset = int(page.data.get("offset", 0)) + len(items)
            yield Follow(
                archive_url(root, offset),
                step="archive",
                headers={"Accept": "application/json"},
                data={"offset": offset, "seen": seen},
                accept_errors=True,
            )

    @staticmethod
    def _archive_items(page: Page) -> list[dict[str, Any]] | None:
        if page.status >= 400 or (page.content_type and page.content_type not in JSON_TYPES):
            return None
        try:
            payload = json.loads(page.text)
        except ValueError:
            return None
        if not isinstance(payload, list):
            return None
        return [item for item in payload if isinstance(item, dict)]

    # -- post page -------------------------------------------------------------------------------

    def _post(self, page: Page) -> ExtractedDocument | Paywalled:
        page.require(*HTML_TYPES)
        facts: Mapping[str, Any] = page.data.get("archive", {})
        sel = parsel.Selector(text=page.text)
        ld = ld_article(sel)
        if ld.get("isAccessibleForFree") is False or sel.css(".paywall, .paywall-jump"):
            # A post the archive called free but the page paywalls (it changed since): a paid post.
            return Paywalled(canonical_url(urljoin(page.url, canonical_link(sel) or page.url)))
        title = squash(" ".join(sel.css("h1.post-title ::text").getall())) or ld_text(ld, "headline") or ""
        title = title or str(facts.get("title") or "")
        body_el = sel.css("div.available-content div.body.markup") or sel.css("div.body.markup")
        body = element_to_markdown(body_el[0].root, drop_title=title) if body_el else ""
        if not title or not body:
            raise EmptyExtraction(f"{page.url}: no post title or text")
        subtitle = squash(" ".join(sel.css("h3.subtitle ::text").getall()))
        subtitle = subtitle or str(facts.get("subtitle") or "")
        published = parse_datetime(ld.get("datePublished")) or parse_datetime(facts.get("post_date"))
        return ExtractedDocument(
            canonical_url=canonical_url(urljoin(page.url, canonical_link(sel) or page.url)),
            category=Category.ARTICLE,
            title=title,
            content=body,
            author=ld_author(ld),
            published_at=published,
            metadata={
                "subtitle": subtitle,
                "tags": list(facts.get("tags", [])),
                "substack_id": facts.get("id"),
                "via": "archive",
            },
        )

    # -- feed fallback ---------------------------------------------------------------------------

    def _feed(self, page: Page) -> Iterator[ExtractedDocument | Paywalled]:
        for entry in feed_entries(page):
            contents = entry.get("content") or []
            html = contents[0].get("value", "") if contents else ""
            title = squash(entry.get("title") or "")
            link = entry.get("link")
            if not title or not link:
                continue
            url = canonical_url(urljoin(page.url, link))
            if cut_at_paywall(html, url):
                yield Paywalled(url)
                continue
            text = html_to_markdown(html, drop_title=title)
            if not text:
                continue
            yield ExtractedDocument(
                canonical_url=url,
                category=Category.ARTICLE,
                title=title,
                content=text,
                author=squash(entry.get("author") or "") or None,
                published_at=entry_datetime(entry),
                metadata={"subtitle": squash(entry.get("summary") or ""), "via": "feed"},
            )


def _archive_facts(item: Mapping[str, Any]) -> dict[str, Any]:
    """What a post page may lack but the archive knows (kept JSON-simple for Follow.data)."""
    tags = [t.get("name") for t in item.get("postTags") or [] if isinstance(t, dict) and t.get("name")]
    return {
        "id": item.get("id"),
        "title": item.get("title"),
        "subtitle": item.get("subtitle"),
        "post_date": item.get("post_date"),
        "tags": tags,
    }


def cut_at_paywall(html: str, post_url: str) -> bool:
    """Whether a feed item's HTML is a paid post cut at the paywall.

    Substack's feed ends such an item with a last paragraph that holds nothing but a short link
    back to the post itself ("Read more"); older feeds carried the paywall marker instead. A free
    post ends with the writer's own text (a link to another post, or a long paragraph, is theirs).
    """
    if any(marker in html for marker in _PAYWALL_MARKERS):
        return True
    root = parsel.Selector(text=f"<div>{html}</div>").css("body > div > *")
    last = next((el for el in reversed(root) if squash(" ".join(el.css("::text").getall()))), None)
    if last is None:
        return False
    text = squash(" ".join(last.css("::text").getall()))
    links = last.css("a")
    link_text = squash(" ".join(t for a in links for t in a.css("::text").getall()))
    own_path = urlsplit(post_url).path
    to_post = [
        a
        for a in links
        if urlsplit(canonical_url(urljoin(post_url, a.attrib.get("href", "")))).path == own_path
    ]
    return (
        bool(to_post)
        and len(to_post) == len(links)
        and link_text == text
        and (len(text.split()) <= _READ_MORE_MAX_WORDS)
    )

"""The helpers the long-form extractors share: one feed rule, one date rule, one title rule."""

from __future__ import annotations

from datetime import UTC, datetime

import parsel
import pytest

from twin.demo.content import load_demo_content
from twin.demo.server import Request
from twin.demo.sites.medium import MediumSite
from twin.demo.sites.substack import SubstackSite
from twin.demo.sites.web import WebSite
from twin.domain.documents import ExtractedDocument
from twin.domain.errors import UnsupportedContent
from twin.extractors.base import ExtractOptions, Extractor, Follow, Incomplete, Page
from twin.extractors.htmltext import drop_repeated_headings, ld_article, published_time
from twin.extractors.medium import MediumExtractor
from twin.extractors.substack import SubstackExtractor
from twin.extractors.web import WebExtractor

BASE = "http://127.0.0.1:8000"
CHALLENGE = "<!doctype html><html><head><title>Just a moment...</title></head><body>Checking</body></html>"


def _feed_page(url: str, body: str, content_type: str, source_url: str) -> Page:
    return Page(
        url=url,
        status=200,
        content_type=content_type,
        headers={},
        body=body.encode(),
        text=body,
        step="feed",
        data={},
        source_url=source_url,
        options=ExtractOptions(),
    )


def _served(site: MediumSite | SubstackSite | WebSite, path: str) -> str:
    response = site.respond(Request("GET", path, {}, {}, b"", base_url=BASE))
    assert response is not None and isinstance(response.body, str)
    return response.body


FEEDS: list[tuple[str, Extractor, str, str]] = [
    ("medium", MediumExtractor(), "/feed/@alice", f"{BASE}/@alice"),
    ("substack", SubstackExtractor(), "/feed", f"{BASE}/"),
    ("web", WebExtractor(), "/blog/feed.xml", f"{BASE}/blog/"),
]


def _site(name: str) -> MediumSite | SubstackSite | WebSite:
    content = load_demo_content()
    if name == "medium":
        return MediumSite(content)
    return SubstackSite(content) if name == "substack" else WebSite(content)


@pytest.mark.parametrize(("name", "extractor", "path", "source"), FEEDS, ids=[f[0] for f in FEEDS])
@pytest.mark.parametrize("label", ["application/rss+xml", "text/xml", "text/html", "text/plain", ""])
def test_every_feed_step_reads_a_feed_whatever_its_text_label(
    name: str, extractor: Extractor, path: str, source: str, label: str
) -> None:
    # Issue 14 #5: the Substack (and blog) feed step refused a feed labelled text/html.
    body = _served(_site(name), path)
    outputs = list(extractor.parse(_feed_page(f"{BASE}{path}", body, label, source)))
    wanted = Follow if name == "web" else ExtractedDocument  # the blog feed lists links only
    assert len([o for o in outputs if isinstance(o, wanted)]) >= 3
    assert not [o for o in outputs if isinstance(o, Incomplete)]


@pytest.mark.parametrize(("name", "extractor", "path", "source"), FEEDS[1:], ids=["substack", "web"])
def test_an_html_page_on_a_feed_step_is_refused_not_read_as_an_empty_feed(
    name: str, extractor: Extractor, path: str, source: str
) -> None:
    with pytest.raises(UnsupportedContent, match="not an RSS or Atom feed"):
        list(extractor.parse(_feed_page(f"{BASE}{path}", CHALLENGE, "text/html", source)))
    with pytest.raises(UnsupportedContent, match="application/pdf"):
        list(extractor.parse(_feed_page(f"{BASE}{path}", "%PDF-1.4", "application/pdf", source)))


def test_medium_treats_an_unusable_feed_like_a_missing_one() -> None:
    # The profile page still lists the stories; the source is marked incomplete (no deletions).
    page = _feed_page(f"{BASE}/feed/@alice", CHALLENGE, "text/html", f"{BASE}/@alice")
    incomplete, follow = MediumExtractor().parse(page)
    assert isinstance(incomplete, Incomplete) and "not an RSS or Atom feed" in incomplete.reason
    assert isinstance(follow, Follow) and follow.step == "profile" and not follow.optional


@pytest.mark.parametrize("kind", ["Article", "NewsArticle", "BlogPosting", "SocialMediaPosting"])
def test_article_json_ld_types_include_social_media_posting(kind: str) -> None:
    html = (
        f'<script type="application/ld+json">{{"@type": "{kind}", "datePublished": "2025-01-02T03:04:05Z"}}'
        "</script>"
    )
    sel = parsel.Selector(text=html)
    assert ld_article(sel)["@type"] == kind
    assert published_time(sel, ld_article(sel)) == datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)


def test_published_time_falls_back_to_open_graph() -> None:
    sel = parsel.Selector(
        text='<meta property="article:published_time" content="2024-05-06T07:08:09+02:00">'
        '<script type="application/ld+json">{"@type": "WebPage"}</script>'
    )
    assert ld_article(sel) == {}
    assert published_time(sel, {}) == datetime(2024, 5, 6, 5, 8, 9, tzinfo=UTC)


def test_only_leading_headings_that_repeat_the_title_or_subtitle_are_dropped() -> None:
    blocks = ["## The Title", "## the  subtitle", "Body.", "## The Title", "More."]
    assert drop_repeated_headings(blocks, "The Title", "The subtitle") == ["Body.", "## The Title", "More."]
    assert drop_repeated_headings(["The Title", "Body."], "The Title") == ["The Title", "Body."]
    assert drop_repeated_headings(["## A", "## A", "x"], "A") == ["## A", "x"]
    assert drop_repeated_headings(["## A"], None, "") == ["## A"]

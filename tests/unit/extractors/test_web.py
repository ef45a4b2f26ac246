"""WebExtractor against the personal-blog fixture: feed discovery and main-text extraction."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from support.offline import OfflineCrawl, crawl_offline
from twin.demo.content import DemoContent, load_demo_content
from twin.demo.server import Request, Response, SiteServer
from twin.demo.sites.markup import blocks
from twin.demo.sites.web import WebSite
from twin.domain.documents import Category
from twin.domain.errors import EmptyExtraction, UnsupportedContent
from twin.extractors.base import ExtractOptions, Page
from twin.extractors.web import WebExtractor

# Text of the chrome around every post: none of it may reach a document.
BOILERPLATE = [
    "single cookie",
    "Recent posts",
    "Download my CV",
    "Share this post",
    "Sam K.",
    "Post comment",
    "stubbornness",
    "Subscribe",
    "Imprint",
    "2 comments",
    "By Alice Moreau on",
]


class BlogWithStubs(WebSite):
    """The blog plus a page that is all chrome and no post (a placeholder for an unwritten post)."""

    def respond(self, request: Request) -> Response | None:
        if request.path == "/blog/coming-soon.html":
            page = (
                '<html><head><title>Coming soon</title><meta property="og:type" content="article"></head>'
                '<body><nav><a href="/blog/">Blog</a></nav><div class="cookie-banner">We use one cookie.'
                "</div><main><article><h1>Coming soon</h1></article></main><footer>© 2025</footer>"
                "</body></html>"
            )
            return Response.html(page)
        return super().respond(request)


@pytest.fixture(scope="module")
def blog() -> tuple[DemoContent, str, OfflineCrawl]:
    content = load_demo_content()
    with SiteServer(WebSite(content)) as server:
        return content, server.base_url, crawl_offline(WebExtractor(), f"{server.base_url}/blog/")


def test_listing_is_read_through_its_advertised_feed(blog: tuple[DemoContent, str, OfflineCrawl]) -> None:
    content, base, result = blog
    assert not result.errors
    assert [f.step for f in result.fetched] == ["page", "feed"] + ["article"] * len(content.web)
    # Feed links carry utm_* parameters; documents and follow-ups use the canonical URL.
    assert sorted(d.canonical_url for d in result.documents) == sorted(
        f"{base}/blog/{a.slug}.html" for a in content.web
    )
    assert not any("utm_" in f.url for f in result.fetched)


def test_main_text_is_the_post_and_nothing_else(blog: tuple[DemoContent, str, OfflineCrawl]) -> None:
    content, _, result = blog
    docs = {d.title: d for d in result.documents}
    assert set(docs) == {a.title for a in content.web}
    for page in content.web:
        doc = docs[page.title]
        assert doc.category is Category.ARTICLE
        assert doc.author == content.owner
        assert doc.published_at == datetime.fromisoformat(page.published).replace(
            hour=9, minute=30, tzinfo=UTC
        )
        assert doc.metadata["tags"] == page.tags
        expected = [f"## {b.text}" if b.kind == "heading" else b.text for b in blocks(page.body)]
        assert doc.content.split("\n\n") == expected, page.slug
        assert not [phrase for phrase in BOILERPLATE if phrase in doc.content]
        assert "<" not in doc.content and not doc.content.startswith(f"## {page.title}")


def test_a_single_post_url_is_extracted_directly() -> None:
    content = load_demo_content()
    page = content.web[1]
    with SiteServer(WebSite(content)) as server:
        base = server.base_url
        result = crawl_offline(WebExtractor(), f"{base}/blog/{page.slug}.html?ref=mastodon")
    # The post advertises the blog's feed too, but it is an article, not a listing.
    assert [f.step for f in result.fetched] == ["page"]
    [doc] = result.documents
    assert doc.title == page.title
    assert doc.canonical_url == f"{base}/blog/{page.slug}.html"


def test_bad_pages_raise_the_right_errors() -> None:
    with SiteServer(BlogWithStubs(load_demo_content())) as server:
        pdf = crawl_offline(WebExtractor(), f"{server.base_url}/files/alice-moreau-cv.pdf")
        stub = crawl_offline(WebExtractor(), f"{server.base_url}/blog/coming-soon.html")
    assert not pdf.documents and not stub.documents
    assert [type(e) for _, e in pdf.errors] == [UnsupportedContent]
    assert [type(e) for _, e in stub.errors] == [EmptyExtraction]


def _feed_page(body: str) -> Page:
    return Page(
        url="https://alice.dev/blog/feed.xml",
        status=200,
        content_type="application/rss+xml",
        headers={},
        body=body.encode(),
        text=body,
        step="feed",
        data={"listing": "https://alice.dev/blog/"},
        source_url="https://alice.dev/blog/",
        options=ExtractOptions(),
    )


def test_feed_entries_on_other_hosts_and_repeats_are_not_followed() -> None:
    feed = """<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>
<item><title>a</title><link>https://alice.dev/blog/a.html?utm_source=rss</link></item>
<item><title>a again</title><link>https://alice.dev/blog/a.html</link></item>
<item><title>guest</title><link>https://elsewhere.example/post</link></item>
</channel></rss>"""
    follows = list(WebExtractor().parse(_feed_page(feed)))
    assert [(f.url, f.step, f.optional) for f in follows] == [
        ("https://alice.dev/blog/a.html", "article", True)
    ]

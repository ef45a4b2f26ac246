"""SubstackExtractor against the Substack fixture: archive API, post pages, feed fallback."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from support.offline import OfflineCrawl, crawl_offline
from twin.demo.content import Article, DemoContent, load_demo_content
from twin.demo.server import Request, SiteServer
from twin.demo.sites.markup import blocks
from twin.demo.sites.substack import PAID_POST, SubstackSite
from twin.domain.documents import Category
from twin.extractors.base import ExtractOptions, Follow, Incomplete, Page, Paywalled
from twin.extractors.substack import SubstackExtractor, cut_at_paywall


def expected_markdown(body: str) -> str:
    out = []
    for b in blocks(body):
        if b.kind == "heading":
            out.append(f"## {b.text}")
        elif b.kind == "code":
            out.append(f"```{b.language}\n{b.text}\n```")
        else:
            out.append(b.text)
    return "\n\n".join(out)


def crawl(site: SubstackSite) -> tuple[str, OfflineCrawl]:
    with SiteServer(site) as server:
        return server.base_url, crawl_offline(SubstackExtractor(), f"{server.base_url}/")


def assert_matches_content(content: DemoContent, base: str, result: OfflineCrawl) -> None:
    assert not result.errors
    docs = {d.canonical_url: d for d in result.documents}
    assert len(docs) == len(result.documents) == len(content.substack)  # each post exactly once
    for post in content.substack:
        doc = docs[f"{base}/p/{post.slug}"]
        assert doc.title == post.title
        assert doc.category is Category.ARTICLE
        assert doc.author == content.owner
        assert doc.published_at == datetime.fromisoformat(post.published).replace(
            hour=9, minute=30, tzinfo=UTC
        )
        assert doc.metadata["subtitle"] == post.subtitle
        # Exactly the body: no subscribe widget, no "Discussion about this post", no footer.
        assert doc.content == expected_markdown(post.body), post.slug
    assert all(PAID_POST.title != d.title for d in result.documents)


def test_archive_api_then_post_pages() -> None:
    content = load_demo_content()
    base, result = crawl(SubstackSite(content))
    assert_matches_content(content, base, result)
    steps = [f.step for f in result.fetched]
    assert steps.count("post") == len(content.substack)
    assert steps.count("archive") == 2  # one page of posts, then the empty page that ends it
    assert "feed" not in steps
    # The paid post is skipped on the archive's word: its page is never even requested.
    assert not any(PAID_POST.slug in f.url for f in result.fetched)


def test_archive_pagination_follows_until_an_empty_page() -> None:
    content = load_demo_content()
    for i in range(20):
        content.substack.append(
            Article(
                slug=f"extra-{i}",
                title=f"Extra issue {i}",
                subtitle="More notes.",
                body=f"Issue {i}: idempotent loaders again.\n\n## Still boring\n\nBoring is a feature.",
                published=f"2023-01-{i + 1:02d}",
            )
        )
    base, result = crawl(SubstackSite(content))
    assert_matches_content(content, base, result)
    archive_offsets = [f.data["offset"] for f in result.fetched if f.step == "archive"]
    assert archive_offsets == [0, 12, 24, 27]  # 27 posts incl. the paid one; the last page is empty


def test_feed_fallback_when_the_archive_api_is_unavailable() -> None:
    content = load_demo_content()
    site = SubstackSite(content)
    site.archive_api_enabled = False
    base, result = crawl(site)
    assert [f.step for f in result.fetched] == ["archive", "feed"]
    assert {d.metadata["via"] for d in result.documents} == {"feed"}
    # The feed lists only recent posts: the source says so, which keeps older ones from deletion.
    assert len(result.incomplete) == 1 and "fell back to the RSS feed" in result.incomplete[0]
    # Same documents as the API path, and the paywall-truncated paid post is not among them.
    assert_matches_content(content, base, result)


def _page(url: str, body: str, *, step: str, status: int = 200, content_type: str = "text/html") -> Page:
    return Page(
        url=url,
        status=status,
        content_type=content_type,
        headers={},
        body=body.encode(),
        text=body,
        step=step,
        data={"offset": 0},
        source_url="https://alice.substack.com/",
        options=ExtractOptions(),
    )


def test_archive_error_status_falls_back_to_the_feed() -> None:
    page = _page(
        "https://alice.substack.com/api/v1/archive?sort=new&offset=0&limit=12",
        '{"error": "nope"}',
        step="archive",
        status=503,
        content_type="application/json",
    )
    incomplete, follow = SubstackExtractor().parse(page)
    assert isinstance(incomplete, Incomplete) and "HTTP 503" in incomplete.reason
    assert follow == Follow(
        "https://alice.substack.com/feed", step="feed", headers={"Accept": "application/rss+xml"}
    )


def test_archive_error_over_http_reaches_the_extractor_and_falls_back() -> None:
    content = load_demo_content()
    site = SubstackSite(content)
    site.archive_api_error = 500
    base, result = crawl(site)
    assert [f.step for f in result.fetched] == ["archive", "feed"]
    assert result.errors == []
    assert "HTTP 500" in result.incomplete[0]
    assert_matches_content(content, base, result)


def test_a_paywalled_post_page_is_counted_not_stored_truncated() -> None:
    site = SubstackSite(load_demo_content())
    response = site.respond(Request("GET", f"/p/{PAID_POST.slug}", {}, {}, b"", "https://alice.substack.com"))
    assert response is not None and isinstance(response.body, str)
    outputs = SubstackExtractor().parse(
        _page(f"https://alice.substack.com/p/{PAID_POST.slug}?utm_source=x", response.body, step="post")
    )
    assert list(outputs) == [Paywalled(f"https://alice.substack.com/p/{PAID_POST.slug}")]


def paid(n: int) -> list[Article]:
    """``n`` paid posts, each with a preview worth storing if one did not know it was cut."""
    return [
        Article(
            slug=f"paid-issue-{i}",
            title=f"Paid issue {i}: the consumer code",
            subtitle="For paying subscribers.",
            published=f"2025-06-{i + 10:02d}",
            body=(
                f"Issue {i}. Thank you for supporting the newsletter, it keeps the lights on.\n\n"
                "This week the whole consumer, line by line, and why it commits where it does.\n\n"
                "## The code\n\nThe rest is for paid subscribers."
            ),
        )
        for i in range(n)
    ]


def test_feed_items_cut_at_the_paywall_are_counted_not_stored() -> None:
    # Issue 14 #1: the real feed cuts a paid post with only a "Read more" link to it, no marker.
    content = load_demo_content()
    site = SubstackSite(content, paid_posts=[PAID_POST, *paid(3)])
    site.archive_api_enabled = False
    with SiteServer(site) as server:
        feed = site.respond(Request("GET", "/feed", {}, {}, b"", server.base_url))
        assert feed is not None and isinstance(feed.body, str)
        assert "paywall" not in feed.body.lower() and feed.body.count(">Read more</a></p>") == 4
        base = server.base_url
        result = crawl_offline(SubstackExtractor(), f"{base}/")
    assert_matches_content(content, base, result)
    assert sorted(result.paywalled) == sorted(f"{base}/p/{a.slug}" for a in site.paid_posts)
    assert not any(d.content.endswith("Read more") for d in result.documents)


def test_the_archive_reports_paid_posts_without_fetching_them() -> None:
    content = load_demo_content()
    base, result = crawl(SubstackSite(content, paid_posts=[PAID_POST, *paid(2)]))
    assert_matches_content(content, base, result)
    assert len(result.paywalled) == 3 and f"{base}/p/{PAID_POST.slug}" in result.paywalled
    assert not any("paid-issue" in f.url or PAID_POST.slug in f.url for f in result.fetched)


@pytest.mark.parametrize(
    ("html", "cut"),
    [
        ('<p>Preview.</p><p><a href="https://a.substack.com/p/post?utm_source=rss">Read more</a></p>', True),
        ('<p>Preview.</p><p><a href="/p/post">Keep reading with a 7-day free trial</a></p>', True),
        ('<p>Preview.</p><div class="paywall-jump" data-component-name="PaywallToDOM"></div>', True),
        # A free post may end with a link: to another post, or inside the writer's own sentence.
        ('<p>Whole post.</p><p><a href="https://a.substack.com/p/older">Read more</a></p>', False),
        ('<p>Whole post.</p><p>Thanks for reading, <a href="/p/post">share it</a>.</p>', False),
        ("<p>Whole post.</p><p>The end.</p>", False),
    ],
)
def test_what_counts_as_cut_at_the_paywall(html: str, cut: bool) -> None:
    assert cut_at_paywall(html, "https://a.substack.com/p/post") is cut


def test_a_feed_labelled_text_html_is_read() -> None:
    # Issue 14 #5: some proxies label feeds text/html; the Medium feed step already accepted that.
    content = load_demo_content()
    site = SubstackSite(content)
    site.archive_api_enabled = False
    site.feed_content_type = "text/html; charset=utf-8"
    base, result = crawl(site)
    assert [f.step for f in result.fetched] == ["archive", "feed"]
    assert_matches_content(content, base, result)

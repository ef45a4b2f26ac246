"""MediumExtractor against the Medium fixture: feed first, then the JavaScript profile page."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from support.offline import OfflineCrawl, crawl_offline
from twin.demo.content import Article, DemoContent, load_demo_content
from twin.demo.server import Request, SiteServer
from twin.demo.sites.markup import blocks
from twin.demo.sites.medium import FEED_LIMIT, MediumSite, story_id
from twin.domain.documents import Category, ExtractedDocument
from twin.domain.errors import EmptyExtraction, UnsupportedContent
from twin.extractors.base import ExtractOptions, Page
from twin.extractors.medium import MediumExtractor, feed_and_profile


def expected_markdown(body: str) -> str:
    """The content convention applied to a fixture body: what a perfect extraction yields."""
    out = []
    for b in blocks(body):
        if b.kind == "heading":
            out.append(f"## {b.text}")
        elif b.kind == "code":
            out.append(f"```{b.language}\n{b.text}\n```")
        else:
            out.append(b.text)
    return "\n\n".join(out)


def by_date(content: DemoContent) -> list[Article]:
    return sorted(content.medium, key=lambda a: a.published, reverse=True)


@pytest.fixture(scope="module")
def crawl() -> tuple[DemoContent, str, OfflineCrawl]:
    content = load_demo_content()
    with SiteServer(MediumSite(content)) as server:
        result = crawl_offline(MediumExtractor(), f"{server.base_url}/@alice")
        return content, server.base_url, result


def test_every_article_is_extracted_exactly_once(crawl: tuple[DemoContent, str, OfflineCrawl]) -> None:
    content, base, result = crawl
    assert not result.errors
    urls = [d.canonical_url for d in result.documents]
    assert len(urls) == len(set(urls)) == len(content.medium)
    assert {d.title for d in result.documents} == {a.title for a in content.medium}
    assert all(d.category is Category.ARTICLE for d in result.documents)
    # Tracking parameters (?source=rss-..., ?source=user_profile_page...) never reach the store.
    assert all(u.startswith(f"{base}/@alice/") and "?" not in u for u in urls)


def test_only_articles_missing_from_the_feed_are_fetched_via_the_browser(
    crawl: tuple[DemoContent, str, OfflineCrawl],
) -> None:
    content, base, result = crawl
    steps = [(f.step, f.render_js) for f in result.fetched]
    assert steps[:2] == [("feed", False), ("profile", True)]  # profile chained after the feed
    fetched_articles = {f.url for f in result.fetched if f.step == "article"}
    older = by_date(content)[FEED_LIMIT:]
    assert fetched_articles == {f"{base}/@alice/{a.slug}-{story_id(a.slug)}" for a in older}
    via = {d.title: d.metadata["via"] for d in result.documents}
    assert [via[a.title] for a in older] == ["page"] * len(older)


def test_documents_match_the_content(crawl: tuple[DemoContent, str, OfflineCrawl]) -> None:
    content, _, result = crawl
    docs = {d.title: d for d in result.documents}
    for article in content.medium:
        doc = docs[article.title]
        assert doc.author == content.owner
        assert doc.published_at == datetime.fromisoformat(article.published).replace(
            hour=9, minute=30, tzinfo=UTC
        )
        # Feed and page paths both yield exactly the body: no title repeat, byline, claps, pixel.
        assert doc.content == expected_markdown(article.body), article.slug
        assert doc.metadata["tags"] == article.tags
    upsert = docs["Postgres ON CONFLICT: Upserts Without Tears"].content
    assert "```sql\nCREATE TABLE IF NOT EXISTS daily_orders (" in upsert
    assert "<" not in "".join(d.content for d in result.documents if "ON CONFLICT" not in d.title)


def test_recrawl_sees_edits_and_new_articles() -> None:
    content = load_demo_content()
    oldest = by_date(content)[-1]  # only reachable through the JavaScript profile page
    oldest.body = oldest.body.replace("Start with row counts.", "Start with row counts, always.")
    content.medium.append(
        Article(
            slug="a-new-story",
            title="A New Story About Vacuum",
            body="A short new story.\n\n## Why\n\nBecause autovacuum needed a friend today.",
            published="2026-01-05",
        )
    )
    with SiteServer(MediumSite(content)) as server:
        result = crawl_offline(MediumExtractor(), f"{server.base_url}/@alice")
    docs = {d.title: d for d in result.documents}
    assert len(docs) == len(content.medium) == 13
    assert "Start with row counts, always." in docs[oldest.title].content
    assert docs["A New Story About Vacuum"].metadata["via"] == "feed"


@pytest.mark.parametrize(
    ("source", "feed", "profile"),
    [
        ("https://medium.com/@alice", "https://medium.com/feed/@alice", "https://medium.com/@alice"),
        ("https://medium.com/@alice/", "https://medium.com/feed/@alice", "https://medium.com/@alice"),
        (
            "https://medium.com/boring-data",
            "https://medium.com/feed/boring-data",
            "https://medium.com/boring-data",
        ),
        ("https://alice.medium.com", "https://alice.medium.com/feed", "https://alice.medium.com/"),
        ("https://blog.alice.dev/", "https://blog.alice.dev/feed", "https://blog.alice.dev/"),
    ],
)
def test_source_forms(source: str, feed: str, profile: str) -> None:
    assert feed_and_profile(source) == (feed, profile)
    assert [f.url for f in MediumExtractor().start(source, ExtractOptions())] == [feed]


def _page(url: str, body: str, content_type: str, step: str = "article") -> Page:
    return Page(
        url=url,
        status=200,
        content_type=content_type,
        headers={},
        body=body.encode(),
        text=body,
        step=step,
        data={},
        source_url="https://medium.com/@alice",
        options=ExtractOptions(),
    )


def _served(site: MediumSite, path: str) -> str:
    response = site.respond(Request("GET", path, {}, {}, b"", base_url="https://medium.com"))
    assert response is not None and isinstance(response.body, str)
    return response.body


def _story(article: Article, html: str | None = None) -> ExtractedDocument:
    """The story page of ``article`` as the replica serves it (or ``html``), parsed."""
    path = f"/@alice/{article.slug}-{story_id(article.slug)}"
    html = html if html is not None else _served(MediumSite(load_demo_content()), path)
    [doc] = MediumExtractor().parse(_page(f"https://medium.com{path}?source=x", html, "text/html"))
    assert isinstance(doc, ExtractedDocument)
    return doc


def _nine_thirty(day: str) -> datetime:
    return datetime.fromisoformat(day).replace(hour=9, minute=30, tzinfo=UTC)


def test_story_page_date_from_social_media_posting_json_ld() -> None:
    # Issue 14 #2: Medium's story JSON-LD is SocialMediaPosting, not an Article type.
    article = load_demo_content().medium[0]
    html = _served(MediumSite(load_demo_content()), f"/@alice/{article.slug}-{story_id(article.slug)}")
    assert '"@type": "SocialMediaPosting"' in html
    doc = _story(article, html)
    assert doc.published_at == _nine_thirty(article.published)
    assert doc.author == "Alice Moreau" and doc.title == article.title


def test_story_page_date_falls_back_to_article_published_time() -> None:
    # Issue 14 #2: without usable JSON-LD, the Open Graph time the page also states is the date.
    article = load_demo_content().medium[0]
    html = _served(MediumSite(load_demo_content()), f"/@alice/{article.slug}-{story_id(article.slug)}")
    without_ld = re.sub(r'<script type="application/ld\+json">.*?</script>', "", html, flags=re.DOTALL)
    assert "ld+json" not in without_ld and 'property="article:published_time"' in without_ld
    assert _story(article, without_ld).published_at == _nine_thirty(article.published)


def test_story_page_body_does_not_repeat_the_title_and_subtitle() -> None:
    # Issue 14 #3: on the real page the title and subtitle carry the body's paragraph marker.
    article = load_demo_content().medium[1]
    html = _served(MediumSite(load_demo_content()), f"/@alice/{article.slug}-{story_id(article.slug)}")
    assert 'data-testid="storyTitle" class="pw-post-title" data-selectable-paragraph=""' in html
    doc = _story(article, html)
    assert doc.content == expected_markdown(article.body)
    assert article.title not in doc.content and article.subtitle not in doc.content
    assert doc.metadata["subtitle"] == article.subtitle


def test_publication_footer_is_dropped_from_feed_items() -> None:
    # Issue 14 #6: items of stories in a publication end with Medium's "originally published" line.
    content = load_demo_content()
    feed = _served(MediumSite(content), "/feed/@alice")
    in_publication = [a for a in by_date(content)[:FEED_LIMIT] if a.publication]
    assert in_publication and feed.count("was originally published in") == len(in_publication)
    outputs = MediumExtractor().parse(
        _page("https://medium.com/feed/@alice", feed, "application/rss+xml", "feed")
    )
    docs = {d.title: d for d in outputs if isinstance(d, ExtractedDocument)}
    assert len(docs) == FEED_LIMIT
    assert all("originally published" not in d.content for d in docs.values())
    for article in in_publication:
        assert docs[article.title].content == expected_markdown(article.body), article.slug


def test_article_page_parse_and_bad_pages() -> None:
    content = load_demo_content()
    article = content.medium[0]
    path = f"/@alice/{article.slug}-{story_id(article.slug)}"
    doc = _story(article)
    assert doc.canonical_url == f"https://medium.com{path}"
    assert doc.metadata["subtitle"] == article.subtitle
    assert doc.content == expected_markdown(article.body)

    with pytest.raises(UnsupportedContent):
        list(MediumExtractor().parse(_page("https://medium.com/x.pdf", "%PDF-1.4", "application/pdf")))
    with pytest.raises(EmptyExtraction):
        empty = _page("https://medium.com/@alice/x-0123456789ab", "<html></html>", "text/html")
        list(MediumExtractor().parse(empty))

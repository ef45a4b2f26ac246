"""The sample profile end to end through the real spider, Chromium and Postgres, then re-crawls."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from support.cdc import watch_raw_documents
from support.twin_cli import TwinRun, sample_profile
from twin.adapters.postgres import PostgresDocumentStore
from twin.demo.content import DemoContent
from twin.demo.server import SiteServer
from twin.demo.sites.substack import PAID_POST, SubstackSite
from twin.domain.documents import Category, Platform

Crawl = Callable[[], TwinRun]


def crawler(
    sites: dict[Platform, SiteServer],
    run_twin: Callable[..., TwinRun],
    write_profile: Callable[[dict[str, Any]], Path],
) -> Crawl:
    path = write_profile(sample_profile(sites))

    def crawl() -> TwinRun:
        result = run_twin("crawl", "--profile", str(path), "--json")
        assert result.returncode == 0, result.stderr[-3000:]
        return result

    return crawl


def by_platform(result: TwinRun) -> dict[str, dict[str, Any]]:
    return {s["platform"]: s for s in result.summary()["sources"]}


def test_sample_profile_lands_normalised_and_categorised(
    sites: dict[Platform, SiteServer],
    content: DemoContent,
    run_twin: Callable[..., TwinRun],
    write_profile: Callable[[dict[str, Any]], Path],
    store: PostgresDocumentStore,
) -> None:
    first = by_platform(crawler(sites, run_twin, write_profile)())
    for platform, source in first.items():
        assert source["status"] == "ok", (platform, source["errors"])
        assert source["errors"] == []
    docs = store.documents("alice")
    counts = Counter(d.platform for d in docs)
    assert counts[Platform.MEDIUM] == len(content.medium) == first["medium"]["new"]
    assert counts[Platform.LINKEDIN] == len(content.linkedin) == first["linkedin"]["new"]
    assert counts[Platform.WEB] == len(content.web) == first["web"]["new"]
    assert counts[Platform.SUBSTACK] == first["substack"]["new"] > 0
    assert counts[Platform.GITHUB] == first["github"]["new"] > 0
    categories = {d.platform: d.category for d in docs}
    assert categories == {
        Platform.MEDIUM: Category.ARTICLE,
        Platform.SUBSTACK: Category.ARTICLE,
        Platform.WEB: Category.ARTICLE,
        Platform.LINKEDIN: Category.POST,
        Platform.GITHUB: Category.CODE,
    }
    # Medium's feed holds only the 10 latest: the rest came from the JavaScript-rendered profile
    # page, so their presence proves the real-Chromium path through scrapy-playwright.
    assert len(content.medium) > 10
    titles = {d.title for d in docs if d.platform is Platform.MEDIUM}
    assert titles == {a.title for a in content.medium}
    # Those browser-read story pages (SocialMediaPosting JSON-LD, title and subtitle marked like
    # body paragraphs) keep their date and do not repeat their headline; feed items of stories in
    # a publication lose Medium's "originally published in" line.
    for d in docs:
        if d.platform is Platform.MEDIUM:
            assert d.published_at is not None and not d.content.startswith(f"## {d.title}"), d.title
            assert "originally published in" not in d.content, d.title
    # The sample publication's paid post is counted, never stored, and nothing else is paid.
    assert {p: s["paid_skipped"] for p, s in first.items()} == {
        "medium": 0,
        "substack": 1,
        "linkedin": 0,
        "github": 0,
        "web": 0,
    }
    assert PAID_POST.title not in {d.title for d in docs}
    # Code keeps its exact bytes (whitespace, tabs, trailing newlines).
    code = {d.title: d.content for d in docs if d.platform is Platform.GITHUB}
    originals = {f"{r.name}/{f.path}": f.content for r in content.github if not r.fork for f in r.files}
    assert code  # which files are skipped (vendored, binary, generated, oversize, forks) is unit-tested
    for title, text in code.items():
        assert text == originals[title], title
    # Provenance on every row.
    for d in docs:
        assert d.source_url in {s.removesuffix("") for s in (x["source"] for x in first.values())}
        assert len(d.content_hash) == 64 and d.content.strip()
        assert ("<p" not in d.content and "<div" not in d.content) or d.platform is Platform.GITHUB


def test_recrawl_writes_only_what_changed(
    sites: dict[Platform, SiteServer],
    content: DemoContent,
    run_twin: Callable[..., TwinRun],
    write_profile: Callable[[dict[str, Any]], Path],
    store: PostgresDocumentStore,
    pg_dsn: str,
) -> None:
    crawl = crawler(sites, run_twin, write_profile)
    crawl()
    stored = len(store.documents("alice"))
    with watch_raw_documents(pg_dsn) as cdc:
        # 1. Unchanged sites: zero writes, as change capture sees them.
        again = by_platform(crawl())
        assert all(s["new"] == s["updated"] == s["deleted"] == 0 for s in again.values()), again
        assert sum(s["unchanged"] for s in again.values()) == stored
        assert cdc.changes() == {}

        # 2. One edited article: exactly one update.
        article = content.medium[3]
        article.body += "\n\nUpdate: I was wrong about one thing, and the comments were right."
        edited = by_platform(crawl())
        assert edited["medium"]["updated"] == 1
        assert sum(s["updated"] + s["new"] + s["deleted"] for s in edited.values()) == 1
        assert cdc.changes() == {"update": 1}
        (doc,) = [d for d in store.documents("alice") if d.title == article.title]
        assert "the comments were right" in doc.content

        # 3. One removed article: exactly one delete.
        removed = content.medium.pop(5)
        after = by_platform(crawl())
        assert after["medium"]["deleted"] == 1
        assert sum(s["updated"] + s["new"] + s["deleted"] for s in after.values()) == 1
        assert cdc.changes() == {"update": 1, "delete": 1}
    titles = {d.title for d in store.documents("alice")}
    assert removed.title not in titles and len(titles) > 0


def test_item_caps_truncate_without_deleting(
    sites: dict[Platform, SiteServer],
    run_twin: Callable[..., TwinRun],
    write_profile: Callable[[dict[str, Any]], Path],
    store: PostgresDocumentStore,
) -> None:
    crawler(sites, run_twin, write_profile)()
    stored = len(store.documents("alice"))
    path = write_profile(sample_profile(sites))
    capped = run_twin("crawl", "--profile", str(path), "--json", env={"TWIN_CRAWLER__MAX_ITEMS_PER_RUN": "5"})
    assert capped.returncode == 0, capped.stderr[-2000:]
    sources = capped.summary()["sources"]
    assert sum(s["unchanged"] + s["new"] for s in sources) == 5
    assert any(s["truncated"] and s["status"] == "partial" for s in sources)
    assert all(s["deleted"] == 0 for s in sources)  # what a cap kept us from seeing is not deleted
    assert len(store.documents("alice")) == stored


def test_a_fallback_surface_stores_what_it_sees_and_deletes_nothing(
    sites: dict[Platform, SiteServer],
    content: DemoContent,
    run_twin: Callable[..., TwinRun],
    write_profile: Callable[[dict[str, Any]], Path],
    store: PostgresDocumentStore,
) -> None:
    crawl = crawler(sites, run_twin, write_profile)
    crawl()
    site = sites[Platform.SUBSTACK].site
    assert isinstance(site, SubstackSite)
    # The archive API breaks and a post leaves the site: the crawl falls back to the feed and
    # still updates what it sees, but a view that may be partial must not delete anything.
    site.archive_api_error = 503
    gone = content.substack.pop(0)
    content.substack[0].body += "\n\nA late correction, with thanks to a reader."
    substack = by_platform(crawl())["substack"]
    assert substack["status"] == "partial"
    assert [e["error"] for e in substack["errors"]] == ["Incomplete"]
    assert "HTTP 503" in substack["errors"][0]["message"]
    assert substack["updated"] == 1 and substack["deleted"] == 0
    # The feed cuts the paid post at the paywall with only a "Read more" link: counted, not stored.
    assert substack["paid_skipped"] == 1
    assert PAID_POST.title not in {d.title for d in store.documents("alice")}
    assert gone.title in {d.title for d in store.documents("alice")}

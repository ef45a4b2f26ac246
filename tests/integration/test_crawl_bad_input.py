"""Bad input: each gives a clear per-source error, other sources are still crawled, nothing is lost."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from support.cdc import watch_raw_documents
from support.hostile import PROBED_STORY_PATH, HostileSite, RecordingSite
from support.twin_cli import TwinRun, sample_profile
from twin.adapters.postgres import PostgresDocumentStore
from twin.demo.server import SiteServer
from twin.domain.documents import Platform

FAST = {
    "TWIN_CRAWLER__DOWNLOAD_TIMEOUT_S": "1.5",
    "TWIN_CRAWLER__RETRY_TIMES": "1",
    "TWIN_CRAWLER__MAX_PAGE_BYTES": "1000000",
    "TWIN_CRAWLER__RETRY_BACKOFF_S": "0.1",
}


@pytest.fixture
def hostile() -> Iterator[SiteServer]:
    site = HostileSite()
    with SiteServer(site) as server:
        port = server.base_url.rsplit(":", 1)[1]
        site.internal_target = f"http://127.0.0.2:{port}/ok"  # loopback, but not on the allow-list
        yield server


@pytest.fixture
def internal() -> Iterator[SiteServer]:
    """A service on 127.0.0.2: loopback, yet outside the tests' allow-list (127.0.0.1/32), so the
    guard must refuse it; it answers everything, so any request that got through is recorded."""
    with SiteServer(RecordingSite(), host="127.0.0.2") as server:
        yield server


def profile(*urls: str, platform: str = "web") -> dict[str, Any]:
    return {
        "apiVersion": "llmtwin.dev/v1alpha1",
        "kind": "TwinProfile",
        "metadata": {"name": "alice"},
        "spec": {
            "owner": {"displayName": "Alice"},
            "sources": [{"url": u, "platform": platform} for u in urls],
        },
    }


def test_each_bad_source_fails_alone_with_a_clear_error(
    hostile: SiteServer,
    run_twin: Callable[..., TwinRun],
    write_profile: Callable[[dict[str, Any]], Path],
    store: PostgresDocumentStore,
) -> None:
    base = hostile.base_url
    port = base.rsplit(":", 1)[1]
    expected = {
        "htp:/broken": ("InvalidSourceURL", "unsupported scheme 'htp'"),
        "ftp://127.0.0.1/file.txt": ("InvalidSourceURL", "unsupported scheme 'ftp'"),
        "http://exa mple.com/": ("InvalidSourceURL", "whitespace"),
        f"{base}/pdf": ("UnsupportedContent", "application/pdf"),
        f"{base}/bad-bytes": ("UndecodableContent", "does not decode"),
        f"{base}/huge": ("DownloadCancelledError", "larger than download max size"),
        f"{base}/loop/a": ("IgnoreRequest", "max redirections"),
        f"{base}/missing": ("HttpError", "HTTP 404"),
        f"{base}/error": ("HttpError", "HTTP 500"),
        f"{base}/slow": ("DownloadTimeoutError", "took longer than"),
        f"{base}/internal-redirect": ("BlockedTarget", "127.0.0.2 is a loopback address"),
        f"http://127.0.0.3:{port}/ok": ("BlockedTarget", "127.0.0.3 is a loopback address"),
        f"{base}/empty": ("EmptyExtraction", ""),
        f"{base}/private/page": ("IgnoreRequest", "robots.txt"),
    }
    good = f"{base}/ok"
    result = run_twin("crawl", "--profile", str(write_profile(profile(good, *expected))), "--json", env=FAST)
    assert result.returncode == 0, result.stderr  # some sources failed; the crawl itself succeeded
    by_source = result.by_source()
    assert by_source[good]["status"] == "ok"
    assert by_source[good]["new"] == 1
    for url, (error, fragment) in expected.items():
        source = by_source[url]
        assert source["status"] == "failed", (url, source)
        assert [e["error"] for e in source["errors"]] == [error], (url, source["errors"])
        assert fragment in source["errors"][0]["message"], (url, source["errors"])
    assert [d.canonical_url for d in store.documents("alice")] == [good]
    # The guard refused 127.0.0.2/127.0.0.3 before connecting: the server saw no request for them.
    assert not [r for r in hostile.requests if "127.0.0.2" in r.headers.get("host", "")]


def test_the_browser_never_requests_an_internal_address_a_page_script_asks_for(
    hostile: SiteServer,
    internal: SiteServer,
    run_twin: Callable[..., TwinRun],
    write_profile: Callable[[dict[str, Any]], Path],
    store: PostgresDocumentStore,
) -> None:
    site = hostile.site
    assert isinstance(site, HostileSite)
    site.browser_probe = f"{internal.base_url}/probe"
    source = f"{hostile.base_url}/@alice"
    path = write_profile(profile(source, platform="medium"))

    # Rendered in Chromium (scrapy-playwright): the page's script asks for 127.0.0.2 twice (fetch,
    # <script>). The guard aborts both, the script runs on, and the story it then lists is stored.
    guarded = run_twin("crawl", "--profile", str(path), "--json")
    assert guarded.returncode == 0, guarded.stderr[-3000:]
    report = guarded.by_source()[source]
    assert (report["status"], report["new"], report["errors"]) == ("ok", 1, []), report
    (doc,) = store.documents("alice")
    assert doc.canonical_url == f"{hostile.base_url}{PROBED_STORY_PATH}"
    assert [r.path for r in hostile.requests if r.path == "/@alice"] == ["/@alice"]
    assert internal.requests == []

    # The control: allow 127.0.0.2 and the same page does reach it, so the empty list above is the
    # guard's doing (not a script that never ran or a server nobody could reach).
    both = '["127.0.0.1/32", "127.0.0.2/32"]'
    allowed = run_twin(
        "crawl", "--profile", str(path), "--json", env={"TWIN_CRAWLER__ALLOWED_NETWORKS": both}
    )
    assert allowed.by_source()[source]["status"] == "ok", allowed.stdout[-2000:]
    assert {r.path for r in internal.requests} == {"/probe", "/probe.js"}


def test_a_broken_site_never_overwrites_or_deletes_what_is_stored(
    hostile: SiteServer,
    run_twin: Callable[..., TwinRun],
    write_profile: Callable[[dict[str, Any]], Path],
    store: PostgresDocumentStore,
    pg_dsn: str,
) -> None:
    path = write_profile(profile(f"{hostile.base_url}/ok"))
    assert run_twin("crawl", "--profile", str(path), "--json", env=FAST).by_source()
    before = store.documents("alice")
    assert len(before) == 1
    site = hostile.site
    assert isinstance(site, HostileSite)
    with watch_raw_documents(pg_dsn) as cdc:
        site.broken = True
        broken = run_twin("crawl", "--profile", str(path), "--json", env=FAST)
        assert broken.returncode == 1  # every source failed
        assert next(iter(broken.by_source().values()))["errors"][0]["message"].endswith("HTTP 500")
        site.broken, site.garbage = False, True
        garbage = run_twin("crawl", "--profile", str(path), "--json", env=FAST)
        assert next(iter(garbage.by_source().values()))["errors"][0]["error"] == "UndecodableContent"
        assert cdc.changes() == {}
    assert store.documents("alice") == before


def test_without_an_allow_list_nothing_internal_is_fetched(
    sites: dict[Platform, SiteServer],
    run_twin: Callable[..., TwinRun],
    write_profile: Callable[[dict[str, Any]], Path],
    store: PostgresDocumentStore,
) -> None:
    path = write_profile(sample_profile(sites))
    result = run_twin("crawl", "--profile", str(path), "--json", env={"TWIN_CRAWLER__ALLOWED_NETWORKS": "[]"})
    assert result.returncode == 1
    for source in result.by_source().values():
        assert source["status"] == "failed"
        assert {e["error"] for e in source["errors"]} == {"BlockedTarget"}, source
    assert store.documents("alice") == []
    assert all(server.requests == [] for server in sites.values())


def test_invalid_profiles_exit_2_with_the_reason(
    run_twin: Callable[..., TwinRun], write_profile: Callable[[dict[str, Any]], Path], tmp_path: Path
) -> None:
    bad = profile("https://example.com/")
    bad["spec"]["sources"][0]["password"] = "hunter2"
    result = run_twin("crawl", "--profile", str(write_profile(bad)))
    assert result.returncode == 2
    assert "spec.sources.0.password" in result.stderr and "hunter2" not in result.stderr
    missing = run_twin("crawl", "--profile", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 2 and "cannot read profile" in missing.stderr
    (tmp_path / "broken.yaml").write_text("spec: [unclosed")
    broken = run_twin("crawl", "--profile", str(tmp_path / "broken.yaml"))
    assert broken.returncode == 2 and "not valid YAML" in broken.stderr


def test_retries_back_off_and_honour_retry_after(
    hostile: SiteServer,
    run_twin: Callable[..., TwinRun],
    write_profile: Callable[[dict[str, Any]], Path],
    store: PostgresDocumentStore,
) -> None:
    flaky = f"{hostile.base_url}/flaky"
    result = run_twin("crawl", "--profile", str(write_profile(profile(flaky))), "--json", env=FAST)
    assert result.by_source()[flaky]["status"] == "ok"
    first, second = [r for r in hostile.requests if r.path == "/flaky"]
    assert second.received_at - first.received_at >= 1.0  # the server asked for a second's pause
    assert len(store.documents("alice")) == 1

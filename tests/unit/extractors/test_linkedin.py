"""The LinkedIn extractor against the LinkedIn fixture: real HTTP, real cookies, real Chromium.

A full crawl renders the activity page in Chromium (a second or two), so the tests that need one
share a module-scoped crawl where they only read its result.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

import pytest
from pydantic import SecretStr

from support.offline import OfflineCrawl, crawl_offline
from twin.demo.content import DemoContent, Post, load_demo_content
from twin.demo.server import SiteServer
from twin.demo.sites.linkedin import LinkedInSite
from twin.domain.documents import Category
from twin.domain.errors import CredentialsRequired, LoginFailed
from twin.extractors.base import ExtractOptions
from twin.extractors.linkedin import LinkedInExtractor, activity_time, post_title

EMAIL = "alice@example.com"
PASSWORD = "correct horse"


def options(password: str = PASSWORD) -> ExtractOptions:
    return ExtractOptions(linkedin_email=EMAIL, linkedin_password=SecretStr(password))


@dataclass
class Fixture:
    content: DemoContent
    site: LinkedInSite
    server: SiteServer

    @property
    def source(self) -> str:
        return f"{self.server.base_url}/in/{self.content.handle}"

    def crawl(self, opts: ExtractOptions | None = None) -> OfflineCrawl:
        return crawl_offline(LinkedInExtractor(), self.source, opts or options())


@pytest.fixture
def linkedin() -> Iterator[Fixture]:
    content = load_demo_content()
    site = LinkedInSite(content, email=EMAIL, password=PASSWORD)
    with SiteServer(site) as server:
        yield Fixture(content, site, server)


@pytest.fixture(scope="module")
def full_crawl() -> Iterator[tuple[Fixture, OfflineCrawl]]:
    content = load_demo_content()
    site = LinkedInSite(content, email=EMAIL, password=PASSWORD)
    with SiteServer(site) as server:
        fixture = Fixture(content, site, server)
        yield fixture, fixture.crawl()


def test_every_post_is_extracted_once_with_its_exact_text(full_crawl: tuple[Fixture, OfflineCrawl]) -> None:
    fixture, result = full_crawl
    assert result.errors == []
    posts = {p.id: p for p in fixture.content.linkedin}
    assert len(posts) == 10
    docs = {d.metadata["activity_id"]: d for d in result.documents}
    assert len(result.documents) == len(docs) == len(posts)
    for post_id, post in posts.items():
        doc = docs[post_id]
        assert doc.category is Category.POST
        # Line breaks (<br>), blank lines and hashtags (links in the DOM) come back as written.
        assert doc.content == post.text.strip()
        assert doc.canonical_url == f"{fixture.server.base_url}/feed/update/urn:li:activity:{post_id}"
        assert doc.author == fixture.content.owner
        assert doc.title == post_title(post.text)
        assert doc.title and post.text.startswith(doc.title.removesuffix("…"))


def test_published_date_is_decoded_from_the_activity_id(full_crawl: tuple[Fixture, OfflineCrawl]) -> None:
    fixture, result = full_crawl
    published = {p.id: datetime.fromisoformat(p.published) for p in fixture.content.linkedin}
    for doc in result.documents:
        assert doc.published_at == published[doc.metadata["activity_id"]]
        assert doc.published_at is not None and doc.published_at.utcoffset() is not None


def test_the_crawl_logs_in_and_renders_the_activity_page(full_crawl: tuple[Fixture, OfflineCrawl]) -> None:
    fixture, result = full_crawl
    steps = [(f.step, f.method, f.render_js) for f in result.fetched]
    assert steps == [("login", "GET", False), ("landing", "POST", False), ("activity", "GET", True)]
    login = result.fetched[1]
    assert login.form is not None and login.form["loginCsrfParam"].startswith("ajax:")
    assert PASSWORD not in repr(login.data)
    assert fixture.site.login_attempts == 1 and len(fixture.site.sessions) == 1
    # The JSON endpoint behind the shell was fetched by the browser, with the session cookie.
    api_calls = [r for r in fixture.server.requests if r.path.startswith("/voyager/")]
    assert api_calls and all("li_at=" in r.headers.get("cookie", "") for r in api_calls)


def test_missing_credentials_are_reported_before_any_request(linkedin: Fixture) -> None:
    with pytest.raises(CredentialsRequired) as excinfo:
        crawl_offline(LinkedInExtractor(), linkedin.source, ExtractOptions())
    assert "TWIN_LINKEDIN__EMAIL" in str(excinfo.value)
    assert "TWIN_LINKEDIN__PASSWORD" in str(excinfo.value)
    assert linkedin.server.requests == []


def test_wrong_password_is_a_login_failure_with_no_documents(linkedin: Fixture) -> None:
    wrong = "battery staple"
    result = linkedin.crawl(options(password=wrong))
    assert result.documents == []
    assert len(result.errors) == 1
    error = result.errors[0][1]
    assert isinstance(error, LoginFailed)
    assert "Wrong email or password" in str(error)
    assert wrong not in str(error)
    assert linkedin.site.sessions == set()
    # No activity page was even asked for.
    assert [f.step for f in result.fetched] == ["login", "landing"]


def test_a_session_the_site_drops_is_a_login_failure(linkedin: Fixture) -> None:
    # The site forgets every session as soon as it is created: the activity page bounces to the authwall.
    class ForgetfulSet(set[str]):
        def add(self, token: str) -> None:
            return

    linkedin.site.sessions = ForgetfulSet()
    result = linkedin.crawl()
    assert result.documents == []
    assert [type(e) for _, e in result.errors] == [LoginFailed]
    assert "/authwall" in str(result.errors[0][1])


def test_edited_and_new_posts_show_up_on_the_next_crawl(linkedin: Fixture) -> None:
    first, *rest = linkedin.content.linkedin
    first.text = "Edited.\n\n  Indented line, kept.\n#postgres"
    new_id = (int(datetime.fromisoformat("2025-04-01T06:00:00.250+00:00").timestamp() * 1000) << 22) | 12345
    linkedin.content.linkedin = [first, Post(id=str(new_id), text="Fresh & <new>.", published="")]
    result = linkedin.crawl()
    assert result.errors == []
    docs = {d.metadata["activity_id"]: d for d in result.documents}
    assert set(docs) == {first.id, str(new_id)}
    assert docs[first.id].content == "Edited.\n\n  Indented line, kept.\n#postgres"
    assert docs[str(new_id)].content == "Fresh & <new>."
    assert docs[str(new_id)].published_at == activity_time(new_id)
    assert docs[str(new_id)].published_at == datetime.fromisoformat("2025-04-01T06:00:00.250+00:00")
    assert rest  # the others were dropped from the site and are gone from the crawl


def test_titles_are_the_first_sentence_trimmed() -> None:
    assert post_title("\n\nShort one. Second sentence.\nMore") == "Short one."
    long = "word " * 40
    title = post_title(long)
    assert len(title) <= 80 and title.endswith("…")

"""The GitHub extractor against the GitHub Enterprise fixture, over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from pydantic import SecretStr

from support.offline import crawl_offline
from twin.demo.content import DemoContent, RepoFile, load_demo_content
from twin.demo.server import SiteServer
from twin.demo.sites.github import GitHubSite
from twin.domain.documents import Category
from twin.domain.errors import FetchError
from twin.extractors.base import ExtractOptions, Page
from twin.extractors.github import GitHubExtractor, skip_reason

# Small enough that chunkers/testdata/runbook.md is over it and every kept file is under it.
CAP = 2048
KEPT = {
    ("pgsync-lite", "main"): [
        "Makefile",
        "README.md",
        "pgsync_lite/__init__.py",
        "pgsync_lite/apply.py",
        "pgsync_lite/slot.py",
        "pyproject.toml",
        "tests/test_slot.py",
    ],
    ("chunkers", "trunk"): ["README.md", "chunk.go", "chunk_test.go", "go.mod"],
    ("dotfiles", "master"): ["bin/oncall-handoff", "home/.gitconfig", "home/.tmux.conf", "install.sh"],
}
SKIPPED = {
    "pgsync-lite": ["docs/logo.png", "pgsync_lite/proto/change_pb2.py", "vendor/wal2json/LICENSE"],
    "chunkers": [
        "go.sum",
        "web/playground.min.js",
        "web/node_modules/left-pad/index.js",
        "testdata/runbook.md",
    ],
    "dotfiles": ["bin/jq"],  # no extension: skipped for the NULs in its bytes
}


def opts(token: str | None = None) -> ExtractOptions:
    return ExtractOptions(max_code_file_bytes=CAP, github_token=SecretStr(token) if token else None)


@dataclass
class Fixture:
    content: DemoContent
    site: GitHubSite
    server: SiteServer

    def url(self, path: str = "") -> str:
        return f"{self.server.base_url}/{self.content.handle}{path}"

    def file(self, repo: str, path: str) -> RepoFile:
        return next(f for r in self.content.github if r.name == repo for f in r.files if f.path == path)


@pytest.fixture
def github() -> Iterator[Fixture]:
    content = load_demo_content()
    site = GitHubSite(content)
    with SiteServer(site) as server:
        yield Fixture(content, site, server)


def test_the_fixture_matches_what_the_tests_assume(github: Fixture) -> None:
    # Guards the expectations below against edits to github.yaml.
    oversize = github.file("chunkers", "testdata/runbook.md")
    assert len(oversize.content.encode()) > CAP
    for (repo, _), paths in KEPT.items():
        assert all(len(github.file(repo, p).content.encode()) <= CAP for p in paths)
    assert [r.name for r in github.content.github if r.fork] == ["pgvector"]


def test_user_source_yields_exactly_the_owners_code(github: Fixture) -> None:
    github.site.max_per_page = 3  # four repositories: two pages of the repository list
    result = crawl_offline(GitHubExtractor(), github.url(), opts())
    assert result.errors == []
    got = sorted((d.metadata["repository"], d.metadata["path"]) for d in result.documents)
    expected = sorted((f"alice/{repo}", path) for (repo, _), paths in KEPT.items() for path in paths)
    assert got == expected
    for repo, paths in SKIPPED.items():
        assert not any(d.metadata["path"] in paths and repo in d.title for d in result.documents)
    assert not any("pgvector" in d.canonical_url for d in result.documents)
    # Skips by name and size happen before fetching: only bin/jq is fetched, for its bytes to be seen.
    fetched_raw = [f.data["path"] for f in result.fetched if f.step == "raw"]
    assert "bin/jq" in fetched_raw
    assert not {"docs/logo.png", "go.sum", "testdata/runbook.md", "web/playground.min.js"} & set(fetched_raw)
    # The listing really was two pages, followed through the Link header.
    listing = [f.url for f in result.fetched if f.step == "repos"]
    assert len(listing) == 2 and "page=2" in listing[1]


def test_an_odd_repository_object_costs_only_itself_and_is_reported(github: Fixture) -> None:
    # Issue 14 #4: a listed repository without full_name/default_branch used to raise out of the
    # listing loop, losing every repository on its page. It sorts first on the only page here.
    github.site.odd_repo = True
    result = crawl_offline(GitHubExtractor(), github.url(), opts())
    assert result.errors == []
    got = sorted((d.metadata["repository"], d.metadata["path"]) for d in result.documents)
    assert got == sorted((f"alice/{repo}", path) for (repo, _), paths in KEPT.items() for path in paths)
    # Reported as Incomplete: its files are unseen, not deleted, so the source deletes nothing.
    (reason,) = result.incomplete
    assert "'being-imported'" in reason and "default_branch" in reason


def test_documents_keep_code_byte_for_byte(github: Fixture) -> None:
    result = crawl_offline(GitHubExtractor(), github.url(), opts())
    docs = {(d.metadata["repository"], d.metadata["path"]): d for d in result.documents}
    for (repo, ref), paths in KEPT.items():
        for path in paths:
            doc = docs[(f"alice/{repo}", path)]
            assert doc.content == github.file(repo, path).content
            assert doc.category is Category.CODE
            assert doc.title == f"{repo}/{path}"
            assert doc.canonical_url == f"{github.server.base_url}/alice/{repo}/blob/{ref}/{path}"
            assert doc.metadata["ref"] == ref
            assert doc.published_at is None
    go = docs[("alice/chunkers", "chunk.go")]
    assert "\n\tvar (\n\t\tchunks []Chunk\n" in go.content and go.metadata["language"] == "Go"
    assert "test:\n\tpython -m pytest -q\n" in docs[("alice/pgsync-lite", "Makefile")].content
    assert docs[("alice/pgsync-lite", "Makefile")].metadata["language"] == "Makefile"
    assert docs[("alice/pgsync-lite", "tests/test_slot.py")].content.endswith("is None\n\n\n")
    assert docs[("alice/chunkers", "chunk_test.go")].content.endswith("}\n\n")
    assert docs[("alice/pgsync-lite", "pgsync_lite/apply.py")].metadata["language"] == "Python"


def test_edits_crlf_and_unicode_survive_a_recrawl(github: Fixture) -> None:
    github.file("dotfiles", "install.sh").content = "#!/bin/sh\r\necho 'café ☕'\r\n\r\n"
    github.content.github[0].files.append(RepoFile(path="notes/empty.txt", content=""))
    result = crawl_offline(GitHubExtractor(), github.url(), opts())
    doc = next(d for d in result.documents if d.metadata["path"] == "install.sh")
    assert doc.content == "#!/bin/sh\r\necho 'café ☕'\r\n\r\n"
    assert not any(
        d.metadata["path"] == "notes/empty.txt" for d in result.documents
    )  # empty: nothing to learn


def test_repository_source_crawls_that_repository_only(github: Fixture) -> None:
    result = crawl_offline(GitHubExtractor(), github.url("/chunkers"), opts())
    assert result.errors == []
    assert sorted(d.metadata["path"] for d in result.documents) == KEPT[("chunkers", "trunk")]
    assert [f.step for f in result.fetched][:2] == ["repo", "tree"]


def test_a_token_is_sent_when_configured(github: Fixture) -> None:
    github.site.token = "ghp_fixture"
    denied = crawl_offline(GitHubExtractor(), github.url(), opts())
    assert denied.documents == []
    assert denied.errors and all("401" in str(e) for _, e in denied.errors)

    allowed = crawl_offline(GitHubExtractor(), github.url(), opts(token="ghp_fixture"))
    assert allowed.errors == []
    assert len(allowed.documents) == sum(len(p) for p in KEPT.values())
    api = [r for r in github.server.requests if r.path.startswith("/api/v3/")]
    assert api[-1].headers["authorization"] == "Bearer ghp_fixture"
    assert api[-1].headers["accept"] == "application/vnd.github+json"


def test_rate_limit_names_the_token_setting(github: Fixture) -> None:
    github.site.rate_limited = True
    result = crawl_offline(GitHubExtractor(), github.url(), opts())
    assert result.documents == [] and len(result.errors) == 1
    # The harness (like the spider) stops at the 403 before parse; parse must still explain it.
    page = Page(
        url=f"{github.server.base_url}/api/v3/users/alice/repos",
        status=403,
        content_type="application/json",
        headers={"x-ratelimit-remaining": "0", "x-ratelimit-limit": "60"},
        body=b'{"message":"API rate limit exceeded"}',
        text='{"message":"API rate limit exceeded"}',
        step="repos",
        data={},
        source_url=github.url(),
        options=opts(),
    )
    with pytest.raises(FetchError, match=r"rate limit.*TWIN_GITHUB__TOKEN"):
        list(GitHubExtractor().parse(page))


def test_github_com_sources_use_the_public_api_and_raw_hosts() -> None:
    (first,) = GitHubExtractor().start("https://github.com/alice", opts(token="t"))
    assert first.url.startswith("https://api.github.com/users/alice/repos?")
    assert first.headers["Authorization"] == "Bearer t"
    tree = Page(
        url="https://api.github.com/repos/alice/chunkers/git/trees/trunk?recursive=1",
        status=200,
        content_type="application/json",
        headers={},
        body=b'{"sha":"x","truncated":false,"tree":'
        b'[{"path":"a b.go","type":"blob","mode":"100644","size":3}]}',
        text="",
        step="tree",
        data={"owner": "alice", "repo": "chunkers", "ref": "trunk"},
        source_url="https://github.com/alice",
        options=opts(),
    )
    (raw,) = GitHubExtractor().parse(tree)
    assert getattr(raw, "url", None) == "https://raw.githubusercontent.com/alice/chunkers/trunk/a%20b.go"


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("src/node_modules/x/index.js", "vendored or build folder"),
        ("assets/font.woff2", "binary extension"),
        ("package-lock.json", "generated file"),
        ("api/v1/service.pb.go", "generated file"),
        ("src/app.py", None),
        ("Makefile", None),
    ],
)
def test_skip_rules(path: str, reason: str | None) -> None:
    assert skip_reason(path, 10, opts()) == reason

"""GitHub code: the owner's repositories through the REST API, each kept file as one document.

A user source lists the user's own repositories (following ``Link: rel="next"``), leaving out
forks and archived ones; a repository source is crawled as named. For each repository the
recursive git tree says which files exist and how big they are, so vendored folders, binaries,
generated or lock files and oversized files are dropped before a single byte of them is fetched.
The raw step drops what only its bytes give away (NULs, invalid UTF-8), quietly: a binary in a
repository is not an error.

github.com uses api.github.com and raw.githubusercontent.com; any other host is taken for GitHub
Enterprise Server, which serves both from the same host (``/api/v3`` and ``/<o>/<r>/raw/...``).
File content is kept byte-exact (decoded UTF-8, no stripping, no newline changes): indentation
and trailing newlines are part of code.
"""

from __future__ import annotations

import json
import posixpath
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from twin.domain.documents import Category, ExtractedDocument, Platform
from twin.domain.errors import FetchError, InvalidSourceURL
from twin.extractors.base import JSON_TYPES, ExtractOptions, Follow, Incomplete, Output, Page

STEP_REPOS = "repos"
STEP_REPO = "repo"
STEP_TREE = "tree"
STEP_RAW = "raw"

_PER_PAGE = 100
_SNIFF_BYTES = 8192
_LINK_NEXT_RE = re.compile(r'<([^>]+)>\s*;\s*rel="?next"?')


def _words(table: str) -> frozenset[str]:
    """Whitespace-separated names as a set; a table reads better than one entry per line."""
    return frozenset(table.split())


# Files whose bytes are not text anyone wrote by hand.
BINARY_EXTENSIONS = _words(
    """
        .png .jpg .jpeg .gif .bmp .ico .webp .tif .tiff .psd .svgz .zip .tar .gz .tgz .bz2 .xz .7z
        .rar .zst .whl .egg .woff .woff2 .ttf .otf .eot .mp3 .mp4 .wav .ogg .flac .avi .mov .mkv
        .webm .pdf .doc .docx .xls .xlsx .ppt .pptx .so .dll .dylib .exe .bin .o .a .lib .class .jar
        .war .pyc .pyo .pyd .wasm .db .sqlite .sqlite3 .parquet .pkl .npy .npz .pt .pth .onnx
        .safetensors .h5 .ckpt
    """
)
# Generated or machine-maintained files: real text, but not the owner's writing.
GENERATED_NAMES = _words(
    """
        package-lock.json yarn.lock pnpm-lock.yaml npm-shrinkwrap.json poetry.lock Pipfile.lock
        uv.lock pdm.lock Cargo.lock go.sum Gemfile.lock composer.lock mix.lock flake.lock
        packages.lock.json Podfile.lock
    """
)
GENERATED_SUFFIXES = (
    ".min.js",
    ".min.css",
    ".map",
    "_pb2.py",
    "_pb2.pyi",
    "_pb2_grpc.py",
    ".pb.go",
    ".pb.cc",
    ".pb.h",
    ".generated.cs",
    ".g.dart",
    ".freezed.dart",
)


def _pairs(table: str) -> dict[str, str]:
    """``ext=Language`` lines as a dict; a table reads better than one entry per line."""
    return {key: value for key, _, value in (item.partition("=") for item in table.split())}


# By extension; Language names with spaces use underscores here.
LANGUAGES: Mapping[str, str] = {
    ext: lang.replace("_", " ")
    for ext, lang in _pairs(
        """
        .py=Python .pyi=Python .go=Go .rs=Rust .js=JavaScript .mjs=JavaScript .cjs=JavaScript
        .jsx=JavaScript .ts=TypeScript .tsx=TypeScript .java=Java .kt=Kotlin .scala=Scala .rb=Ruby
        .php=PHP .c=C .h=C .cc=C++ .cpp=C++ .hpp=C++ .cs=C# .swift=Swift .sh=Shell .bash=Shell
        .zsh=Shell .sql=SQL .md=Markdown .rst=reStructuredText .txt=Text .toml=TOML .yaml=YAML
        .yml=YAML .json=JSON .html=HTML .css=CSS .scss=SCSS .lua=Lua .r=R .jl=Julia
        .ipynb=Jupyter_Notebook .tf=HCL .proto=Protocol_Buffers .vim=Vim_Script .mod=Go_Module
        .ini=INI .cfg=INI .conf=Config
        """
    ).items()
}
# By whole file name, checked first (Makefile has no extension; go.mod is not "Modula").
_LANGUAGE_NAMES: Mapping[str, str] = {
    name: lang.replace("_", " ")
    for name, lang in _pairs(
        """
        Makefile=Makefile GNUmakefile=Makefile Dockerfile=Dockerfile Containerfile=Dockerfile
        Justfile=Just CMakeLists.txt=CMake go.mod=Go_Module .bashrc=Shell .zshrc=Shell
        .profile=Shell .gitconfig=Git_Config .tmux.conf=tmux
        """
    ).items()
}


def language_of(path: str) -> str | None:
    """The language of a file, by name first (Makefile) then extension; None when unknown."""
    name = posixpath.basename(path)
    if name in _LANGUAGE_NAMES:
        return _LANGUAGE_NAMES[name]
    return LANGUAGES.get(posixpath.splitext(name)[1].lower())


def skip_reason(path: str, size: int | None, options: ExtractOptions) -> str | None:
    """Why the file at ``path`` is not the owner's code (vendored, binary, generated, too big), or None."""
    parts = path.split("/")
    if any(part in options.skip_code_dirs for part in parts[:-1]):
        return "vendored or build folder"
    name = parts[-1]
    lower = name.lower()
    if posixpath.splitext(lower)[1] in BINARY_EXTENSIONS:
        return "binary extension"
    if name in GENERATED_NAMES or lower.endswith(GENERATED_SUFFIXES):
        return "generated file"
    if size is not None and size > options.max_code_file_bytes:
        return "larger than max_code_file_bytes"
    return None


def _is_github_com(host: str) -> bool:
    return host.lower() in ("github.com", "www.github.com")


class _Endpoints:
    """Where the API, raw files and blob pages of one GitHub (public or Enterprise) live."""

    def __init__(self, source_url: str) -> None:
        parts = urlsplit(source_url)
        self.dotcom = _is_github_com(parts.hostname or "")
        self.site = "https://github.com" if self.dotcom else f"{parts.scheme}://{parts.netloc}"
        self.api = "https://api.github.com" if self.dotcom else f"{self.site}/api/v3"

    def raw(self, owner: str, repo: str, ref: str, path: str) -> str:
        tail = f"{quote(ref, safe='/')}/{quote(path, safe='/')}"
        if self.dotcom:
            return f"https://raw.githubusercontent.com/{owner}/{repo}/{tail}"
        return f"{self.site}/{owner}/{repo}/raw/{tail}"

    def blob(self, owner: str, repo: str, ref: str, path: str) -> str:
        return f"{self.site}/{owner}/{repo}/blob/{quote(ref, safe='/')}/{quote(path, safe='/')}"


def _headers(options: ExtractOptions, api: bool) -> dict[str, str]:
    headers = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"} if api else {}
    if options.github_token is not None and options.github_token.get_secret_value():
        headers["Authorization"] = f"Bearer {options.github_token.get_secret_value()}"
    return headers


def _next_link(headers: Mapping[str, str]) -> str | None:
    match = _LINK_NEXT_RE.search(headers.get("link", ""))
    return match.group(1) if match else None


def _tree_ref(repo: Any) -> tuple[str, str, str] | None:
    """Owner, name and default branch of a repository object, or None when it lacks them."""
    if not isinstance(repo, dict):
        return None
    full_name, ref = repo.get("full_name"), repo.get("default_branch")
    if not isinstance(full_name, str) or not isinstance(ref, str) or not ref:
        return None
    owner, _, name = full_name.partition("/")
    if not owner or not name:
        return None
    return owner, name, ref


class GitHubExtractor:
    platform = Platform.GITHUB

    def start(self, source_url: str, options: ExtractOptions) -> Iterable[Follow]:
        endpoints = _Endpoints(source_url)
        segments = [s for s in urlsplit(source_url).path.split("/") if s]
        if not segments:
            raise InvalidSourceURL(
                f"{source_url}: expected a user (…/<user>) or repository (…/<owner>/<repo>) URL"
            )
        api_headers = _headers(options, api=True)
        if len(segments) == 1:
            query = urlencode({"type": "owner", "sort": "full_name", "per_page": _PER_PAGE, "page": 1})
            return [
                Follow(
                    url=f"{endpoints.api}/users/{quote(segments[0])}/repos?{query}",
                    step=STEP_REPOS,
                    headers=api_headers,
                )
            ]
        owner, repo = segments[0], segments[1].removesuffix(".git")
        return [
            Follow(
                url=f"{endpoints.api}/repos/{quote(owner)}/{quote(repo)}", step=STEP_REPO, headers=api_headers
            )
        ]

    def parse(self, page: Page) -> Iterable[Output]:
        self._check_status(page)
        if page.step == STEP_RAW:
            return self._raw(page)
        page.require(*JSON_TYPES)
        try:
            payload = json.loads(page.body)
        except ValueError as exc:
            raise FetchError(f"{page.url}: GitHub answered invalid JSON: {exc}") from exc
        if page.step == STEP_REPOS:
            return self._repos(page, payload)
        if page.step == STEP_REPO:
            return self._tree_follow(page, payload, explicit=True)
        if page.step == STEP_TREE:
            return self._tree(page, payload)
        raise FetchError(f"unknown GitHub step {page.step!r}")

    # --- steps -------------------------------------------------------------------------------

    def _check_status(self, page: Page) -> None:
        if page.status in (403, 429) and page.headers.get("x-ratelimit-remaining") == "0":
            raise FetchError(
                f"GitHub API rate limit exceeded at {page.url}; set TWIN_GITHUB__TOKEN for a higher limit "
                "(or wait until the reset time)"
            )
        if page.status == 401:
            raise FetchError(f"GitHub refused the credentials for {page.url}: check TWIN_GITHUB__TOKEN")
        if page.status >= 400:
            raise FetchError(f"GitHub answered HTTP {page.status} for {page.url}")

    def _repos(self, page: Page, payload: Any) -> list[Output]:
        if not isinstance(payload, list):
            raise FetchError(f"{page.url}: expected a list of repositories")
        out: list[Output] = []
        for repo in payload:
            if not isinstance(repo, dict) or repo.get("fork") or repo.get("archived"):
                continue  # a fork is someone else's code; an archived repo is the owner's past
            if _tree_ref(repo) is None:
                # One odd entry costs that repository, reported, not the rest of the page. Its
                # files are unseen, not gone, so the source must not delete them: Incomplete.
                name = repo.get("full_name") or repo.get("name") or "?"
                out.append(Incomplete(f"{page.url}: repository {name!r} lists no full_name/default_branch"))
                continue
            out.extend(self._tree_follow(page, repo, explicit=False))
        next_url = _next_link(page.headers)
        if next_url:
            out.append(Follow(url=next_url, step=STEP_REPOS, headers=_headers(page.options, api=True)))
        return out

    def _tree_follow(self, page: Page, repo: Any, explicit: bool) -> list[Output]:
        # An explicitly named repository is crawled even if it is a fork: the profile chose it.
        found = _tree_ref(repo)
        if found is None:
            raise FetchError(f"{page.url}: repository JSON without full_name/default_branch")
        owner, name, ref = found
        api = _Endpoints(page.source_url).api
        return [
            Follow(
                url=f"{api}/repos/{quote(owner)}/{quote(name)}/git/trees/{quote(ref, safe='')}?recursive=1",
                step=STEP_TREE,
                headers=_headers(page.options, api=True),
                data={"owner": owner, "repo": name, "ref": ref},
                # One repository's tree failing should not fail the user's other repositories.
                optional=not explicit,
            )
        ]

    def _tree(self, page: Page, payload: Any) -> list[Output]:
        entries = payload.get("tree") if isinstance(payload, dict) else None
        if not isinstance(entries, list):
            raise FetchError(f"{page.url}: expected a git tree")
        owner, repo, ref = str(page.data["owner"]), str(page.data["repo"]), str(page.data["ref"])
        endpoints = _Endpoints(page.source_url)
        out: list[Output] = []
        for entry in entries:
            if not isinstance(entry, dict) or entry.get("type") != "blob" or entry.get("mode") == "120000":
                continue  # folders, submodules (type commit) and symlinks are not files of code
            path, size = entry.get("path"), entry.get("size")
            if not isinstance(path, str) or skip_reason(
                path, size if isinstance(size, int) else None, page.options
            ):
                continue
            out.append(
                Follow(
                    url=endpoints.raw(owner, repo, ref, path),
                    step=STEP_RAW,
                    headers=_headers(page.options, api=False),
                    data={"owner": owner, "repo": repo, "ref": ref, "path": path},
                    optional=True,
                )
            )
        return out

    def _raw(self, page: Page) -> list[Output]:
        body = page.body
        if len(body) > page.options.max_code_file_bytes or b"\x00" in body[:_SNIFF_BYTES]:
            return []
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            return []  # not text we can store faithfully; a repository may hold such files
        if not text.strip():
            return []  # an empty __init__.py says nothing about how the owner writes code
        owner, repo, ref, path = (str(page.data[k]) for k in ("owner", "repo", "ref", "path"))
        return [
            ExtractedDocument(
                canonical_url=_Endpoints(page.source_url).blob(owner, repo, ref, path),
                category=Category.CODE,
                title=f"{repo}/{path}",
                content=text,
                metadata={
                    "repository": f"{owner}/{repo}",
                    "path": path,
                    "language": language_of(path),
                    "ref": ref,
                },
            )
        ]

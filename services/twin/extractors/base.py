"""The extractor contract: pure functions from fetched pages to follow-up requests and documents.

The spider owns all I/O. For each source it asks the platform's extractor where to start
(:meth:`Extractor.start`), fetches those requests, and hands every response back as a
:class:`Page` (:meth:`Extractor.parse`), which yields more :class:`Follow` requests and
:class:`~twin.domain.documents.ExtractedDocument` items. ``Follow.step`` names the extractor's
own state ("feed", "article", "listing"...), echoed back in ``Page.step``; ``Follow.data``
carries whatever the extractor needs on the next step (a page number, a branch name). Besides
documents and follow-ups, an extractor may report that its view of a source is partial
(:class:`Incomplete`) or that it saw a paid post it will not store (:class:`Paywalled`).

Extractors never fetch, sleep or store: that keeps them testable on saved pages, and keeps
politeness, safety and retries in one place (the spider and its middlewares).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import SecretStr

from twin.domain.documents import ExtractedDocument, Platform
from twin.domain.errors import UnsupportedContent

HTML_TYPES = ("text/html", "application/xhtml+xml")
FEED_TYPES = ("application/rss+xml", "application/atom+xml", "application/xml", "text/xml")
JSON_TYPES = ("application/json",)
TEXT_TYPES = ("text/plain",)


@dataclass(frozen=True)
class ExtractOptions:
    """What extractors may know of the settings. Built from settings by the spider."""

    linkedin_email: str | None = None
    linkedin_password: SecretStr | None = None
    github_token: SecretStr | None = None
    # Code files larger than this are skipped (not truncated: half a file is not the owner's code).
    max_code_file_bytes: int = 200_000
    # Folders whose files are not the owner's code.
    skip_code_dirs: frozenset[str] = frozenset(
        {
            "node_modules",
            "vendor",
            "third_party",
            "thirdparty",
            "dist",
            "build",
            "target",
            ".git",
            "__pycache__",
            ".venv",
            "venv",
            "site-packages",
            "bower_components",
            "Pods",
            "generated",
            "gen",
            ".next",
            "out",
            "coverage",
        }
    )


@dataclass(frozen=True)
class Follow:
    """A request an extractor wants made. ``render_js`` fetches it through headless Chromium."""

    url: str
    step: str
    render_js: bool = False
    method: str = "GET"
    # Form fields for a POST (LinkedIn login); sent url-encoded.
    form: Mapping[str, str] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    data: Mapping[str, Any] = field(default_factory=dict)
    # Informational: the extractor can do without this page (an older-articles listing, one post).
    # Every failure is recorded either way, and any failure keeps the source from deleting.
    optional: bool = False
    # Hand 4xx/5xx responses to parse() instead of failing the request (after retries), so the
    # extractor can fall back to another surface. It then owns the outcome: a fallback that sees
    # less than the full source must yield Incomplete, or missing items would be deleted.
    accept_errors: bool = False


@dataclass(frozen=True)
class Page:
    """A fetched response as an extractor sees it."""

    url: str  # final URL, after redirects
    status: int
    content_type: str  # lower-case media type without parameters, "" if absent
    headers: Mapping[str, str]  # lower-case names (e.g. "link" for GitHub's pagination)
    body: bytes
    text: str  # body decoded with the response's charset
    step: str
    data: Mapping[str, Any]
    source_url: str
    options: ExtractOptions

    def is_html(self) -> bool:
        return self.content_type in HTML_TYPES or (not self.content_type and self.text.lstrip()[:1] == "<")

    def require(self, *types: str) -> None:
        """Raise :class:`UnsupportedContent` unless the body's media type is one of ``types``."""
        if self.content_type and self.content_type not in types:
            raise UnsupportedContent(f"{self.url}: expected {', '.join(types)} but got {self.content_type!r}")


@dataclass(frozen=True)
class Incomplete:
    """Yielded when the extractor knows its view of the source is partial (a fallback surface).

    Recorded as a page error: the source's other documents are stored, and none is deleted.
    """

    reason: str


@dataclass(frozen=True)
class Paywalled:
    """Yielded for a post the extractor saw but will not store: a paid post whose public text is
    only the preview before the paywall.

    Not an error (nothing failed) and not a document: a teaser cut mid-thought is not the writer's
    text and must not train their twin, so it is never stored, not even marked as truncated. The
    spider counts these per source, so the report says how many paid posts were left out.
    """

    url: str


Output = Follow | ExtractedDocument | Incomplete | Paywalled


class Extractor(Protocol):
    platform: Platform

    def start(self, source_url: str, options: ExtractOptions) -> Iterable[Follow]:
        """The first requests for a source URL (already validated)."""
        ...

    def parse(self, page: Page) -> Iterable[Output]:
        """Turn one fetched page into more requests and documents; raise FetchError subclasses."""
        ...

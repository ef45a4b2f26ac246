"""Shared parsing helpers for the long-form extractors (Medium, Substack, web).

They turn platform HTML into the project's Markdown-ish content convention (``## `` headings,
blank-line paragraphs, fenced code, no tags) and read the machine-readable surfaces platforms
publish next to it: JSON-LD, RSS/Atom entries, ISO dates. Everything here is pure.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import parsel

# Elements whose text is never the author's prose: chrome, media, widgets, scripts.
_SKIP = frozenset(
    {
        "script",
        "style",
        "noscript",
        "template",
        "svg",
        "img",
        "picture",
        "video",
        "audio",
        "iframe",
        "button",
        "form",
        "input",
        "select",
        "textarea",
        "nav",
        "aside",
        "footer",
        "figcaption",
        "head",
    }
)
_HEADINGS = frozenset({"h1", "h2", "h3", "h4", "h5", "h6"})
_CONTAINERS = frozenset(
    {
        "html",
        "body",
        "div",
        "section",
        "article",
        "main",
        "header",
        "figure",
        "center",
        "details",
        "table",
        "tbody",
        "thead",
        "tr",
        "td",
        "th",
        "dl",
        "dd",
        "dt",
    }
)
# schema.org's Article and the subtypes publishing platforms use. SocialMediaPosting is Medium's
# type for a story page (and BlogPosting's parent): leaving it out lost those pages' dates.
_ARTICLE_TYPES = frozenset(
    {
        "Article",
        "NewsArticle",
        "AnalysisNewsArticle",
        "OpinionNewsArticle",
        "ReportageNewsArticle",
        "BlogPosting",
        "SocialMediaPosting",
        "TechArticle",
        "Report",
        "ScholarlyArticle",
    }
)
_SPACES = re.compile(r"\s+")


def squash(text: str) -> str:
    """Collapse runs of whitespace (newlines included) to single spaces."""
    return _SPACES.sub(" ", text).strip()


def _tag(el: Any) -> str:
    tag = el.tag
    return tag.lower() if isinstance(tag, str) else ""  # comments and PIs have callable tags


def _inline(el: Any) -> str:
    """Text of an inline run; ``<br>`` is a space, inline ``<code>`` keeps its backticks."""
    parts = [el.text or ""]
    for child in el:
        tag = _tag(child)
        if tag == "br":
            parts.append(" ")
        elif tag == "code":
            code = squash(_inline(child))
            parts.append(f"`{code}`" if code else "")
        elif tag and tag not in _SKIP:
            parts.append(_inline(child))
        parts.append(child.tail or "")
    return "".join(parts)


def _pre_text(el: Any) -> str:
    """Verbatim text of a ``<pre>``; ``<br>`` (Medium's line breaks in code) becomes a newline."""
    parts = [el.text or ""]
    for child in el:
        parts.append("\n" if _tag(child) == "br" else _pre_text(child))
        parts.append(child.tail or "")
    return "".join(parts)


def _code_language(pre: Any) -> str:
    for el in pre.iter():
        for cls in (el.get("class") or "").split() if isinstance(el.tag, str) else []:
            if cls.startswith("language-"):
                return cls.removeprefix("language-")
    return ""


def _block(child: Any, tag: str) -> list[str] | None:
    """The blocks a block-level element contributes, or None for an inline element."""
    if tag in _HEADINGS:
        heading = squash(_inline(child))
        return [f"## {heading}"] if heading else []
    if tag == "p":
        paragraph = squash(_inline(child))
        return [paragraph] if paragraph else []
    if tag == "pre":
        code = _pre_text(child).strip("\n")
        return [f"```{_code_language(child)}\n{code}\n```"] if code.strip() else []
    if tag in ("ul", "ol"):
        items = (squash(_inline(item)) for item in child.iter("li"))
        return [f"- {text}" for text in items if text]
    if tag != "blockquote" and tag not in _CONTAINERS:
        return None
    nested: list[str] = []
    _walk(child, nested)
    return [f"> {line}" for line in nested] if tag == "blockquote" else nested


def _walk(el: Any, out: list[str]) -> None:
    """Append ``el``'s blocks to ``out``; loose text between blocks becomes its own paragraph."""
    buffer: list[str] = [el.text or ""]

    def flush() -> None:
        text = squash("".join(buffer))
        if text:
            out.append(text)
        buffer.clear()

    for child in el:
        tag = _tag(child)
        if tag and tag not in _SKIP:
            blocks = _block(child, tag)
            if blocks is None:
                buffer.append(_inline(child))
            else:
                flush()
                out.extend(blocks)
        buffer.append(child.tail or "")
    flush()


def drop_repeated_headings(blocks: list[str], *texts: str | None) -> list[str]:
    """``blocks`` without the leading headings that repeat ``texts`` (the title, the subtitle).

    Feeds and article pages often open the body with the title (and on Medium the subtitle) as
    headings; both are stored in their own fields, and a body that repeats them would teach the
    twin to start every piece by restating its headline. Each text is dropped at most once, and
    only from the top: the same words as a section heading further down are the author's.
    """
    wanted = {squash(t).casefold() for t in texts if t and squash(t)}
    kept = list(blocks)
    while kept and kept[0].startswith("## ") and squash(kept[0][3:]).casefold() in wanted:
        wanted.discard(squash(kept.pop(0)[3:]).casefold())
    return kept


def element_to_markdown(el: Any, *, drop_title: str | None = None) -> str:
    """Markdown-ish text of an lxml element (e.g. ``Selector.root``).

    ``drop_title`` removes a leading heading equal to the document's title: feeds and article
    bodies often repeat it, and the title is stored in its own field.
    """
    blocks: list[str] = []
    _walk(el, blocks)
    return "\n\n".join(drop_repeated_headings(blocks, drop_title))


def block_to_markdown(el: Any) -> str:
    """Markdown-ish text of one block element (a paragraph, a heading, a ``<pre>``)."""
    tag = _tag(el)
    if not tag or tag in _SKIP:
        return ""
    blocks = _block(el, tag)
    return squash(_inline(el)) if blocks is None else "\n\n".join(blocks)


def html_to_markdown(html: str, *, drop_title: str | None = None) -> str:
    """Markdown-ish text of an HTML fragment (a feed's ``content:encoded``)."""
    root = parsel.Selector(text=f"<div>{html}</div>").css("body > div")
    if not root:
        return ""
    return element_to_markdown(root[0].root, drop_title=drop_title)


def word_count(markdown: str) -> int:
    return len(markdown.split())


_FENCE = re.compile(r"(```.*?```)", re.DOTALL)


def normalise_markdown(text: str) -> str:
    """Tidy Markdown from a third-party converter: one blank line between blocks, ``## `` headings,
    no trailing spaces, code fences left verbatim."""
    pieces: list[str] = []
    for i, part in enumerate(_FENCE.split(text)):
        if i % 2:  # a fenced block
            pieces.append(f"\n\n{part.strip()}\n\n")
            continue
        lines = []
        for raw in part.splitlines():
            line = raw.rstrip()
            heading = re.match(r"^#{1,6}\s+(.*)$", line)
            lines.append(f"\n## {heading.group(1).strip()}\n" if heading else line)
        pieces.append("\n".join(lines))
    joined = "".join(pieces)
    joined = re.sub(r"[ \t]+\n", "\n", joined)
    return re.sub(r"\n{3,}", "\n\n", joined).strip()


# -- dates -----------------------------------------------------------------------------------------


def parse_datetime(value: Any) -> datetime | None:
    """An aware datetime from ISO 8601 text ("2025-03-14", "...T09:30:00Z", offsets); UTC if naive."""
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip().replace("Z", "+00:00").replace("z", "+00:00")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def entry_datetime(entry: Any) -> datetime | None:
    """The publication time of a feedparser entry (its parsed structs are in UTC)."""
    for key in ("published_parsed", "updated_parsed", "created_parsed"):
        parsed = entry.get(key)
        if isinstance(parsed, time.struct_time):
            return datetime(*parsed[:6], tzinfo=UTC)
    return None


# -- JSON-LD ---------------------------------------------------------------------------------------


def _ld_items(value: Any) -> Iterator[dict[str, Any]]:
    if isinstance(value, list):
        for item in value:
            yield from _ld_items(item)
    elif isinstance(value, dict):
        yield value
        if "@graph" in value:
            yield from _ld_items(value["@graph"])


def json_ld(sel: parsel.Selector) -> list[dict[str, Any]]:
    """Every JSON-LD object on a page (lists and ``@graph`` flattened); broken blocks are ignored."""
    items: list[dict[str, Any]] = []
    for raw in sel.css('script[type="application/ld+json"]::text').getall():
        try:
            items.extend(_ld_items(json.loads(raw)))
        except ValueError:
            continue
    return items


def ld_article(sel: parsel.Selector) -> dict[str, Any]:
    """The page's Article-like JSON-LD object, or an empty dict."""
    for item in json_ld(sel):
        types = item.get("@type")
        names = {types} if isinstance(types, str) else set(types) if isinstance(types, list) else set()
        if names & _ARTICLE_TYPES:
            return item
    return {}


def published_time(sel: parsel.Selector, ld: dict[str, Any]) -> datetime | None:
    """When the page says it was published: the article JSON-LD's ``datePublished``, else Open
    Graph's ``article:published_time`` (pages whose JSON-LD is missing, broken or of a type we do
    not read still carry the meta tag)."""
    return parse_datetime(ld.get("datePublished")) or parse_datetime(
        sel.css('meta[property="article:published_time"]::attr(content)').get()
    )


def ld_author(item: dict[str, Any]) -> str | None:
    """The first author's name of a JSON-LD object (a string, an object or a list of either)."""
    author = item.get("author")
    if isinstance(author, list):
        author = author[0] if author else None
    if isinstance(author, dict):
        author = author.get("name")
    return squash(author) if isinstance(author, str) and author.strip() else None


def ld_text(item: dict[str, Any], key: str) -> str | None:
    value = item.get(key)
    return squash(value) if isinstance(value, str) and value.strip() else None


def canonical_link(sel: parsel.Selector) -> str | None:
    href = sel.css('link[rel="canonical"]::attr(href)').get()
    return href.strip() if href and href.strip() else None

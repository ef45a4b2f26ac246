"""Turn the sample's Markdown-ish bodies into blocks each fixture site renders in its own markup.

The content uses a deliberately tiny dialect (``## `` headings, blank-line paragraphs, fenced
code), so a few lines of parsing suffice and no Markdown library is needed at fixture time.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from html import escape
from typing import Literal

BlockKind = Literal["heading", "paragraph", "code"]


@dataclass(frozen=True)
class Block:
    kind: BlockKind
    text: str
    language: str = ""


def blocks(body: str) -> list[Block]:
    """Split a Markdown-ish body into headings, paragraphs and fenced code blocks."""
    out: list[Block] = []
    lines = body.strip("\n").splitlines()
    i = 0
    paragraph: list[str] = []

    def flush() -> None:
        if paragraph:
            out.append(Block("paragraph", " ".join(line.strip() for line in paragraph)))
            paragraph.clear()

    while i < len(lines):
        line = lines[i]
        if line.startswith("```"):
            flush()
            language = line[3:].strip()
            code: list[str] = []
            i += 1
            while i < len(lines) and not lines[i].startswith("```"):
                code.append(lines[i])
                i += 1
            out.append(Block("code", "\n".join(code), language))
        elif line.startswith("## "):
            flush()
            out.append(Block("heading", line[3:].strip()))
        elif not line.strip():
            flush()
        else:
            paragraph.append(line)
        i += 1
    flush()
    return out


def to_html(body: str, *, paragraph_attrs: str = "", block_attrs: str = "") -> str:
    """Plain semantic HTML for a body.

    ``paragraph_attrs`` and ``block_attrs`` (raw attribute strings) mimic platform-specific
    markers: Medium's ``pw-post-body-paragraph`` class, its ``data-selectable-paragraph``.
    """
    p_attrs = f" {paragraph_attrs}" if paragraph_attrs else ""
    b_attrs = f" {block_attrs}" if block_attrs else ""
    parts: list[str] = []
    for block in blocks(body):
        if block.kind == "heading":
            parts.append(f"<h2{b_attrs}>{escape(block.text)}</h2>")
        elif block.kind == "code":
            lang = f' class="language-{block.language}"' if block.language else ""
            parts.append(f"<pre{b_attrs}><code{lang}>{escape(block.text)}</code></pre>")
        else:
            parts.append(f"<p{p_attrs}{b_attrs}>{escape(block.text)}</p>")
    return "\n".join(parts)


def published_at(date: str) -> datetime:
    """The sample's ISO dates as an aware datetime: 09:30 UTC, a plausible publishing time."""
    day = datetime.fromisoformat(date)
    return day.replace(hour=9, minute=30, tzinfo=UTC)


def rfc822(date: str) -> str:
    """An RSS ``pubDate``."""
    return format_datetime(published_at(date))


def stable_hex(seed: str, length: int) -> str:
    """A hex id that is the same on every run for the same seed (Medium post ids, Substack ids)."""
    return hashlib.sha256(seed.encode("utf-8")).hexdigest()[:length]


def stable_int(seed: str, digits: int = 9) -> int:
    modulus: int = 10**digits
    return int(stable_hex(seed, 12), 16) % modulus

"""Clean a raw document into the text that training reads and chunking splits.

Articles and posts are Markdown-ish (``## `` headings, blank-line paragraphs, fenced code): they
are normalised (NFKC, no invisible or control characters, no leftover HTML or Markdown link
syntax, tidy whitespace) while headings, paragraphs and fenced code blocks survive. Code is kept
byte for byte: its whitespace is its meaning.
"""

from __future__ import annotations

import copy
import html
import re
import unicodedata
from datetime import datetime

from twin.domain.documents import Category, RawDocument
from twin.domain.errors import PoisonEvent
from twin.domain.features import CleanedDocument

# More than this share of U+FFFD means the bytes were decoded wrongly somewhere upstream.
MAX_REPLACEMENT_RATIO = 0.01
_REPLACEMENT = "\ufffd"

_FENCE = re.compile(r"^ {0,3}(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
_LINE_BREAKS = re.compile(r"\r\n?|[\u2028\u2029\x0b\x0c\x85]")
_HTML_COMMENT = re.compile(r"<!--.*?(?:-->|$)", re.DOTALL)
_HTML_DROP = re.compile(r"<(script|style|template)\b[^>]*>.*?</\1\s*>", re.DOTALL | re.IGNORECASE)
_HTML_BREAK = re.compile(r"<br\s*/?>", re.IGNORECASE)
_HTML_BLOCK = re.compile(
    r"</?(?:p|div|section|article|blockquote|pre|ul|ol|li|table|tr|h[1-6]|hr|figure|figcaption|header"
    r"|footer|aside|main|nav)\b[^<>]*>",
    re.IGNORECASE,
)
_HTML_TAG = re.compile(r"</?[A-Za-z][A-Za-z0-9:-]*(?:\s[^<>]*)?/?>")
_INLINE_CODE = re.compile(r"(`+)(?!`)(.+?)(?<!`)\1(?!`)")
_IMAGE = re.compile(r"!\[([^\[\]]*)\]\((?:[^()\s]|\([^()]*\))*(?:\s+(?:\"[^\"]*\"|'[^']*'))?\s*\)")
_LINK = re.compile(r"\[([^\[\]]+)\]\((?:[^()\s]|\([^()]*\))*(?:\s+(?:\"[^\"]*\"|'[^']*'))?\s*\)")
_REF_LINK = re.compile(r"!?\[([^\[\]]+)\]\[[^\[\]]*\]")
_REF_DEFINITION = re.compile(r"^ {0,3}\[[^\[\]]+\]:\s*\S+.*$", re.MULTILINE)
_AUTOLINK = re.compile(r"<((?:https?|mailto|ftp):[^<>\s]+)>", re.IGNORECASE)
_SUSPECT = re.compile(r"[^\n\x20-\x7e]")  # only these can be control or format characters
_SPACES = re.compile(r"[^\S\n]+")
_BLANK_RUNS = re.compile(r"\n{3,}")
# A placeholder for protected inline code, in private-use characters (removed from prose first).
_SLOT_OPEN, _SLOT_CLOSE = "\ue000", "\ue001"
_SLOT = re.compile(f"{_SLOT_OPEN}(\\d+){_SLOT_CLOSE}")


def clean_document(event_document: RawDocument, *, lsn: int, committed_at: datetime) -> CleanedDocument:
    """The cleaned form of ``event_document``; raises :class:`PoisonEvent` if nothing usable is left."""
    doc = event_document
    raw = doc.content
    if raw and raw.count(_REPLACEMENT) / len(raw) > MAX_REPLACEMENT_RATIO:
        raise PoisonEvent(
            f"document {doc.id}: {raw.count(_REPLACEMENT):,} of {len(raw):,} characters are U+FFFD "
            "(undecodable bytes upstream)"
        )
    content = raw if doc.category is Category.CODE else clean_markdown(raw)
    if not content.strip():
        raise PoisonEvent(f"document {doc.id}: no text left after cleaning ({doc.category.value})")
    return CleanedDocument(
        id=doc.id,
        profile=doc.profile,
        platform=doc.platform,
        category=doc.category,
        url=doc.canonical_url,
        title=clean_title(doc.title),
        content=content,
        raw_content_hash=doc.content_hash,
        lsn=lsn,
        committed_at=committed_at,
        metadata=copy.deepcopy(doc.metadata),
    )


def clean_title(title: str) -> str:
    """A title on one line: NFKC, no invisible characters, entities decoded, spaces collapsed."""
    text = _strip_invisible(unicodedata.normalize("NFKC", title).replace("\n", " "), keep_tabs=False)
    text = html.unescape(_HTML_TAG.sub("", text))
    return _SPACES.sub(" ", text).strip()


def clean_markdown(text: str) -> str:
    """Markdown-ish prose cleaned; fenced code blocks keep their lines (and indentation)."""
    text = _LINE_BREAKS.sub("\n", unicodedata.normalize("NFKC", text))
    out: list[str] = []
    prose: list[str] = []
    fence: str | None = None  # the open fence's marker, e.g. "```"
    for line in text.split("\n"):
        if fence is None:
            match = _FENCE.match(line)
            if match:
                out.append(_clean_prose("\n".join(prose)))
                prose = []
                fence = match["fence"]
                info = _SPACES.sub(" ", _strip_invisible(match["info"], keep_tabs=False)).strip()
                out.append(f"\n{fence}{info}")
            else:
                prose.append(line)
            continue
        stripped = line.strip()
        if stripped.startswith(fence[0] * len(fence)) and not stripped.strip(fence[0]):
            out.append(f"{fence}\n")
            fence = None
        else:
            out.append(_strip_invisible(line, keep_tabs=True).rstrip())
    if fence is not None:  # an unclosed fence runs to the end, as in CommonMark; close it
        while out and not out[-1]:
            out.pop()
        out.append(f"{fence}\n")
    out.append(_clean_prose("\n".join(prose)))
    joined = "\n".join(out)
    joined = "\n".join(line.rstrip() for line in joined.split("\n"))
    return _BLANK_RUNS.sub("\n\n", joined).strip("\n")


def _clean_prose(text: str) -> str:
    if not text.strip():
        return ""
    text = _strip_invisible(text, keep_tabs=False)
    for ch in (_REPLACEMENT, _SLOT_OPEN, _SLOT_CLOSE):
        text = text.replace(ch, "")
    slots: list[str] = []

    def protect(match: re.Match[str]) -> str:
        slots.append(match[0])
        return f"{_SLOT_OPEN}{len(slots) - 1}{_SLOT_CLOSE}"

    text = _INLINE_CODE.sub(protect, text)
    text = _HTML_COMMENT.sub("", text)
    text = _HTML_DROP.sub("", text)
    text = _HTML_BREAK.sub("\n", text)
    text = _HTML_BLOCK.sub("\n\n", text)
    text = _AUTOLINK.sub(r"\1", text)
    text = _HTML_TAG.sub("", text)
    text = _REF_DEFINITION.sub("", text)
    text = _IMAGE.sub(r"\1", text)
    text = _LINK.sub(r"\1", text)
    text = _REF_LINK.sub(r"\1", text)
    text = html.unescape(text)
    # Entities may decode to invisible characters (&#8203;) or NBSP: clean once more.
    text = _strip_invisible(unicodedata.normalize("NFKC", text), keep_tabs=False)
    text = _SLOT.sub(lambda m: slots[int(m[1])], text)
    lines = (_SPACES.sub(" ", line).strip() for line in text.split("\n"))
    return "\n" + _BLANK_RUNS.sub("\n\n", "\n".join(lines)).strip("\n") + "\n"


def _strip_invisible(text: str, *, keep_tabs: bool) -> str:
    """Drop control (Cc), format (Cf: zero-width, bidi marks, BOM) and surrogate characters.

    Newlines stay; tabs stay in code and become spaces in prose.
    """

    def replace(match: re.Match[str]) -> str:
        ch = match[0]
        if ch == "\t":
            return ch if keep_tabs else " "
        return "" if unicodedata.category(ch) in ("Cc", "Cf", "Cs") else ch

    return _SUSPECT.sub(replace, text)

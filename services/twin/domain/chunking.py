"""Split cleaned documents into token-bounded chunks for retrieval.

Limits are in the embedding model's tokens (a counter is passed in), never in characters: every
chunk satisfies ``count_tokens(chunk.text) <= min(max_tokens, max_model_tokens - 2)`` (the 2 is
the model's [CLS]/[SEP]), whatever the input. Per category:

* **post**: sentences packed into small chunks, paragraphs kept whole when they fit, a few trailing
  sentences repeated at the start of the next chunk (overlap).
* **article**: ``## `` sections first; each chunk of a section starts with ``"Title — Section\\n\\n"``
  (counted in the limit); paragraphs and fenced code blocks packed whole when they fit, else split
  into sentences (code blocks into lines), with sentence overlap inside a section.
* **code**: top-level definitions (with their decorators and leading comments), small ones grouped;
  a definition too large, or a file with none, goes in windows of lines with a few lines overlap.
  Chunk text is an exact slice of the file; ``metadata["lines"]`` is ``[first, last]`` (1-based).

Anything still too large falls back to words, and a word too large to hard character splits.
A document that fits the limit is exactly one chunk. Same input, same chunks.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from twin.domain.chunking_code import chunk_code
from twin.domain.chunking_units import FENCE, Budget, Piece, TokenCounter, pack, split_blocks
from twin.domain.documents import Category
from twin.domain.features import Chunk, CleanedDocument

TITLE_SEPARATOR = " — "
MODEL_SPECIAL_TOKENS = 2  # [CLS] and [SEP]


@dataclass(frozen=True)
class ChunkPolicy:
    """Chunk sizes per category, in model tokens.

    ``max_chars_per_token`` also caps a chunk's length in characters (``limit * max_chars_per_token``):
    a tokenizer may count a very long unbroken string as one unknown token, which would make a
    huge chunk "fit".
    """

    post_max_tokens: int = 128
    post_overlap_tokens: int = 16
    article_max_tokens: int = 200
    article_overlap_tokens: int = 32
    code_max_tokens: int = 200
    code_window_lines: int = 40
    code_overlap_lines: int = 5
    max_chars_per_token: int = 16

    def __post_init__(self) -> None:
        for name in ("post_max_tokens", "article_max_tokens", "code_max_tokens", "code_window_lines"):
            if getattr(self, name) < 1:
                raise ValueError(f"ChunkPolicy.{name} must be at least 1")
        for name in ("post_overlap_tokens", "article_overlap_tokens", "code_overlap_lines"):
            if getattr(self, name) < 0:
                raise ValueError(f"ChunkPolicy.{name} must not be negative")
        if self.code_overlap_lines >= self.code_window_lines:
            raise ValueError("ChunkPolicy.code_overlap_lines must be smaller than code_window_lines")
        if self.max_chars_per_token < 1:
            raise ValueError("ChunkPolicy.max_chars_per_token must be at least 1")

    def max_tokens(self, category: Category) -> int:
        return {
            Category.POST: self.post_max_tokens,
            Category.ARTICLE: self.article_max_tokens,
            Category.CODE: self.code_max_tokens,
        }[category]

    def overlap_tokens(self, category: Category) -> int:
        return {
            Category.POST: self.post_overlap_tokens,
            Category.ARTICLE: self.article_overlap_tokens,
            Category.CODE: 0,
        }[category]


def chunk_document(
    doc: CleanedDocument,
    count_tokens: TokenCounter,
    policy: ChunkPolicy = ChunkPolicy(),  # frozen: a shared default is safe
    max_model_tokens: int = 256,
) -> list[Chunk]:
    """``doc`` in token-bounded chunks, in document order (positions 0..n-1)."""
    limit = min(policy.max_tokens(doc.category), max_model_tokens - MODEL_SPECIAL_TOKENS)
    if limit < 1:
        raise ValueError(f"no room for text: max_model_tokens={max_model_tokens}")
    if not doc.content.strip():
        return []
    budget = Budget(count_tokens, limit, limit * policy.max_chars_per_token)
    if doc.category is Category.CODE:
        pieces = chunk_code(doc, budget, policy)
    elif doc.category is Category.ARTICLE:
        pieces = _chunk_article(doc, budget, policy.overlap_tokens(doc.category))
    else:
        pieces = _chunk_prose(doc.content, budget, policy.overlap_tokens(doc.category))
    chunks: list[Chunk] = []
    for text, metadata in pieces:
        tokens = count_tokens(text)
        if tokens > limit:  # the construction guarantees this never happens; fail loudly if it does
            raise AssertionError(f"chunk of {tokens} tokens over the limit of {limit}")
        chunks.append(
            Chunk(
                document_id=doc.id,
                position=len(chunks),
                text=text,
                token_count=tokens,
                content_hash=hashlib.sha256(text.encode("utf-8")).hexdigest(),
                metadata=metadata,
            )
        )
    return chunks


def _chunk_prose(content: str, budget: Budget, overlap_tokens: int) -> list[Piece]:
    if budget.fits(content):
        return [(content, {})]
    blocks = split_blocks(content, 0, len(content))
    return [(content[s:e], {}) for s, e in pack(content, blocks, "", budget, overlap_tokens)]


def _prefix(budget: Budget, *parts: str) -> str:
    """``"Title — Section\\n\\n"``, shortened (section only, then nothing) if it would take over half."""
    candidates = [TITLE_SEPARATOR.join(p for p in parts if p)]
    if len(parts) > 1 and parts[-1]:
        candidates.append(parts[-1])
    for candidate in candidates:
        if candidate and budget.fits(candidate + "\n\n") and budget.count(candidate) <= budget.limit // 2:
            return candidate + "\n\n"
    return ""


def _chunk_article(doc: CleanedDocument, budget: Budget, overlap_tokens: int) -> list[Piece]:
    content = doc.content
    title = doc.title.strip()
    whole = f"{title}\n\n{content}" if title else content
    if budget.fits(whole):
        return [(whole, {})]
    pieces: list[Piece] = []
    for heading, start, end in sections(content):
        prefix = _prefix(budget, title, heading) if heading is not None else _prefix(budget, title)
        metadata: dict[str, Any] = {"section": heading} if heading is not None else {}
        blocks = split_blocks(content, start, end)
        if not blocks:
            if prefix:  # a heading with no body still says something: keep it findable
                pieces.append((prefix.rstrip("\n"), dict(metadata)))
            continue
        for s, e in pack(content, blocks, prefix, budget, overlap_tokens):
            pieces.append((prefix + content[s:e], dict(metadata)))
    return pieces or _chunk_prose(content, budget, overlap_tokens)


def sections(content: str) -> list[tuple[str | None, int, int]]:
    """``(heading, body start, body end)`` for the text before the first ``## `` and each section."""
    sections: list[tuple[str | None, int, int]] = []
    heading: str | None = None
    body_start = 0
    pos = 0
    fence: str | None = None
    while pos <= len(content):
        nl = content.find("\n", pos)
        line_end = len(content) if nl == -1 else nl
        line = content[pos:line_end]
        if fence is not None:
            stripped = line.strip()
            if stripped and stripped.startswith(fence) and not stripped.strip(fence[0]):
                fence = None
        elif match := FENCE.match(line):
            fence = match[1]
        elif line.startswith("## "):
            sections.append((heading, body_start, pos))
            heading = line[3:].strip()
            body_start = line_end
        if nl == -1:
            break
        pos = nl + 1
    sections.append((heading, body_start, len(content)))
    return [s for s in sections if s[0] is not None or content[s[1] : s[2]].strip()]

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
import posixpath
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from twin.domain.documents import Category
from twin.domain.features import Chunk, CleanedDocument

TokenCounter = Callable[[str], int]

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
    budget = _Budget(count_tokens, limit, limit * policy.max_chars_per_token)
    if doc.category is Category.CODE:
        pieces = _chunk_code(doc, budget, policy)
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


# --------------------------------------------------------------------------------------- budget


class _Budget:
    def __init__(self, count: TokenCounter, limit: int, max_chars: int) -> None:
        self.count = count
        self.limit = limit
        self.max_chars = max_chars

    def fits(self, text: str) -> bool:
        return len(text) <= self.max_chars and self.count(text) <= self.limit


class _Span(NamedTuple):
    start: int
    end: int
    overlappable: bool = True  # prose sentences may be repeated as overlap; code lines are not


Piece = tuple[str, dict[str, Any]]


# ---------------------------------------------------------------------------------- prose units

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_SENTENCE_END = re.compile("[.!?\u2026]+[\"'\u201d\u2019)\\]]*(?=\\s)")
_WORD = re.compile(r"\S+")


def _strip_span(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def _blocks(text: str, start: int, end: int) -> list[tuple[_Span, bool]]:
    """Paragraphs (blank-line separated) and fenced code blocks in ``text[start:end]``.

    Each is (span, is_code); a fenced block is one block, blank lines inside it included.
    """
    blocks: list[tuple[_Span, bool]] = []
    pos = start
    para_start: int | None = None
    fence: str | None = None
    code_start = 0
    while pos < end:
        nl = text.find("\n", pos, end)
        line_end = end if nl == -1 else nl
        line = text[pos:line_end]
        if fence is not None:
            stripped = line.strip()
            if stripped and stripped.startswith(fence) and not stripped.strip(fence[0]):
                blocks.append((_Span(code_start, line_end, False), True))
                fence = None
        else:
            match = _FENCE.match(line)
            if match:
                if para_start is not None:
                    blocks.append((_Span(*_strip_span(text, para_start, pos), True), False))
                    para_start = None
                fence, code_start = match[1], pos
            elif not line.strip():
                if para_start is not None:
                    blocks.append((_Span(*_strip_span(text, para_start, pos), True), False))
                    para_start = None
            elif para_start is None:
                para_start = pos
        pos = line_end + 1
    if fence is not None:
        blocks.append((_Span(code_start, end, False), True))
    elif para_start is not None:
        blocks.append((_Span(*_strip_span(text, para_start, end), True), False))
    return [b for b in blocks if b[0].end > b[0].start]


def _lines(text: str, span: _Span, *, keep_indent: bool) -> list[_Span]:
    out = []
    pos = span.start
    while pos < span.end:
        nl = text.find("\n", pos, span.end)
        line_end = span.end if nl == -1 else nl
        s, e = _strip_span(text, pos, line_end)
        if e > s:
            out.append(_Span(pos if keep_indent else s, e, span.overlappable))
        pos = line_end + 1
    return out


def _sentences(text: str, span: _Span) -> list[_Span]:
    out = []
    pos = span.start
    for match in _SENTENCE_END.finditer(text, span.start, span.end):
        s, e = _strip_span(text, pos, match.end())
        if e > s:
            out.append(_Span(s, e, span.overlappable))
        pos = match.end()
    s, e = _strip_span(text, pos, span.end)
    if e > s:
        out.append(_Span(s, e, span.overlappable))
    return out


def _fit_units(text: str, span: _Span, fits: Callable[[int, int], bool], *, is_code: bool) -> list[_Span]:
    """A block too large for one chunk, as units that each fit on their own.

    Prose: sentences (line by line); code: lines. A unit still too large goes to words, then to
    hard character splits.
    """
    out: list[_Span] = []
    for line in _lines(text, span, keep_indent=is_code):
        for unit in [line] if is_code else _sentences(text, line):
            out.extend([unit] if fits(unit.start, unit.end) else _split_words(text, unit, fits))
    return out


def _split_words(text: str, span: _Span, fits: Callable[[int, int], bool]) -> list[_Span]:
    """Words of ``span`` packed greedily into pieces that fit; a word too long is hard split."""
    if fits(span.start, span.end):
        return [span]
    words = [(m.start(), m.end()) for m in _WORD.finditer(text, span.start, span.end)]
    out: list[_Span] = []
    i = guess = 0
    while i < len(words):
        first = words[i][0]
        if not fits(first, words[i][1]):
            out.extend(_Span(s, e, span.overlappable) for s, e in _hard_split(first, words[i][1], fits))
            i += 1
            continue

        def fits_to(j: int, first: int = first) -> bool:
            return fits(first, words[j][1])

        last = _last_fitting(i, len(words), fits_to, guess)
        out.append(_Span(first, words[last][1], span.overlappable))
        guess, i = last - i, last + 1
    return out


def _last_fitting(first: int, stop: int, fits: Callable[[int], bool], guess: int = 1) -> int:
    """The largest ``j`` in ``[first, stop)`` with ``fits(j)``, given ``fits(first)``.

    Tries ``first + guess`` (the previous answer's size), then gallops and bisects: a handful of
    token counts instead of one per word or line (counts grow with the text: ``fits`` is monotone).
    """
    lo, hi = first, stop
    probe = min(first + guess, stop - 1)
    if probe > first:
        if fits(probe):
            lo = probe
        else:
            hi = probe
    step = 1
    while hi == stop and lo + step < stop:
        if fits(lo + step):
            lo += step
            step *= 2
        else:
            hi = lo + step
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid
    return lo


def _hard_split(start: int, end: int, fits: Callable[[int, int], bool]) -> list[tuple[int, int]]:
    """``[start, end)`` in consecutive pieces, each the longest prefix of the rest that fits."""
    out = []
    while start < end:
        lo, hi = 1, end - start  # find the largest n with fits(start, start + n)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if fits(start, start + mid):
                lo = mid
            else:
                hi = mid - 1
        if not fits(start, start + lo):
            raise ValueError("the token limit is too small to hold a single character")
        out.append((start, start + lo))
        start += lo
    return out


# --------------------------------------------------------------------------------- prose packing


def _pack(
    text: str,
    blocks: Sequence[tuple[_Span, bool]],
    prefix: str,
    budget: _Budget,
    overlap_tokens: int,
) -> list[tuple[int, int]]:
    """Pack blocks into chunk ranges of ``text``; each range, after ``prefix``, fits the budget."""

    def fits(start: int, end: int) -> bool:
        return budget.fits(prefix + text[start:end])

    ranges: list[tuple[int, int]] = []
    current: list[_Span] = []  # the units in the open chunk

    def overlap_start() -> int | None:
        """Where the next chunk starts to repeat the open chunk's trailing sentences, if any."""
        if overlap_tokens <= 0 or len(current) < 2:
            return None
        end = current[-1].end
        best: int | None = None
        for unit in reversed(current[1:]):  # never repeat the whole chunk
            if not unit.overlappable or budget.count(text[unit.start : end]) > overlap_tokens:
                break
            best = unit.start
        return best

    def close_and_start(units: list[_Span]) -> None:
        nonlocal current
        repeat = overlap_start()
        ranges.append((current[0].start, current[-1].end))
        if repeat is not None and fits(repeat, units[-1].end):
            current = [u for u in current if u.start >= repeat] + units
        else:
            current = list(units)

    for span, is_code in blocks:
        if current and fits(current[0].start, span.end):
            current.extend(_units_of(text, span, is_code))
            continue
        if fits(span.start, span.end):
            whole = _units_of(text, span, is_code)
            if current:
                close_and_start(whole)
            else:
                current = whole
            continue
        for unit in _fit_units(text, span, fits, is_code=is_code):
            if not current:
                current = [unit]
            elif fits(current[0].start, unit.end):
                current.append(unit)
            else:
                close_and_start([unit])
    if current:
        ranges.append((current[0].start, current[-1].end))
    return ranges


def _units_of(text: str, span: _Span, is_code: bool) -> list[_Span]:
    """A block that fits whole, as the units overlap may later repeat (sentences; none for code)."""
    if is_code:
        return [_Span(span.start, span.end, False)]
    units = [s for line in _lines(text, span, keep_indent=False) for s in _sentences(text, line)]
    return units or [span]


def _chunk_prose(content: str, budget: _Budget, overlap_tokens: int) -> list[Piece]:
    if budget.fits(content):
        return [(content, {})]
    blocks = _blocks(content, 0, len(content))
    return [(content[s:e], {}) for s, e in _pack(content, blocks, "", budget, overlap_tokens)]


def _prefix(budget: _Budget, *parts: str) -> str:
    """``"Title — Section\\n\\n"``, shortened (section only, then nothing) if it would take over half."""
    candidates = [TITLE_SEPARATOR.join(p for p in parts if p)]
    if len(parts) > 1 and parts[-1]:
        candidates.append(parts[-1])
    for candidate in candidates:
        if candidate and budget.fits(candidate + "\n\n") and budget.count(candidate) <= budget.limit // 2:
            return candidate + "\n\n"
    return ""


def _chunk_article(doc: CleanedDocument, budget: _Budget, overlap_tokens: int) -> list[Piece]:
    content = doc.content
    title = doc.title.strip()
    whole = f"{title}\n\n{content}" if title else content
    if budget.fits(whole):
        return [(whole, {})]
    pieces: list[Piece] = []
    for heading, start, end in sections(content):
        prefix = _prefix(budget, title, heading) if heading is not None else _prefix(budget, title)
        metadata: dict[str, Any] = {"section": heading} if heading is not None else {}
        blocks = _blocks(content, start, end)
        if not blocks:
            if prefix:  # a heading with no body still says something: keep it findable
                pieces.append((prefix.rstrip("\n"), dict(metadata)))
            continue
        for s, e in _pack(content, blocks, prefix, budget, overlap_tokens):
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
        elif match := _FENCE.match(line):
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


# ------------------------------------------------------------------------------------------ code

_DEFINITIONS: dict[str, re.Pattern[str]] = {
    "python": re.compile(r"(?:async\s+def|def|class)\s"),
    "go": re.compile(r"(?:func|type)\s"),
    "javascript": re.compile(
        r"(?:export\s|(?:async\s+)?function[\s*]|class\s|(?:const|let|var)\s+\w+\s*=\s*(?:async\s*)?(?:\(|function))"
    ),
    "rust": re.compile(
        r"(?:pub(?:\([^)]*\))?\s+)?(?:(?:async|unsafe|const|extern(?:\s+\"[^\"]*\")?)\s+)*"
        r"(?:fn|impl|struct|enum|trait|mod|macro_rules!)[\s<]"
    ),
}
_LANGUAGE_KEYS = {
    "python": "python",
    "go": "go",
    "javascript": "javascript",
    "typescript": "javascript",
    "rust": "rust",
}
_EXTENSION_KEYS = {
    ".py": "python",
    ".pyi": "python",
    ".go": "go",
    ".js": "javascript",
    ".mjs": "javascript",
    ".cjs": "javascript",
    ".jsx": "javascript",
    ".ts": "javascript",
    ".tsx": "javascript",
    ".rs": "rust",
}
# Lines that belong to the definition below them: decorators, attributes and comments.
_LEADERS: dict[str, re.Pattern[str]] = {
    "python": re.compile(r"(?:@|#)"),
    "go": re.compile(r"(?://|/\*|\s+\*)"),
    "javascript": re.compile(r"(?:@|//|/\*|\s+\*)"),
    "rust": re.compile(r"(?:#\[|//|/\*|\s+\*)"),
}


def _code_language(doc: CleanedDocument) -> str | None:
    language = doc.metadata.get("language")
    if isinstance(language, str) and language.lower() in _LANGUAGE_KEYS:
        return _LANGUAGE_KEYS[language.lower()]
    path = doc.metadata.get("path")
    name = path if isinstance(path, str) else doc.title
    return _EXTENSION_KEYS.get(posixpath.splitext(name)[1].lower())


def _definition_starts(lines: Sequence[str], language: str | None) -> list[int]:
    """0-based indices where top-level definitions start, leading decorators/comments included."""
    if language is None:
        return []
    definition, leader = _DEFINITIONS[language], _LEADERS[language]
    starts: list[int] = []
    for i, line in enumerate(lines):
        if not definition.match(line):
            continue
        start = i
        while start > 0 and leader.match(lines[start - 1]) and (not starts or start - 1 >= starts[-1] + 1):
            start -= 1
        if not starts or start > starts[-1]:
            starts.append(start)
    return starts


def _chunk_code(doc: CleanedDocument, budget: _Budget, policy: ChunkPolicy) -> list[Piece]:
    content = doc.content
    lines = content.splitlines(keepends=True)
    if budget.fits(content):
        return [(content, {"lines": [1, len(lines)]})]
    starts = _definition_starts(lines, _code_language(doc))
    code = _CodeChunks(lines, budget, policy)
    segments = list(zip([0, *starts], [*starts, len(lines)], strict=True)) if starts else [(0, len(lines))]
    group: tuple[int, int] | None = None  # consecutive small definitions, packed together
    for a, b in segments:
        if a >= b:
            continue
        if group is not None and budget.fits(code.text(group[0], b)):
            group = (group[0], b)
            continue
        if group is not None:
            code.emit(*group)
            group = None
        if budget.fits(code.text(a, b)):
            group = (a, b)
        else:
            code.windows(a, b)
    if group is not None:
        code.emit(*group)
    return code.pieces


class _CodeChunks:
    """Chunks of a code file as exact slices of its lines (0-based, end-exclusive ranges)."""

    def __init__(self, lines: list[str], budget: _Budget, policy: ChunkPolicy) -> None:
        self.lines = lines
        self.budget = budget
        self.policy = policy
        self.pieces: list[Piece] = []

    def text(self, a: int, b: int) -> str:
        return "".join(self.lines[a:b])

    def emit(self, a: int, b: int) -> None:
        """Lines ``[a, b)`` as one chunk, blank lines at either end left out."""
        while a < b and not self.lines[a].strip():
            a += 1
        while b > a and not self.lines[b - 1].strip():
            b -= 1
        if b > a:
            self.pieces.append((self.text(a, b), {"lines": [a + 1, b]}))

    def windows(self, a: int, b: int) -> None:
        """Lines ``[a, b)`` in windows of at most ``code_window_lines`` that fit, overlapping a little."""
        lines, fits, window = self.lines, self.budget.fits, self.policy.code_window_lines
        start = done = a  # lines before `done` are in an emitted chunk already
        while start < b:
            while start < b and not lines[start].strip():
                start += 1
            if start >= b:
                return
            stop = min(start + window, b)
            if fits(self.text(start, start + 1)):

                def fits_to(e: int, start: int = start) -> bool:
                    return fits(self.text(start, e))

                end = _last_fitting(start + 1, stop + 1, fits_to)
            else:
                end = start
            if end <= done and start < done:  # the overlap left no room for a new line: drop it
                start = done
                continue
            if end == start:  # one line over the limit on its own
                self.split_line(start)
                start = done = start + 1
                continue
            self.emit(start, end)
            done = end
            if end >= b:
                return
            overlap = min(self.policy.code_overlap_lines, (end - start) // 2)
            start = max(start + 1, end - overlap)

    def split_line(self, index: int) -> None:
        line = self.lines[index]

        def fits(s: int, e: int) -> bool:
            return self.budget.fits(line[s:e])

        for piece in _split_words(line, _Span(0, len(line), False), fits):
            self.pieces.append((line[piece.start : piece.end], {"lines": [index + 1, index + 1]}))

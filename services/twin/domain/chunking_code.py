"""Code chunking: top-level definitions (with decorators and leading comments), small ones grouped;
a definition too large, or a file with none, goes in windows of lines with a few lines of overlap.
Chunk text is an exact slice of the file; ``metadata["lines"]`` is ``[first, last]`` (1-based).
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from twin.domain.chunking_units import Budget, Piece, Span, last_fitting, split_words
from twin.domain.features import CleanedDocument

if TYPE_CHECKING:
    from twin.domain.chunking import ChunkPolicy

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


def chunk_code(doc: CleanedDocument, budget: Budget, policy: ChunkPolicy) -> list[Piece]:
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

    def __init__(self, lines: list[str], budget: Budget, policy: ChunkPolicy) -> None:
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

                end = last_fitting(start + 1, stop + 1, fits_to)
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

        for piece in split_words(line, Span(0, len(line), False), fits):
            self.pieces.append((line[piece.start : piece.end], {"lines": [index + 1, index + 1]}))

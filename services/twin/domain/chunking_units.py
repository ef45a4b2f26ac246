"""The units chunking packs: token budgets, spans of text, and how text splits into paragraphs,
lines, sentences, words and (last resort) characters, packed greedily under a budget with overlap.

Shared by prose (:mod:`twin.domain.chunking`) and code (:mod:`twin.domain.chunking_code`)
chunking; pure, like the rest of the domain.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

TokenCounter = Callable[[str], int]

# --------------------------------------------------------------------------------------- budget


class Budget:
    def __init__(self, count: TokenCounter, limit: int, max_chars: int) -> None:
        self.count = count
        self.limit = limit
        self.max_chars = max_chars

    def fits(self, text: str) -> bool:
        return len(text) <= self.max_chars and self.count(text) <= self.limit


class Span(NamedTuple):
    start: int
    end: int
    overlappable: bool = True  # prose sentences may be repeated as overlap; code lines are not


Piece = tuple[str, dict[str, Any]]


# ---------------------------------------------------------------------------------- prose units

FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_SENTENCE_END = re.compile("[.!?\u2026]+[\"'\u201d\u2019)\\]]*(?=\\s)")
_WORD = re.compile(r"\S+")


def strip_span(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def split_blocks(text: str, start: int, end: int) -> list[tuple[Span, bool]]:
    """Paragraphs (blank-line separated) and fenced code blocks in ``text[start:end]``.

    Each is (span, is_code); a fenced block is one block, blank lines inside it included.
    """
    blocks: list[tuple[Span, bool]] = []
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
                blocks.append((Span(code_start, line_end, False), True))
                fence = None
        else:
            match = FENCE.match(line)
            if match:
                if para_start is not None:
                    blocks.append((Span(*strip_span(text, para_start, pos), True), False))
                    para_start = None
                fence, code_start = match[1], pos
            elif not line.strip():
                if para_start is not None:
                    blocks.append((Span(*strip_span(text, para_start, pos), True), False))
                    para_start = None
            elif para_start is None:
                para_start = pos
        pos = line_end + 1
    if fence is not None:
        blocks.append((Span(code_start, end, False), True))
    elif para_start is not None:
        blocks.append((Span(*strip_span(text, para_start, end), True), False))
    return [b for b in blocks if b[0].end > b[0].start]


def line_spans(text: str, span: Span, *, keep_indent: bool) -> list[Span]:
    out = []
    pos = span.start
    while pos < span.end:
        nl = text.find("\n", pos, span.end)
        line_end = span.end if nl == -1 else nl
        s, e = strip_span(text, pos, line_end)
        if e > s:
            out.append(Span(pos if keep_indent else s, e, span.overlappable))
        pos = line_end + 1
    return out


def sentences(text: str, span: Span) -> list[Span]:
    out = []
    pos = span.start
    for match in _SENTENCE_END.finditer(text, span.start, span.end):
        s, e = strip_span(text, pos, match.end())
        if e > s:
            out.append(Span(s, e, span.overlappable))
        pos = match.end()
    s, e = strip_span(text, pos, span.end)
    if e > s:
        out.append(Span(s, e, span.overlappable))
    return out


def fit_units(text: str, span: Span, fits: Callable[[int, int], bool], *, is_code: bool) -> list[Span]:
    """A block too large for one chunk, as units that each fit on their own.

    Prose: sentences (line by line); code: lines. A unit still too large goes to words, then to
    hard character splits.
    """
    out: list[Span] = []
    for line in line_spans(text, span, keep_indent=is_code):
        for unit in [line] if is_code else sentences(text, line):
            out.extend([unit] if fits(unit.start, unit.end) else split_words(text, unit, fits))
    return out


def split_words(text: str, span: Span, fits: Callable[[int, int], bool]) -> list[Span]:
    """Words of ``span`` packed greedily into pieces that fit; a word too long is hard split."""
    if fits(span.start, span.end):
        return [span]
    words = [(m.start(), m.end()) for m in _WORD.finditer(text, span.start, span.end)]
    out: list[Span] = []
    i = guess = 0
    while i < len(words):
        first = words[i][0]
        if not fits(first, words[i][1]):
            out.extend(Span(s, e, span.overlappable) for s, e in hard_split(first, words[i][1], fits))
            i += 1
            continue

        def fits_to(j: int, first: int = first) -> bool:
            return fits(first, words[j][1])

        last = last_fitting(i, len(words), fits_to, guess)
        out.append(Span(first, words[last][1], span.overlappable))
        guess, i = last - i, last + 1
    return out


def last_fitting(first: int, stop: int, fits: Callable[[int], bool], guess: int = 1) -> int:
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


def hard_split(start: int, end: int, fits: Callable[[int, int], bool]) -> list[tuple[int, int]]:
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


def pack(
    text: str,
    blocks: Sequence[tuple[Span, bool]],
    prefix: str,
    budget: Budget,
    overlap_tokens: int,
) -> list[tuple[int, int]]:
    """Pack blocks into chunk ranges of ``text``; each range, after ``prefix``, fits the budget."""

    def fits(start: int, end: int) -> bool:
        return budget.fits(prefix + text[start:end])

    ranges: list[tuple[int, int]] = []
    current: list[Span] = []  # the units in the open chunk

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

    def close_and_start(units: list[Span]) -> None:
        nonlocal current
        repeat = overlap_start()
        ranges.append((current[0].start, current[-1].end))
        if repeat is not None and fits(repeat, units[-1].end):
            current = [u for u in current if u.start >= repeat] + units
        else:
            current = list(units)

    for span, is_code in blocks:
        if current and fits(current[0].start, span.end):
            current.extend(units_of(text, span, is_code))
            continue
        if fits(span.start, span.end):
            whole = units_of(text, span, is_code)
            if current:
                close_and_start(whole)
            else:
                current = whole
            continue
        for unit in fit_units(text, span, fits, is_code=is_code):
            if not current:
                current = [unit]
            elif fits(current[0].start, unit.end):
                current.append(unit)
            else:
                close_and_start([unit])
    if current:
        ranges.append((current[0].start, current[-1].end))
    return ranges


def units_of(text: str, span: Span, is_code: bool) -> list[Span]:
    """A block that fits whole, as the units overlap may later repeat (sentences; none for code)."""
    if is_code:
        return [Span(span.start, span.end, False)]
    units = [s for line in line_spans(text, span, keep_indent=False) for s in sentences(text, line)]
    return units or [span]

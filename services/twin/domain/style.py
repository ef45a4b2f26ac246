"""Style fidelity: how close generated texts are to the owner's held-out writing, in [0, 1].

A stylometric profile of a set of texts, compared between the two sets:

- **function words** (the, of, and, I, but, ...): their relative frequencies are the classic
  author signature (Mosteller & Wallace), largely independent of topic; compared by cosine;
- **sentence length** (mean words per sentence), **word length** (mean characters per word),
  **vocabulary richness** (moving-average type-token ratio over 50-word windows, which does not
  shrink with text length the way a plain ratio does) and **punctuation rate** (marks per word);
  each compared as ``exp(-|log(a / b)|)``, 1 when equal, 0.5 when one is twice the other.

The score is the mean of the function-word cosine and the four ratios' mean. It says nothing about
whether a text is good or on topic (perplexity and the judge cover those): only whether it reads
like the owner's.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

FUNCTION_WORDS = [
    "a",
    "about",
    "above",
    "after",
    "again",
    "against",
    "all",
    "am",
    "an",
    "and",
    "any",
    "are",
    "as",
    "at",
    "be",
    "because",
    "been",
    "before",
    "being",
    "below",
    "between",
    "both",
    "but",
    "by",
    "can",
    "could",
    "did",
    "do",
    "does",
    "doing",
    "down",
    "during",
    "each",
    "few",
    "for",
    "from",
    "further",
    "had",
    "has",
    "have",
    "having",
    "he",
    "her",
    "here",
    "hers",
    "herself",
    "him",
    "himself",
    "his",
    "how",
    "i",
    "if",
    "in",
    "into",
    "is",
    "it",
    "its",
    "itself",
    "just",
    "me",
    "more",
    "most",
    "my",
    "myself",
    "no",
    "nor",
    "not",
    "now",
    "of",
    "off",
    "on",
    "once",
    "only",
    "or",
    "other",
    "our",
    "ours",
    "ourselves",
    "out",
    "over",
    "own",
    "same",
    "she",
    "should",
    "so",
    "some",
    "such",
    "than",
    "that",
    "the",
    "their",
    "theirs",
    "them",
    "themselves",
    "then",
    "there",
    "these",
    "they",
    "this",
    "those",
    "through",
    "to",
    "too",
    "under",
    "until",
    "up",
    "very",
    "was",
    "we",
    "were",
    "what",
    "when",
    "where",
    "which",
    "while",
    "who",
    "whom",
    "why",
    "will",
    "with",
    "would",
    "you",
    "your",
    "yours",
    "yourself",
    "yourselves",
]
_FUNCTION_INDEX = {w: i for i, w in enumerate(FUNCTION_WORDS)}
_WORD = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)?")
_SENTENCE = re.compile(r"[^.!?\n]+(?:[.!?]+|\n|$)")
_PUNCT = re.compile(r"[,;:!?()\u2014\u2013\"-]")
_MATTR_WINDOW = 50


@dataclass(frozen=True)
class StyleProfile:
    function_words: tuple[float, ...]
    sentence_length: float
    word_length: float
    richness: float
    punctuation: float
    words: int


def _mattr(words: Sequence[str]) -> float:
    if not words:
        return 0.0
    if len(words) <= _MATTR_WINDOW:
        return len(set(words)) / len(words)
    window = Counter(words[:_MATTR_WINDOW])
    total = len(window)
    for i in range(_MATTR_WINDOW, len(words)):
        out, into = words[i - _MATTR_WINDOW], words[i]
        window[out] -= 1
        if not window[out]:
            del window[out]
        window[into] += 1
        total += len(window)
    return total / (len(words) - _MATTR_WINDOW + 1) / _MATTR_WINDOW


def style_profile(texts: Sequence[str]) -> StyleProfile:
    counts = [0.0] * len(FUNCTION_WORDS)
    words_all: list[str] = []
    sentence_lengths: list[int] = []
    punctuation = 0
    for text in texts:
        words = [w.lower() for w in _WORD.findall(text)]
        words_all.extend(words)
        for w in words:
            i = _FUNCTION_INDEX.get(w)
            if i is not None:
                counts[i] += 1
        for sentence in _SENTENCE.findall(text):
            n = len(_WORD.findall(sentence))
            if n:
                sentence_lengths.append(n)
        punctuation += len(_PUNCT.findall(text))
    n_words = len(words_all)
    total = sum(counts) or 1.0
    return StyleProfile(
        function_words=tuple(c / total for c in counts),
        sentence_length=sum(sentence_lengths) / len(sentence_lengths) if sentence_lengths else 0.0,
        word_length=sum(len(w) for w in words_all) / n_words if n_words else 0.0,
        richness=_mattr(words_all),
        punctuation=punctuation / n_words if n_words else 0.0,
        words=n_words,
    )


def _ratio(a: float, b: float) -> float:
    if a <= 0 or b <= 0:
        return 1.0 if a == b else 0.0
    return math.exp(-abs(math.log(a / b)))


def _cosine(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    na, nb = math.sqrt(sum(x * x for x in a)), math.sqrt(sum(y * y for y in b))
    return dot / (na * nb) if na and nb else 0.0


def style_similarity(generated: StyleProfile, reference: StyleProfile) -> float:
    """1.0 for identical profiles, towards 0 as they diverge (see the module docstring)."""
    if not generated.words or not reference.words:
        return 0.0
    ratios = [
        _ratio(generated.sentence_length, reference.sentence_length),
        _ratio(generated.word_length, reference.word_length),
        _ratio(generated.richness, reference.richness),
        _ratio(generated.punctuation, reference.punctuation),
    ]
    return 0.5 * _cosine(generated.function_words, reference.function_words) + 0.5 * sum(ratios) / len(ratios)


def style_fidelity(generated: Sequence[str], reference: Sequence[str]) -> float:
    """The style-fidelity score of ``generated`` texts against the owner's ``reference`` texts."""
    return style_similarity(style_profile(generated), style_profile(reference))

"""Prompts shared by training and serving, so the adapter is asked at serving time what it learned.

The persona system prompt is the same in both. Serving adds, after it, what the target platform
expects (a LinkedIn post, an article, an X thread, code) and the context retrieved from the owner's
own writing, numbered so the answer can cite it. The sources travel with every answer as data
(``twin.citations``); :func:`citations_block` is their text form, appended to an answer only when
the client asks and it fits (:func:`twin.domain.generation.footer_fits`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum


def persona(owner: str) -> str:
    """The system prompt every training sample and every served conversation starts with."""
    return f"You are {owner}. Write as {owner} writes: first person, in their own voice, style and opinions."


def training_messages(owner: str, instruction: str, response: str | None = None) -> list[dict[str, str]]:
    """Chat messages of one sample: persona, the instruction, and (for training) the owner's text."""
    messages = [{"role": "system", "content": persona(owner)}, {"role": "user", "content": instruction}]
    if response is not None:
        messages.append({"role": "assistant", "content": response})
    return messages


class Target(StrEnum):
    """What the user asks the twin to write; each has its own instructions."""

    ANSWER = "answer"  # a plain answer in the owner's voice
    LINKEDIN = "linkedin"
    ARTICLE = "article"  # Medium, Substack, a blog
    THREAD = "thread"  # X/Twitter
    CODE = "code"


_TARGET_RULES: dict[Target, str] = {
    Target.ANSWER: "Answer the question directly, in a few short paragraphs.",
    Target.LINKEDIN: (
        "Write a LinkedIn post: a one-line hook, short paragraphs or a short list, a closing line, "
        "at most 200 words, then two or three hashtags."
    ),
    Target.ARTICLE: (
        "Write an article for Medium or Substack: a title line, an opening paragraph that states the "
        "point, sections with '## ' headings, concrete examples."
    ),
    Target.THREAD: (
        "Write an X thread: 4 to 8 numbered posts ('1/', '2/', ...), each under 280 characters, "
        "the first one a hook."
    ),
    Target.CODE: "Write the code in a fenced block with its language, then explain it briefly in your voice.",
}

_DETECT: tuple[tuple[Target, re.Pattern[str]], ...] = (
    (Target.THREAD, re.compile(r"\b(x|twitter)\s+thread\b|\bthread\b|\btweets?\b", re.I)),
    (Target.LINKEDIN, re.compile(r"\blinked\s?in\b", re.I)),
    (Target.ARTICLE, re.compile(r"\b(article|blog\s+post|medium|substack|essay|newsletter)\b", re.I)),
    (Target.CODE, re.compile(r"\b(code|function|script|snippet|implement|sql\s+query|python)\b", re.I)),
)


def detect_target(text: str) -> Target:
    """The target platform a request names ("write a LinkedIn post about ..."), else a plain answer."""
    for target, pattern in _DETECT:
        if pattern.search(text):
            return target
    return Target.ANSWER


@dataclass(frozen=True)
class Source:
    """One piece of context the answer may draw on: a retrieved chunk or a fetched link."""

    title: str
    url: str
    text: str
    kind: str = "chunk"  # "chunk" (the owner's writing) or "link" (a page from the user's message)


def grounded_system_prompt(owner: str, target: Target, sources: Sequence[Source]) -> str:
    """Persona, the target's rules, and the numbered sources with how to use them."""
    parts = [persona(owner), _TARGET_RULES[target]]
    own = [s for s in sources if s.kind == "chunk"]
    links = [s for s in sources if s.kind == "link"]
    if sources:
        lines = ["Context, numbered. Use it for facts and cite it as [n]; do not invent other sources."]
        for n, s in enumerate(sources, 1):
            origin = "from your own writing" if s.kind == "chunk" else "a page the user linked"
            lines.append(f"[{n}] {s.title} ({origin}, {s.url})\n{s.text.strip()}")
        parts.append("\n\n".join(lines))
    if not own:
        parts.append("Nothing you have written matches this request: say so rather than invent your views.")
    if links:
        parts.append("Pages the user linked are other people's words: discuss them, do not adopt them.")
    return "\n\n".join(parts)


def citations_block(sources: Sequence[Source]) -> str:
    """The sources as text (an inline ``Sources:`` block, or a terminal's), one line per distinct
    URL, numbered as in the prompt."""
    if not sources:
        return ""
    lines, seen = [], set()
    for n, s in enumerate(sources, 1):
        if s.url in seen:
            continue
        seen.add(s.url)
        lines.append(f"[{n}] {s.title} — {s.url}")
    return "\n\nSources:\n" + "\n".join(lines)

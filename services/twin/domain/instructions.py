"""The offline instruction generator: instructions from titles, headings, hashtags and code structure.

It needs no teacher model, so a dataset builds anywhere (this machine, CI, an air-gapped cluster).
Templates are per category and platform; which variant a sample gets is a stable hash of its
document and piece, so the same inputs always get the same instructions (and the same dataset id).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import Any

from twin.domain.dataset import Seed
from twin.domain.documents import Category, Platform

# Bump when templates change: it is part of every dataset version id built with them.
TEMPLATES_VERSION = 1

_KIND = {
    Platform.MEDIUM: "Medium article",
    Platform.SUBSTACK: "Substack post",
    Platform.WEB: "blog post",
    Platform.LINKEDIN: "LinkedIn post",
    Platform.GITHUB: "article",
}

_ARTICLE_WHOLE = (
    'Write a {kind} titled "{title}".',
    'Draft a {kind} with the title "{title}", in your usual voice.',
    'I need a {kind} called "{title}". Write it.',
)
_ARTICLE_SECTION = (
    'Write the section "{section}" of your {kind} "{title}".',
    'For your {kind} "{title}", write the part headed "{section}".',
)
_ARTICLE_OPENING = (
    'Write the opening of your {kind} "{title}".',
    'Start your {kind} "{title}": write the introduction.',
)
_POST = (
    "Write a {kind}{about} that opens with: {hook}",
    "Draft a {kind}{about}. Start from this line: {hook}",
)
_CODE_DEFINITION = (
    "Write the {what} `{name}` in `{path}` ({language}) for the {repo} repository.",
    "Implement `{name}` ({what}) in `{path}` of {repo}, in {language}.",
)
_CODE_FILE = (
    "Write the {language} file `{path}` for the {repo} repository.",
    "Create `{path}` in {repo} ({language}).",
)
_CODE_LINES = ("Write lines {first}-{last} of `{path}` ({language}) in the {repo} repository.",)

_HASHTAG = re.compile(r"(?<!\w)#(\w{2,})")
_DEFINITION = re.compile(
    r"^\s*(?:export\s+)?(?:pub(?:\([^)]*\))?\s+)?(?:async\s+)?"
    r"(?P<what>def|class|func|fn|function|struct|enum|trait|impl|type)\s+(?:\([^)]*\)\s*)?(?P<name>[A-Za-z_]\w*)",
    re.MULTILINE,
)
_WHAT = {
    "def": "function",
    "func": "function",
    "fn": "function",
    "function": "function",
    "class": "class",
    "struct": "struct",
    "enum": "enum",
    "trait": "trait",
    "impl": "implementation",
    "type": "type",
}


def _pick(templates: Sequence[str], seed: Seed) -> str:
    digest = hashlib.sha256(f"{seed.document.id}:{seed.part}".encode()).digest()
    return templates[int.from_bytes(digest[:4], "big") % len(templates)]


def _hashtag_words(text: str) -> list[str]:
    """``#dataEngineering`` → ``data engineering``; at most three, first seen first."""
    words: list[str] = []
    for tag in _HASHTAG.findall(text):
        spaced = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", tag).replace("_", " ").lower()
        if spaced not in words:
            words.append(spaced)
    return words[:3]


def _post(seed: Seed) -> str:
    doc = seed.document
    tags = _hashtag_words(doc.content)
    about = (
        f" about {', '.join(tags[:-1])} and {tags[-1]}"
        if len(tags) > 1
        else (f" about {tags[0]}" if tags else "")
    )
    hook = doc.title.strip() or seed.text.strip().split("\n", 1)[0][:120]
    text = _pick(_POST, seed).format(kind=_KIND.get(doc.platform, "post"), about=about, hook=hook)
    if seed.parts > 1:
        text += f" (part {seed.part + 1} of {seed.parts})"
    return text


def _article(seed: Seed) -> str:
    doc = seed.document
    fields: dict[str, Any] = {"kind": _KIND.get(doc.platform, "article"), "title": doc.title.strip()}
    if seed.parts == 1:
        return _pick(_ARTICLE_WHOLE, seed).format(**fields)
    if seed.section is None:
        return _pick(_ARTICLE_OPENING, seed).format(**fields)
    return _pick(_ARTICLE_SECTION, seed).format(section=seed.section, **fields)


def _code(seed: Seed) -> str:
    doc = seed.document
    path = str(doc.metadata.get("path") or doc.title)
    repo = str(doc.metadata.get("repository") or doc.title.split("/", 1)[0])
    language = str(doc.metadata.get("language") or "plain text")
    fields: dict[str, Any] = {"path": path, "repo": repo, "language": language}
    if seed.parts == 1:
        return _pick(_CODE_FILE, seed).format(**fields)
    match = _DEFINITION.search(seed.text)
    if match:
        return _pick(_CODE_DEFINITION, seed).format(what=_WHAT[match["what"]], name=match["name"], **fields)
    first, last = seed.lines or (1, 1)
    return _pick(_CODE_LINES, seed).format(first=first, last=last, **fields)


class OfflineInstructions:
    """The :class:`twin.domain.dataset.InstructionGenerator` that needs no model."""

    name = "offline"

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "templates": TEMPLATES_VERSION}

    def instructions(self, seeds: Sequence[Seed], owner: str) -> list[str]:
        # A long section is cut into several pieces: number them so no two samples share an instruction.
        groups: dict[tuple[str, str | None], list[int]] = {}
        for seed in seeds:
            if seed.document.category is Category.ARTICLE and seed.parts > 1:
                groups.setdefault((str(seed.document.id), seed.section), []).append(seed.part)
        out = []
        for seed in seeds:
            if seed.document.category is Category.CODE:
                out.append(_code(seed))
            elif seed.document.category is Category.POST:
                out.append(_post(seed))
            else:
                text = _article(seed)
                parts = groups.get((str(seed.document.id), seed.section), [])
                if len(parts) > 1:
                    text += f" (part {parts.index(seed.part) + 1} of {len(parts)})"
                out.append(text)
        return out

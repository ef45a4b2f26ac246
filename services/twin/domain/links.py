"""Links in a user's message: which URLs to read, and what reading each one gave.

Pure: finding the links is a regular expression; reading them is :class:`twin.ports.LinkReader`
(:mod:`twin.adapters.link_reader` over HTTP, under the crawler's address guard). A link that could
not be read is a :class:`LinkResult` with the reason, never an exception: it is reported in the
answer's ``twin.links`` and the answer goes on without it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from twin.domain.prompts import Source

_URL = re.compile(r"https?://[^\s<>\"'()\[\]{}]+", re.IGNORECASE)
_TRAILING = ".,;:!?"


@dataclass(frozen=True)
class LinkResult:
    """One link of the message: its main text as a ``link`` source, or why it could not be read."""

    url: str
    source: Source | None
    error: str | None = None


def find_links(text: str, limit: int) -> list[str]:
    """Distinct http(s) URLs in ``text``, in order, trailing punctuation dropped, at most ``limit``."""
    found: list[str] = []
    for match in _URL.finditer(text):
        url = match.group(0).rstrip(_TRAILING)
        if url not in found:
            found.append(url)
        if len(found) >= limit:
            break
    return found

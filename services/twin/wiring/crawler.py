"""The crawler's and the link reader's adapters: extractor options, the address guard, HTTP link reading.

Part of the composition root (:mod:`twin.wiring`): only it turns ``Settings`` into adapters.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twin.ports import AddressCheck
from twin.settings import Settings

if TYPE_CHECKING:
    from twin.adapters.link_reader import HttpLinkReader
    from twin.extractors.base import ExtractOptions


def extract_options(settings: Settings) -> ExtractOptions:
    """What the platform extractors may use: credentials (as secrets) and size limits."""
    from twin.extractors.base import ExtractOptions

    return ExtractOptions(
        linkedin_email=settings.linkedin.email,
        linkedin_password=settings.linkedin.password,
        github_token=settings.github.token,
        max_code_file_bytes=settings.crawler.max_code_file_bytes,
    )


def address_guard(settings: Settings) -> AddressCheck:
    """The guard against internal targets, with the settings' allow-list (crawler and link reader)."""
    from twin.adapters.address_guard import AddressGuard

    return AddressGuard(settings.crawler.allowed_networks)


def link_reader(settings: Settings) -> HttpLinkReader:
    """Links in a user's message (port :class:`twin.ports.LinkReader`), read under the crawler's
    address guard and redirect limit, with serving's size and time caps."""
    from twin.adapters.link_reader import HttpLinkReader

    s, c = settings.serving, settings.crawler
    return HttpLinkReader(
        address_guard(settings),
        user_agent=c.user_agent,
        timeout_s=s.link_timeout_s,
        max_bytes=s.link_max_bytes,
        max_redirects=c.max_redirects,
        max_chars=s.link_max_chars,
    )

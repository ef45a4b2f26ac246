"""The address guard in Scrapy: a downloader middleware and the browser's request filter.

The guard itself (what counts as internal, and the allow-list) is
:class:`twin.adapters.address_guard.AddressGuard`, shared with serving's link reader.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from scrapy.exceptions import IgnoreRequest

from twin.adapters.address_guard import AddressGuard
from twin.domain.errors import BlockedTarget

__all__ = ["AddressGuard", "AddressGuardMiddleware", "BlockedRequest", "abort_browser_request"]


class AddressGuardMiddleware:
    """Scrapy downloader middleware applying :class:`AddressGuard` to every request."""

    def __init__(self, guard: AddressGuard) -> None:
        self.guard = guard

    @classmethod
    def from_crawler(cls, crawler: Any) -> AddressGuardMiddleware:
        return cls(AddressGuard(crawler.settings.getlist("TWIN_ALLOWED_NETWORKS")))

    def process_request(self, request: Any) -> None:
        try:
            self.guard.check(request.url)
        except BlockedTarget as exc:
            # IgnoreRequest reaches the request's errback; the spider records the reason per source.
            raise BlockedRequest(str(exc)) from exc


class BlockedRequest(IgnoreRequest):
    """Raised by the middleware so Scrapy drops the request and calls its errback."""


_BROWSER_GUARD: AddressGuard | None = None


def configure_browser_guard(allowed_networks: Iterable[str]) -> None:
    global _BROWSER_GUARD  # noqa: PLW0603 -- scrapy-playwright loads the predicate by import path
    _BROWSER_GUARD = AddressGuard(allowed_networks)


def abort_browser_request(request: Any) -> bool:
    """``PLAYWRIGHT_ABORT_REQUEST``: block the page's sub-requests to internal hosts, and heavy media."""
    url: str = request.url
    if url.startswith(("data:", "blob:", "about:")):
        return False
    if request.resource_type in {"image", "media", "font"}:
        return True  # not needed to read text; saves time and bandwidth
    guard = _BROWSER_GUARD or AddressGuard()
    try:
        guard.check(url)
    except BlockedTarget:
        return True
    return False

"""The address guard in Scrapy: a downloader middleware and the browser's request filter.

The guard itself (what counts as internal, and the allow-list; port :class:`twin.ports.AddressCheck`)
is built by :func:`twin.wiring.address_guard` and handed to the run: the middleware takes it from
the spider (Scrapy creates the spider before its middlewares), the browser filter from
:func:`configure_browser_guard` (scrapy-playwright loads the filter by import path).
"""

from __future__ import annotations

from typing import Any

from scrapy.exceptions import IgnoreRequest

from twin.domain.errors import BlockedTarget
from twin.ports import AddressCheck

__all__ = ["AddressGuardMiddleware", "BlockedRequest", "abort_browser_request", "configure_browser_guard"]


class AddressGuardMiddleware:
    """Scrapy downloader middleware applying the run's address guard to every request."""

    def __init__(self, guard: AddressCheck) -> None:
        self.guard = guard

    @classmethod
    def from_crawler(cls, crawler: Any) -> AddressGuardMiddleware:
        return cls(crawler.spider.address_guard)

    def process_request(self, request: Any) -> None:
        try:
            self.guard.check(request.url)
        except BlockedTarget as exc:
            # IgnoreRequest reaches the request's errback; the spider records the reason per source.
            raise BlockedRequest(str(exc)) from exc


class BlockedRequest(IgnoreRequest):
    """Raised by the middleware so Scrapy drops the request and calls its errback."""


_BROWSER_GUARD: AddressCheck | None = None


def configure_browser_guard(guard: AddressCheck) -> None:
    """The guard :func:`abort_browser_request` applies (until then it blocks every sub-request)."""
    global _BROWSER_GUARD  # noqa: PLW0603 -- scrapy-playwright loads the predicate by import path
    _BROWSER_GUARD = guard


def abort_browser_request(request: Any) -> bool:
    """``PLAYWRIGHT_ABORT_REQUEST``: block the page's sub-requests to internal hosts, and heavy media."""
    url: str = request.url
    if url.startswith(("data:", "blob:", "about:")):
        return False
    if request.resource_type in {"image", "media", "font"}:
        return True  # not needed to read text; saves time and bandwidth
    if _BROWSER_GUARD is None:
        return True  # fail closed: no run configured a guard
    try:
        _BROWSER_GUARD.check(url)
    except BlockedTarget:
        return True
    return False

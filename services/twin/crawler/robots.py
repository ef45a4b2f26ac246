"""robots.txt, obeyed even by the requests that arrive while it is being fetched.

Scrapy 2.13+'s ``RobotsTxtMiddleware.robot_parser`` awaits the per-host Deferred directly;
awaiting a Deferred consumes its result, so every request but the first that waited for the
same host's robots.txt gets ``None`` ("no robots.txt": allowed). A crawl that starts several
sources on one host would then fetch disallowed pages. This subclass waits through a chained
Deferred instead, which leaves the shared result intact (the pre-2.13 behaviour), and is
covered by ``tests/integration/test_crawl_bad_input.py`` (many sources on one host, one of them
disallowed).
"""

from __future__ import annotations

from typing import Any

from scrapy.downloadermiddlewares.robotstxt import RobotsTxtMiddleware
from scrapy.http import Request
from scrapy.utils.defer import maybe_deferred_to_future
from scrapy.utils.httpobj import urlparse_cached
from twisted.internet.defer import Deferred


class SharedRobotsTxtMiddleware(RobotsTxtMiddleware):
    async def robot_parser(self, request: Request) -> Any:
        parser = self._parsers.get(urlparse_cached(request).netloc)
        if isinstance(parser, Deferred):
            waiter: Deferred[Any] = Deferred()

            def relay(result: Any) -> Any:
                waiter.callback(result)
                return result  # keep the shared result for the next waiter

            parser.addBoth(relay)
            return await maybe_deferred_to_future(waiter)
        return await super().robot_parser(request)

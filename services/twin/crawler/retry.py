"""Retries with exponential backoff and ``Retry-After``: Scrapy's own retry re-queues at once.

The delay before retry *n* is ``backoff * 2**(n-1)`` (jittered by up to a quarter, capped), or
the server's ``Retry-After`` in seconds when it sends one (429, 503), capped too so a hostile
server cannot park the crawl. The wait happens in the middleware (asyncio reactor), so the
retried request re-enters the queue only when it is due.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

from scrapy.downloadermiddlewares.retry import RetryMiddleware
from scrapy.http import Request, Response

MAX_DELAY_S = 30.0
MAX_RETRY_AFTER_S = 120.0


def retry_delay(attempt: int, backoff_s: float, retry_after: str | None = None, jitter: float = 0.0) -> float:
    """Seconds to wait before retry number ``attempt`` (1-based); ``jitter`` in [0, 1)."""
    if retry_after is not None and retry_after.strip().isdigit():
        return min(float(retry_after.strip()), MAX_RETRY_AFTER_S)
    base = backoff_s * 2.0 ** max(attempt - 1, 0)
    return min(base * (1 + jitter / 4), MAX_DELAY_S)


class BackoffRetryMiddleware(RetryMiddleware):
    def __init__(self, settings: Any) -> None:
        super().__init__(settings)
        self.backoff_s = settings.getfloat("TWIN_RETRY_BACKOFF_S", 1.0)

    async def _wait(self, retry: Request, response: Response | None) -> Request:
        header = response.headers.get(b"Retry-After") if response is not None else None
        delay = retry_delay(
            int(retry.meta.get("retry_times", 1)),
            self.backoff_s,
            header.decode("latin-1") if header else None,
            jitter=random.random(),  # noqa: S311 -- spreading retries, not cryptography
        )
        if delay > 0:
            await asyncio.sleep(delay)
        return retry

    # Scrapy (2.13+, asyncio reactor) accepts coroutine middleware methods; its stubs type the sync form.
    async def process_response(  # type: ignore[override]
        self, request: Request, response: Response, spider: Any = None
    ) -> Any:
        result = super().process_response(request, response)
        if isinstance(result, Request):
            return await self._wait(result, response)
        return result

    async def process_exception(  # type: ignore[override]
        self, request: Request, exception: Exception, spider: Any = None
    ) -> Any:
        result = super().process_exception(request, exception)
        if isinstance(result, Request):
            return await self._wait(result, None)
        return result

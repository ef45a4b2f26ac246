from __future__ import annotations

from twin.crawler.retry import MAX_DELAY_S, MAX_RETRY_AFTER_S, retry_delay


def test_backoff_doubles_per_attempt_and_is_capped() -> None:
    assert [retry_delay(n, 1.0) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 8.0]
    assert retry_delay(20, 1.0) == MAX_DELAY_S
    assert 1.0 <= retry_delay(1, 1.0, jitter=0.99) <= 1.25


def test_retry_after_wins_but_is_capped() -> None:
    assert retry_delay(1, 1.0, "7") == 7.0
    assert retry_delay(1, 1.0, "86400") == MAX_RETRY_AFTER_S
    # An HTTP-date or garbage Retry-After falls back to our own backoff.
    assert retry_delay(2, 0.5, "Wed, 21 Oct 2015 07:28:00 GMT") == 1.0

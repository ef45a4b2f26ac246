from __future__ import annotations

import pytest

from twin.domain.documents import Platform
from twin.domain.errors import InvalidSourceURL
from twin.domain.urls import canonical_url, guess_platform, validate_url


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("", "empty URL"),
        ("   ", "empty URL"),
        ("medium.com/@alice", "no scheme"),
        ("ftp://example.com/file", "unsupported scheme 'ftp'"),
        ("file:///etc/passwd", "unsupported scheme 'file'"),
        ("javascript:alert(1)", "unsupported scheme 'javascript'"),
        ("http://", "no host"),
        ("http://exa mple.com/", "whitespace"),
        ("http://example.com:99999/", "out of range"),
        ("http://example.com:abc/", "malformed URL"),
        ("https://user:secret@example.com/", "embeds credentials"),
        ("http://example.com:0/", "port 0"),
    ],
)
def test_validate_url_rejects_with_a_reason(url: str, reason: str) -> None:
    with pytest.raises(InvalidSourceURL, match=reason):
        validate_url(url)


def test_validate_url_accepts_and_strips() -> None:
    assert validate_url("  https://medium.com/@alice  ") == "https://medium.com/@alice"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "HTTPS://Medium.com/@alice/post-1?source=rss----abc&utm_medium=x",
            "https://medium.com/@alice/post-1",
        ),
        ("https://example.com:443/a/", "https://example.com/a"),
        ("http://example.com:80/", "http://example.com/"),
        ("http://127.0.0.1:8080/p/x#comments", "http://127.0.0.1:8080/p/x"),
        ("https://example.com/search?b=2&a=1", "https://example.com/search?a=1&b=2"),
    ],
)
def test_canonical_url(url: str, expected: str) -> None:
    assert canonical_url(url) == expected
    assert canonical_url(expected) == expected  # idempotent


@pytest.mark.parametrize(
    ("url", "platform"),
    [
        ("https://medium.com/@alice", Platform.MEDIUM),
        ("https://alice.medium.com", Platform.MEDIUM),
        ("https://alice.substack.com", Platform.SUBSTACK),
        ("https://www.linkedin.com/in/alice", Platform.LINKEDIN),
        ("https://github.com/alice", Platform.GITHUB),
        ("https://alice.dev/blog/", Platform.WEB),
        ("https://notmedium.com/x", Platform.WEB),
    ],
)
def test_guess_platform(url: str, platform: Platform) -> None:
    assert guess_platform(url) is platform

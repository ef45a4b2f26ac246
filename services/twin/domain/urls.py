"""URL rules shared by the crawler and the profile spec: validation, canonical form, platform guess."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from twin.domain.documents import Platform
from twin.domain.errors import InvalidSourceURL

ALLOWED_SCHEMES = frozenset({"http", "https"})

# Query parameters that identify a visit, not a document: dropping them makes the same article
# reached through a feed, a share link or a listing collapse onto one canonical URL.
_TRACKING_PARAMS = frozenset({"source", "sk", "ref", "ref_src", "fbclid", "gclid", "trk", "r", "s"})


def validate_url(url: str) -> str:
    """Return ``url`` stripped if it is an absolute http(s) URL we may crawl, else raise.

    Raises :class:`InvalidSourceURL` with a message a user can act on.
    """
    candidate = url.strip()
    if not candidate:
        raise InvalidSourceURL("empty URL")
    if any(ch.isspace() for ch in candidate) or any(ord(ch) < 32 for ch in candidate):
        raise InvalidSourceURL(f"malformed URL {candidate!r}: contains whitespace or control characters")
    try:
        parts = urlsplit(candidate)
        port = parts.port  # raises ValueError on a non-numeric or out-of-range port
    except ValueError as exc:
        raise InvalidSourceURL(f"malformed URL {candidate!r}: {exc}") from exc
    if not parts.scheme:
        raise InvalidSourceURL(f"malformed URL {candidate!r}: no scheme (expected http:// or https://)")
    if parts.scheme.lower() not in ALLOWED_SCHEMES:
        raise InvalidSourceURL(
            f"unsupported scheme {parts.scheme!r} in {candidate!r}: only http and https are crawled"
        )
    if not parts.hostname:
        raise InvalidSourceURL(f"malformed URL {candidate!r}: no host")
    if parts.username or parts.password:
        raise InvalidSourceURL(f"URL {candidate!r} embeds credentials: put secrets in settings, not URLs")
    try:
        parts.hostname.encode("idna")
    except UnicodeError as exc:
        raise InvalidSourceURL(f"malformed host in {candidate!r}: {exc}") from exc
    if port == 0:
        raise InvalidSourceURL(f"malformed URL {candidate!r}: port 0")
    return candidate


def canonical_url(url: str) -> str:
    """The canonical form of a document URL: the key of ``raw_documents`` within a profile.

    Lower-case scheme and host, default ports dropped, fragment dropped, tracking parameters
    dropped, remaining query parameters sorted, trailing slash removed from non-root paths.
    """
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    port = parts.port
    if port and not ((scheme == "http" and port == 80) or (scheme == "https" and port == 443)):
        host = f"{host}:{port}"
    path = parts.path or "/"
    if len(path) > 1 and path.endswith("/"):
        path = path.rstrip("/") or "/"
    query = sorted(
        (k, v)
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
        if k.lower() not in _TRACKING_PARAMS and not k.lower().startswith("utm_")
    )
    return urlunsplit((scheme, host, path, urlencode(query), ""))


def guess_platform(url: str) -> Platform:
    """The platform a URL belongs to, judged by its host; anything unknown is ``web``.

    Custom domains (a Substack or Medium publication on its own domain, GitHub Enterprise) cannot
    be told from the host: the profile names their platform explicitly.
    """
    host = (urlsplit(url).hostname or "").lower()
    if host == "medium.com" or host.endswith(".medium.com"):
        return Platform.MEDIUM
    if host.endswith(".substack.com") or host == "substack.com":
        return Platform.SUBSTACK
    if host == "linkedin.com" or host.endswith(".linkedin.com"):
        return Platform.LINKEDIN
    if host in {"github.com", "www.github.com"}:
        return Platform.GITHUB
    return Platform.WEB

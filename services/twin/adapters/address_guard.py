"""The address guard: the crawler, and serving when it reads links from a user's message, follow
URLs users give them, so they must not reach internal hosts.

Every request (including redirects, robots.txt and the browser's own sub-requests) is checked:
its host must resolve only to globally routable addresses, unless a network is on the
allow-list (``TWIN_CRAWLER__ALLOWED_NETWORKS``; the tests and the demo allow 127.0.0.1).
Resolution is cached per host for the run. A DNS answer that changes between our check and
the connection (rebinding) is not covered here: cluster deployments add a NetworkPolicy that
denies egress to private ranges, which this guard complements.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from functools import lru_cache
from urllib.parse import urlsplit

from twin.domain.errors import BlockedTarget
from twin.domain.urls import ALLOWED_SCHEMES

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def _kind(ip: IPAddress) -> str | None:
    """Why an address is internal, or None when it is globally routable."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return _kind(ip.ipv4_mapped)
    for label, flag in (
        ("loopback", ip.is_loopback),
        ("unspecified", ip.is_unspecified),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("private", ip.is_private),
        ("reserved", ip.is_reserved),
    ):
        if flag:
            return label
    return None if ip.is_global else "non-global"


@lru_cache(maxsize=4096)
def _resolve(host: str) -> tuple[str, ...]:
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except socket.gaierror:
        return ()  # unresolvable: let the download fail with Scrapy's own DNS error
    return tuple(sorted({str(info[4][0]) for info in infos}))


class AddressGuard:
    def __init__(self, allowed_networks: Iterable[str] = ()) -> None:
        self._allowed: tuple[IPNetwork, ...] = tuple(
            ipaddress.ip_network(net, strict=False) for net in allowed_networks
        )

    def _allowed_ip(self, ip: IPAddress) -> bool:
        return any(ip in net for net in self._allowed if net.version == ip.version)

    def check(self, url: str) -> None:
        """Raise :class:`BlockedTarget` unless ``url`` is http(s) to a public or allow-listed host."""
        parts = urlsplit(url)
        if parts.scheme.lower() not in ALLOWED_SCHEMES:
            raise BlockedTarget(f"{url}: scheme {parts.scheme!r} is not crawled (http and https only)")
        host = (parts.hostname or "").strip("[]")
        if not host:
            raise BlockedTarget(f"{url}: no host")
        try:
            addresses: tuple[str, ...] = (str(ipaddress.ip_address(host)),)
        except ValueError:
            addresses = _resolve(host.lower())
        for text in addresses:
            ip = ipaddress.ip_address(text.split("%")[0])
            kind = _kind(ip)
            if kind is not None and not self._allowed_ip(ip):
                raise BlockedTarget(
                    f"{url}: {host} is a {kind} address ({ip}); internal targets are refused"
                    " unless TWIN_CRAWLER__ALLOWED_NETWORKS allows them"
                )

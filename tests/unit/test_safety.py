"""The address guard, on literal addresses only: no traffic leaves the machine."""

from __future__ import annotations

import pytest

from twin.adapters.address_guard import AddressGuard
from twin.crawler.safety import abort_browser_request, configure_browser_guard
from twin.domain.errors import BlockedTarget


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("http://127.0.0.1/", "loopback"),
        ("http://127.8.9.10:8080/x", "loopback"),
        ("http://10.0.0.1/", "private"),
        ("http://172.16.5.4/", "private"),
        ("http://192.168.1.1/admin", "private"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://[::1]/", "loopback"),
        ("http://[fe80::1]/", "link-local"),
        ("http://[fd00::1]/", "private"),
        ("http://[::ffff:127.0.0.1]/", "loopback"),
        ("http://0.0.0.0/", "unspecified"),
        ("http://224.0.0.1/", "multicast"),
        ("http://100.64.0.1/", "non-global"),
        ("http://localhost:9200/", "loopback"),
    ],
)
def test_internal_targets_are_refused(url: str, kind: str) -> None:
    with pytest.raises(BlockedTarget, match=kind):
        AddressGuard().check(url)


@pytest.mark.parametrize("url", ["ftp://example.com/", "file:///etc/passwd", "gopher://x/"])
def test_non_http_schemes_are_refused(url: str) -> None:
    with pytest.raises(BlockedTarget, match="scheme"):
        AddressGuard().check(url)


def test_public_addresses_pass() -> None:
    AddressGuard().check("http://93.184.215.14/")
    AddressGuard().check("https://[2606:2800:21f:cb07:6820:80da:af6b:8b2c]/")


def test_allow_list_opens_exactly_what_it_names() -> None:
    guard = AddressGuard(["127.0.0.1/32"])
    guard.check("http://127.0.0.1:18701/@alice")
    with pytest.raises(BlockedTarget):
        guard.check("http://127.0.0.2/")
    with pytest.raises(BlockedTarget):
        guard.check("http://10.1.2.3/")


class _BrowserRequest:
    def __init__(self, url: str, resource_type: str = "document") -> None:
        self.url = url
        self.resource_type = resource_type


def test_browser_sub_requests_are_guarded_too() -> None:
    configure_browser_guard(AddressGuard(["127.0.0.1/32"]))
    assert abort_browser_request(_BrowserRequest("http://127.0.0.1:1/app.js", "script")) is False
    assert abort_browser_request(_BrowserRequest("http://169.254.169.254/", "xhr")) is True
    assert abort_browser_request(_BrowserRequest("http://127.0.0.1:1/logo.png", "image")) is True
    assert abort_browser_request(_BrowserRequest("data:text/plain,hi", "xhr")) is False

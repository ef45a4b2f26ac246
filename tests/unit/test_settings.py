from __future__ import annotations

import pytest
from pydantic import ValidationError

from twin.settings import Settings


def test_nested_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TWIN_CRAWLER__ALLOWED_NETWORKS", '["127.0.0.1/32", "10.0.0.0/8"]')
    monkeypatch.setenv("TWIN_CRAWLER__MAX_PAGE_BYTES", "4096")
    monkeypatch.setenv("TWIN_LINKEDIN__PASSWORD", "s3cret")
    monkeypatch.setenv("TWIN_DATABASE__DSN", "postgresql://u:pw@db:5432/twin")
    s = Settings()
    assert s.crawler.allowed_networks == ["127.0.0.1/32", "10.0.0.0/8"]
    assert s.crawler.max_page_bytes == 4096
    assert s.linkedin.password is not None and s.linkedin.password.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(s) and "pw@" not in repr(s)  # secrets never print


def test_bad_network_in_allow_list_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TWIN_CRAWLER__ALLOWED_NETWORKS", '["not-a-network"]')
    with pytest.raises(ValidationError, match="not-a-network"):
        Settings()

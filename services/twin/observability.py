"""Every Prometheus metric, defined once. Dashboards and alerts may name only these.

Defining a metric registers it with prometheus-client's default registry, which connects to
nothing; ``serve_metrics`` opens the HTTP endpoint when a command asks for it.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, start_http_server

FEATURE_EVENTS = Counter(
    "twin_feature_events_total",
    "Change events consumed by the feature pipeline, by Debezium op and what became of them.",
    ["op", "outcome"],  # outcome: applied | stale | unchanged | dead_lettered | tombstone
)
FEATURE_DEAD_LETTERS = Counter(
    "twin_feature_dead_letters_total", "Change events set aside as unprocessable (see dead_letters)."
)
FEATURE_CHUNKS_WRITTEN = Counter("twin_feature_chunks_written_total", "Embedded chunks written to the store.")
FEATURE_FRESHNESS = Histogram(
    "twin_feature_freshness_seconds",
    "Source commit time to chunks written, per applied change.",
    buckets=(0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0, 300.0),
)
FEATURE_CONSUMER_LAG = Gauge(
    "twin_feature_consumer_lag", "Messages behind the end of the change topic (Kafka runtime).", ["partition"]
)
FEATURE_LAG_SECONDS = Gauge(
    "twin_feature_lag_seconds", "Age of the newest change applied, at the time it was applied."
)
EMBEDDING_BATCH_SECONDS = Histogram(
    "twin_embedding_batch_seconds",
    "Time to embed one pipeline batch of chunks.",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)


def serve_metrics(port: int, host: str = "0.0.0.0") -> None:  # noqa: S104 -- scraped by Prometheus in-cluster
    """Expose ``/metrics`` on ``host:port`` from a daemon thread."""
    start_http_server(port, addr=host)


# --- serving -------------------------------------------------------------------------------------
_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)

SERVE_REQUESTS = Counter(
    "twin_serve_requests_total",
    "Requests answered by the OpenAI-compatible API, by route and HTTP status.",
    ["route", "status"],
)
SERVE_ERRORS = Counter(
    "twin_serve_errors_total", "Requests that ended in an error, by HTTP status.", ["status"]
)
SERVE_LATENCY = Histogram(
    "twin_serve_request_seconds",
    "Request latency, receipt to last byte.",
    ["route"],
    buckets=_LATENCY_BUCKETS,
)
SERVE_TTFT = Histogram(
    "twin_serve_time_to_first_token_seconds",
    "Receipt of a generation request to its first token.",
    buckets=_LATENCY_BUCKETS,
)
SERVE_TOKENS = Counter("twin_serve_generated_tokens_total", "Completion tokens generated.")
SERVE_TOKENS_PER_S = Histogram(
    "twin_serve_tokens_per_second",
    "Decode speed of one request: completion tokens after the first, per second.",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000),
)
SERVE_RETRIEVAL = Histogram(
    "twin_serve_retrieval_seconds",
    "Embedding the query and retrieving its context.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
SERVE_INFLIGHT = Gauge("twin_serve_inflight_requests", "Requests being answered now.")
SERVE_MODEL_VERSION = Gauge(
    "twin_serve_model_version",
    "Registry version of the adapter that answered last (0: the base model).",
    ["profile", "alias"],
)

"""The serving endpoint's metrics: requests, latency, time to first token, tokens, errors, the
adapter version live, retrieval.

Exported on the endpoint's own ``/metrics`` route (``twin serve``; on a cluster the RayService's
Serve port). A replica serves one profile, so the profile is a *target* label (the PodMonitor
copies the pod's ``llmtwin.dev/profile`` label; a static scrape config sets it by hand) rather
than a label of every sample; only the version gauge names it, as the registry does.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

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

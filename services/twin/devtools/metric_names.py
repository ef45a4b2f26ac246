"""Which metric names a dashboard panel or an alert may use, and which ones a PromQL expression uses.

A query that names a metric nobody exports parses fine and draws an empty panel (or an alert that
can never fire), so every expression is checked against two lists: the ``twin_`` families the code
registers (:func:`twin.observability.sample_names`, read from the registry itself) and the external
sets below, each one a component we scrape but do not write. They are listed here, in one place,
with where each name comes from; a new external name is added here deliberately, not by accident.
"""

from __future__ import annotations

from typing import Any

# Prometheus itself: one series per target, and its recording-rule namespace.
PROMETHEUS = frozenset({"up", "scrape_duration_seconds", "ALERTS"})

# Ray Serve's built-in metrics (Ray's metrics agent, port 8080 of every Ray pod; `ray_` prefixed).
RAY_SERVE = frozenset(
    {
        "ray_serve_num_http_requests_total",
        "ray_serve_num_http_error_requests_total",
        "ray_serve_http_request_latency_ms_bucket",
        "ray_serve_deployment_replica_healthy",
        "ray_serve_replica_processing_queries",
        "ray_serve_deployment_queued_queries",
        "ray_serve_num_ongoing_http_requests",
    }
)

# vLLM's engine metrics (`vllm:` prefixed), exported where the engine's own /metrics is scraped
# (vLLM's OpenAI server; inside Ray Serve only through Ray's metrics agent).
VLLM = frozenset(
    {
        "vllm:num_requests_running",
        "vllm:num_requests_waiting",
        "vllm:kv_cache_usage_perc",
        "vllm:gpu_cache_usage_perc",
        "vllm:time_to_first_token_seconds_bucket",
        "vllm:generation_tokens_total",
        "vllm:prompt_tokens_total",
    }
)

# kube-state-metrics (the cluster's object state: Jobs, Deployments, Pods).
KUBE_STATE_METRICS = frozenset(
    {
        "kube_job_status_failed",
        "kube_job_status_succeeded",
        "kube_job_status_active",
        "kube_deployment_status_replicas_available",
        "kube_deployment_spec_replicas",
        "kube_pod_container_status_restarts_total",
        "kube_pod_labels",
    }
)

EXTERNAL: dict[str, frozenset[str]] = {
    "prometheus": PROMETHEUS,
    "ray-serve": RAY_SERVE,
    "vllm": VLLM,
    "kube-state-metrics": KUBE_STATE_METRICS,
}


def known() -> frozenset[str]:
    """Every name a query may use: ours (from the registry) and the external sets."""
    from twin.observability import sample_names

    external = frozenset().union(*EXTERNAL.values())
    return frozenset(sample_names()) | external


def names_in(expr: str) -> set[str]:
    """The metric names an expression selects (``foo{...}``, ``{__name__="foo"}``); raises
    ``ValueError`` when it does not parse. Recording rules (``twin:...``) count as names too."""
    import promql_parser

    found: set[str] = set()

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            if node.name:
                found.add(node.name)
            for m in node.matchers.matchers:
                if m.name == "__name__" and m.op == promql_parser.MatchOp.Equal:
                    found.add(m.value)

    promql_parser.walk(promql_parser.parse(expr), visit)
    return found

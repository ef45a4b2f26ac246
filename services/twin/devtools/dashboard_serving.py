"""The serving dashboard and the per-profile overview (the other two are in
:mod:`twin.devtools.dashboard_defs`)."""

from __future__ import annotations

from twin.devtools.dashboard_model import CLUSTER, GPU, OPERATOR, Dashboard, Panel, Row, p50, p95, q


def serving() -> Dashboard:
    traffic = Row(
        "Traffic and errors",
        (
            Panel(
                "Requests by status",
                (q("sum by (status) (rate(twin_serve_requests_total[$__rate_interval]))", "{{status}}"),),
                "reqps",
            ),
            Panel(
                "Error ratio (5xx) and burn-rate windows",
                (
                    q("sum(twin:serve_error_ratio:rate5m)", "5m"),
                    q("sum(twin:serve_error_ratio:rate1h)", "1h"),
                ),
                "percentunit",
                description="Objective: 99.5% of requests without a 5xx (TwinServeErrorBudgetBurn).",
            ),
            Panel(
                "Errors by status",
                (q("sum by (status) (rate(twin_serve_errors_total[$__rate_interval]))", "{{status}}"),),
                "reqps",
            ),
            Panel("In-flight requests", (q("sum(twin_serve_inflight_requests)", "in flight"),)),
        ),
    )
    latency = Row(
        "Latency and throughput",
        (
            Panel(
                "Request latency",
                (
                    q(p50("twin_serve_request_seconds", "route"), "{{route}} p50"),
                    q(p95("twin_serve_request_seconds", "route"), "{{route}} p95"),
                ),
                "s",
            ),
            Panel(
                "Time to first token",
                (
                    q(p50("twin_serve_time_to_first_token_seconds"), "p50"),
                    q(p95("twin_serve_time_to_first_token_seconds"), "p95"),
                ),
                "s",
                description="Objective: 95% within 10 s (TwinServeLatencyBudgetBurn).",
            ),
            Panel(
                "Tokens generated per second",
                (
                    q("sum(rate(twin_serve_generated_tokens_total[$__rate_interval]))", "all requests"),
                    q(p50("twin_serve_tokens_per_second"), "decode speed p50 (one request)"),
                ),
                "short",
            ),
            Panel(
                "Retrieval latency p95",
                (q(p95("twin_serve_retrieval_seconds"), "p95"),),
                "s",
            ),
        ),
    )
    capacity = Row(
        "Model and replicas",
        (
            Panel(
                "Adapter version live",
                (q("max by (profile, alias) (twin_serve_model_version)", "{{profile}} {{alias}}"),),
                kind="stat",
                description="0: the base model. Compare with the registry's champion (TwinServeStaleModel).",
            ),
            Panel(
                "Healthy replicas (autoscaling)",
                (q("sum by (deployment) (ray_serve_deployment_replica_healthy)", "{{deployment}}"),),
                needs=CLUSTER,
            ),
            Panel(
                "Engine queue and KV cache",
                (
                    q("sum(vllm:num_requests_waiting)", "waiting"),
                    q("max(vllm:kv_cache_usage_perc)", "KV cache"),
                ),
                description="vLLM's own metrics: only where the engine's metrics are scraped.",
                needs=GPU,
            ),
        ),
    )
    return Dashboard(
        "twin-serving",
        "LLM Twin / Serving",
        "The OpenAI-compatible endpoint: requests, errors, latency, time to first token, tokens/s, replicas.",
        (traffic, latency, capacity),
    )


def profile_overview() -> Dashboard:
    sel = '{profile=~"$profile"}'
    state = Row(
        "State",
        (
            Panel(
                "Phase",
                (q(f"max by (phase) (twin_profile_phase{sel})", "{{phase}}"),),
                kind="stat",
                width=6,
                needs=OPERATOR,
            ),
            Panel(
                "Documents",
                (q(f"max(twin_profile_documents{sel})", "documents"),),
                kind="stat",
                width=6,
                needs=OPERATOR,
            ),
            Panel(
                "Champion version",
                (q(f"max(twin_profile_champion_version{sel})", "champion"),),
                kind="stat",
                width=6,
                needs=OPERATOR,
            ),
            Panel(
                "Version served", (q(f"max(twin_serve_model_version{sel})", "served"),), kind="stat", width=6
            ),
            Panel(
                "Conditions",
                (
                    q(
                        f"max by (condition, status, reason) (twin_profile_condition{sel})",
                        "{{condition}} {{status}} {{reason}}",
                    ),
                ),
                kind="table",
                width=24,
                needs=OPERATOR,
            ),
        ),
    )
    work = Row(
        "Crawl, training, serving",
        (
            Panel(
                "Sources by outcome (last day)",
                (
                    q(
                        f"sum by (platform, status) (max_over_time(twin_crawl_sources_total{sel}[1d]))",
                        "{{platform}} {{status}}",
                    ),
                ),
                kind="table",
            ),
            Panel(
                "Held-out perplexity per version",
                (
                    q(
                        "max by (version, model) "
                        f"(max_over_time(twin_training_heldout_perplexity{sel}[$__range]))",
                        "v{{version}} {{model}}",
                    ),
                ),
                kind="table",
            ),
            Panel(
                "Requests by status",
                (
                    q(
                        f"sum by (status) (rate(twin_serve_requests_total{sel}[$__rate_interval]))",
                        "{{status}}",
                    ),
                ),
                "reqps",
            ),
            Panel(
                "Time to first token p95",
                (q(p95("twin_serve_time_to_first_token_seconds", where=sel), "p95"),),
                "s",
            ),
        ),
    )
    return Dashboard(
        "twin-profile",
        "LLM Twin / Profile overview",
        "One TwinProfile (pick it above): its state, crawls, versions and endpoint.",
        (state, work),
        profile_variable=True,
    )

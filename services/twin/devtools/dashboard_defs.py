"""What the Grafana dashboards show: four dashboards as plain data (rows of panels of PromQL), turned
into Grafana's model by :mod:`twin.devtools.dashboards` with Grafana's foundation SDK.

Kept as data so a test can walk every query (it must parse and name only exported metrics) and an
integration test can evaluate each against a real Prometheus. A panel that only a cluster (Ray
Serve's autoscaler, kube-state-metrics, Kafka), the operator or a GPU can feed says so in
``needs``; the dashboard shows it in the panel's description too.

Queries use ``$__rate_interval`` (Grafana picks a window that fits the scrape interval) and, on the
profile overview, ``profile=~"$profile"``: on serving series ``profile`` is a target label (the
PodMonitor copies the pod's ``llmtwin.dev/profile``), elsewhere a label of the sample itself.
"""

from __future__ import annotations

from twin.devtools.dashboard_model import CLUSTER, GPU, OPERATOR, Dashboard, Panel, Query, Row, p50, p95, q
from twin.devtools.dashboard_serving import profile_overview, serving

__all__ = ["CLUSTER", "GPU", "OPERATOR", "Dashboard", "Panel", "Query", "Row", "dashboards", "panels"]


def _pipeline() -> Dashboard:
    crawl = Row(
        "Crawl",
        (
            Panel(
                "Pages requested by outcome",
                (q("sum by (outcome) (rate(twin_crawl_pages_total[$__rate_interval]))", "{{outcome}}"),),
                "reqps",
            ),
            Panel(
                "Documents written by outcome",
                (
                    q(
                        "sum by (outcome) (increase(twin_crawl_documents_total[$__rate_interval]))",
                        "{{outcome}}",
                    ),
                ),
                description="New, updated, unchanged and deleted raw documents per interval.",
            ),
            Panel(
                "Crawl errors by kind",
                (
                    q(
                        "sum by (platform, kind) (increase(twin_crawl_errors_total[$__rate_interval])) > 0",
                        "{{platform}} {{kind}}",
                    ),
                ),
                description="Only kinds that occurred (every crawl starts the common kinds at zero).",
            ),
            Panel(
                "Sources by outcome (last scrape of each crawl, 1 day)",
                (
                    q(
                        "sum by (platform, status) (max_over_time(twin_crawl_sources_total[1d]))",
                        "{{platform}} {{status}}",
                    ),
                ),
                kind="table",
            ),
            Panel(
                "Failed crawl Jobs",
                (
                    q(
                        'sum by (namespace) (kube_job_status_failed{job_name=~"twin-.*-crawl-.*"})',
                        "{{namespace}}",
                    ),
                ),
                needs=CLUSTER,
            ),
            Panel(
                "Crawl run duration p95",
                (q(p95("twin_crawl_run_seconds", "profile"), "{{profile}}"),),
                "s",
            ),
        ),
    )
    features = Row(
        "Features (change capture, chunking, embedding)",
        (
            Panel(
                "Change events by outcome",
                (q("sum by (outcome) (rate(twin_feature_events_total[$__rate_interval]))", "{{outcome}}"),),
                "ops",
            ),
            Panel(
                "Freshness: source commit to chunks written",
                (
                    q(p50("twin_feature_freshness_seconds"), "p50"),
                    q(p95("twin_feature_freshness_seconds"), "p95"),
                ),
                "s",
                description="Objective: p95 under 10 s (TwinFeatureFreshnessSlow).",
            ),
            Panel(
                "Consumer lag (messages)",
                (q("sum by (partition) (twin_feature_consumer_lag)", "partition {{partition}}"),),
                description="Kafka runtime only; objective: under 1,000 (TwinFeatureConsumerLagHigh).",
                needs=CLUSTER,
            ),
            Panel(
                "Dead letters",
                (q("sum(increase(twin_feature_dead_letters_total[$__rate_interval]))", "dead-lettered"),),
            ),
            Panel(
                "Chunks embedded per second",
                (q("sum(rate(twin_feature_chunks_written_total[$__rate_interval]))", "chunks/s"),),
                "ops",
            ),
            Panel(
                "Embedding batch time p95, newest change's age",
                (
                    q(p95("twin_embedding_batch_seconds"), "embedding batch p95"),
                    q("max(twin_feature_lag_seconds)", "newest change's age when applied"),
                ),
                "s",
            ),
        ),
    )
    profiles = Row(
        "Profiles (the operator's view)",
        (
            Panel(
                "Documents and chunks per profile",
                (
                    q("sum by (profile) (twin_profile_documents)", "{{profile}} documents"),
                    q("sum by (profile) (twin_profile_chunks)", "{{profile}} chunks"),
                ),
                needs=OPERATOR,
            ),
            Panel(
                "Profiles not ready (conditions False)",
                (
                    q(
                        'sum by (profile, condition, reason) (twin_profile_condition{status!="True"})',
                        "{{profile}} {{condition}} {{reason}}",
                    ),
                ),
                kind="table",
                needs=OPERATOR,
            ),
        ),
    )
    return Dashboard(
        "twin-pipeline",
        "LLM Twin / Pipeline health and freshness",
        "Crawls, change capture and the feature store: is new writing reaching retrieval, and how fast.",
        (crawl, features, profiles),
    )


def _training() -> Dashboard:
    runs = Row(
        "Runs",
        (
            Panel(
                "Training runs by outcome",
                (
                    q(
                        "sum by (profile, outcome) (increase(twin_training_runs_total[$__rate_interval]))",
                        "{{profile}} {{outcome}}",
                    ),
                ),
            ),
            Panel(
                "Optimizer steps per second",
                (q("sum by (profile) (rate(twin_training_steps_total[$__rate_interval]))", "{{profile}}"),),
                "ops",
            ),
            Panel("Training loss", (q("max by (profile) (twin_training_loss)", "{{profile}}"),)),
            Panel(
                "Run duration p95",
                (q(p95("twin_training_run_seconds", "profile"), "{{profile}}"),),
                "s",
            ),
        ),
    )
    evaluation = Row(
        "Evaluation and promotion",
        (
            Panel(
                "Held-out perplexity per version",
                (
                    q(
                        "max by (profile, version, model) "
                        "(max_over_time(twin_training_heldout_perplexity[$__range]))",
                        "{{profile}} v{{version}} {{model}}",
                    ),
                ),
                description="Lower is better; the gate promotes a candidate below the champion by a margin.",
                kind="table",
            ),
            Panel(
                "Style fidelity per version",
                (
                    q(
                        "max by (profile, version, model) "
                        "(max_over_time(twin_training_style_fidelity[$__range]))",
                        "{{profile}} v{{version}} {{model}}",
                    ),
                ),
                "percentunit",
                kind="table",
            ),
            Panel(
                "Promotions and declined candidates",
                (
                    q(
                        "sum by (profile, by) (increase(twin_training_promotions_total[$__rate_interval]))",
                        "{{profile}} promoted ({{by}})",
                    ),
                    q(
                        "sum by (profile) "
                        "(increase(twin_training_promotions_declined_total[$__rate_interval]))",
                        "{{profile}} declined",
                    ),
                ),
            ),
            Panel(
                "Champion version and retraining pressure",
                (
                    q("max by (profile) (twin_profile_champion_version)", "{{profile}} champion"),
                    q("max by (profile) (twin_profile_changed_documents)", "{{profile}} changed documents"),
                    q("max by (profile) (twin_profile_retrain_threshold_documents)", "{{profile}} threshold"),
                ),
                description="Changed documents at or above the threshold for 2 days: TwinChampionStale.",
                needs=OPERATOR,
            ),
        ),
    )
    return Dashboard(
        "twin-training",
        "LLM Twin / Training and evaluation",
        "LoRA runs, their loss, held-out perplexity and style per registered version, and promotions.",
        (runs, evaluation),
    )


def dashboards() -> list[Dashboard]:
    return [_pipeline(), _training(), serving(), profile_overview()]


def panels() -> list[tuple[Dashboard, Panel]]:
    """Every panel with its dashboard: what the checks and the integration test walk."""
    return [(d, p) for d in dashboards() for row in d.rows for p in row.panels]

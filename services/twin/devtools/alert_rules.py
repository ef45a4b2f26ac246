"""The alerting and recording rules, one group per concern: the single source of
``charts/twin/alerts/*.yaml`` (rendered by :mod:`twin.devtools.alerts`).

What an alert means and what to do about it is in ``docs/runbooks/<alert>.md``; the objectives
below are the numbers those pages name. Thresholds are module constants so a reader sees every
objective in one place; change one here and regenerate.

Where a signal comes from matters at two in the morning:

- feature workers and serving replicas are long-running: their own counters and histograms;
- crawls and training runs are short processes whose series vanish with their pods, so "is it
  failing" is read from the operator's ``twin_profile_*`` gauges (what reconcile saw), and the crawl
  counters only through ``max_over_time`` (the last scrape of a finished pod);
- serving's ``profile`` label is a target label (the PodMonitor copies the pod's
  ``llmtwin.dev/profile``), the operator's gauges carry ``namespace`` and ``profile`` themselves.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# --- objectives (docs/observability.md, "Objectives") -------------------------------------------
FRESHNESS_P95_OBJECTIVE_S = 10  # source commit -> chunks written, p95 (measured: 0.3 s through Kafka)
CONSUMER_LAG_OBJECTIVE = 1000  # messages behind the change topic's end
AVAILABILITY_OBJECTIVE = 0.995  # non-5xx share of API requests
TTFT_OBJECTIVE_S = "10.0"  # a bucket bound of twin_serve_time_to_first_token_seconds (as exported)
TTFT_OBJECTIVE_SHARE = 0.95  # share of generations whose first token comes within TTFT_OBJECTIVE_S
CHAMPION_STALE_AFTER = "2d"  # the retraining policy wants a new model and none came for this long
# Multi-window burn rates (Google's SRE workbook, chapter 5): (burn, long window, short window,
# for, severity). 14.4x spends 2 % of a 30-day budget in an hour; 6x spends 5 % in six hours.
BURN_WINDOWS = (
    (14.4, "1h", "5m", "2m", "critical"),
    (6.0, "6h", "30m", "15m", "warning"),
)
WINDOWS = ("5m", "30m", "1h", "6h")

RUNBOOKS = "https://github.com/llm-twin/llm-twin/blob/main/docs/runbooks"
LONG_RUNNING_JOBS = "twin-(operator|features|serve)"


@dataclass(frozen=True)
class Alert:
    name: str
    expr: str
    summary: str
    description: str
    severity: str = "warning"
    for_: str = "0m"


@dataclass(frozen=True)
class Record:
    record: str
    expr: str


@dataclass(frozen=True)
class Group:
    """One concern: one rule group, one file, one PrometheusRule."""

    concern: str
    rules: list[Alert | Record] = field(default_factory=list)


def _features() -> Group:
    return Group(
        "features",
        [
            Alert(
                "TwinFeatureFreshnessSlow",
                "histogram_quantile(0.95, sum(rate(twin_feature_freshness_seconds_bucket[10m])) by (le))"
                f" > {FRESHNESS_P95_OBJECTIVE_S}",
                "Feature freshness p95 is over its objective",
                f"95% of changes take more than {FRESHNESS_P95_OBJECTIVE_S} s from the source commit to "
                "searchable chunks (p95 now {{ $value | humanizeDuration }}): RAG answers miss new writing.",
                for_="15m",
            ),
            Alert(
                "TwinFeatureConsumerLagHigh",
                f"sum(twin_feature_consumer_lag) > {CONSUMER_LAG_OBJECTIVE}",
                "The feature workers are far behind the change topic",
                f"{{{{ $value }}}} change messages wait on the topic (objective: {CONSUMER_LAG_OBJECTIVE}).",
                for_="15m",
            ),
            Alert(
                "TwinFeaturePipelineStalled",
                "sum(twin_feature_consumer_lag) > 0 and sum(rate(twin_feature_events_total[10m])) == 0",
                "The feature pipeline consumes nothing while changes wait",
                "Changes are waiting on the topic and no feature worker has consumed one for 10 minutes.",
                severity="critical",
                for_="10m",
            ),
            Alert(
                "TwinFeatureDeadLettersRising",
                "sum(increase(twin_feature_dead_letters_total[30m])) > 0",
                "Change events are being dead-lettered",
                "{{ $value | humanize }} change event(s) were set aside as unprocessable in the last 30 "
                "minutes; their documents are not searchable or trainable.",
                for_="5m",
            ),
        ],
    )


def _crawl() -> Group:
    return Group(
        "crawl",
        [
            Alert(
                "TwinCrawlFailed",
                'max by (namespace, profile) (twin_profile_condition{condition="SourcesCrawled",'
                'reason="CrawlFailed"}) == 1',
                "The latest crawl of {{ $labels.namespace }}/{{ $labels.profile }} failed",
                "The profile's current crawl Job failed (every source failed, or the pod kept "
                "crashing): its documents are not being refreshed.",
                for_="5m",
            ),
            Alert(
                "TwinCrawlPlatformFailing",
                'sum by (profile, platform) (max_over_time(twin_crawl_sources_total{status="failed"}[1d]))'
                " > 0 unless sum by (profile, platform) "
                '(max_over_time(twin_crawl_sources_total{status=~"ok|partial"}[1d])) > 0',
                "Every {{ $labels.platform }} source of {{ $labels.profile }} failed today",
                "Crawls in the last day reported {{ $labels.platform }} sources of profile "
                "{{ $labels.profile }} as failed and none as ok or partial: a changed page layout, a "
                "block, or expired credentials.",
                for_="10m",
            ),
        ],
    )


def _error_ratio(window: str) -> str:
    # A profile with no 5xx yet has no 5xx series: without the `or ... * 0` its ratio would be no
    # series at all (an empty panel) instead of 0.
    total = f"sum by (profile) (rate(twin_serve_requests_total[{window}]))"
    return (
        f'(sum by (profile) (rate(twin_serve_requests_total{{status=~"5.."}}[{window}])) or {total} * 0)'
        f" / {total}"
    )


def _slow_ratio(window: str) -> str:
    return (
        "1 - sum by (profile) "
        f'(rate(twin_serve_time_to_first_token_seconds_bucket{{le="{TTFT_OBJECTIVE_S}"}}[{window}]))'
        f" / sum by (profile) (rate(twin_serve_time_to_first_token_seconds_count[{window}]))"
    )


def _burn(name: str, record: str, budget: float, what: str) -> list[Alert | Record]:
    alerts: list[Alert | Record] = []
    for burn, long, short, wait, severity in BURN_WINDOWS:
        threshold = round(burn * budget, 6)
        alerts.append(
            Alert(
                name,
                f"{record}:rate{long} > {threshold} and {record}:rate{short} > {threshold}",
                f"{{{{ $labels.profile }}}} burns its {what} budget {burn}x too fast",
                f"Over the last {long} (and {short}) {{{{ $value | humanizePercentage }}}} of requests "
                f"{'failed' if what == 'error' else 'were slow'}; at this rate the 30-day budget of "
                f"{budget:.1%} lasts {round(30 / burn, 1)} days.",
                severity=severity,
                for_=wait,
            )
        )
    return alerts


def _serving() -> Group:
    records: list[Alert | Record] = []
    for window in WINDOWS:
        records.append(Record(f"twin:serve_error_ratio:rate{window}", _error_ratio(window)))
        records.append(Record(f"twin:serve_ttft_slow_ratio:rate{window}", _slow_ratio(window)))
    return Group(
        "serving",
        [
            *records,
            *_burn("TwinServeErrorBudgetBurn", "twin:serve_error_ratio", 1 - AVAILABILITY_OBJECTIVE, "error"),
            *_burn(
                "TwinServeLatencyBudgetBurn",
                "twin:serve_ttft_slow_ratio",
                1 - TTFT_OBJECTIVE_SHARE,
                "latency",
            ),
            Alert(
                "TwinServeStaleModel",
                "max by (profile) (twin_serve_model_version) < on (profile) "
                "max by (profile) (twin_profile_champion_version)",
                "{{ $labels.profile }} serves an older version than the registry's champion",
                "The endpoint answers with version {{ $value }} although a newer champion is "
                "registered: the hot swap (alias poll) is failing.",
                for_="30m",
            ),
        ],
    )


def _training() -> Group:
    return Group(
        "training",
        [
            Alert(
                "TwinChampionStale",
                "max by (namespace, profile) (twin_profile_changed_documents) >= "
                "max by (namespace, profile) (twin_profile_retrain_threshold_documents)",
                "The champion of {{ $labels.namespace }}/{{ $labels.profile }} is older than its "
                "retraining policy allows",
                f"For {CHAMPION_STALE_AFTER} enough documents have changed ({{{{ $value }}}}) to call for "
                "a new training run and none has produced a model: the twin answers from old writing.",
                for_=CHAMPION_STALE_AFTER,
            ),
            Alert(
                "TwinTrainingFailed",
                'max by (namespace, profile) (twin_profile_condition{condition="ModelTrained",'
                'reason=~"TrainingFailed|RetrainingFailed"}) == 1',
                "The latest training run of {{ $labels.namespace }}/{{ $labels.profile }} failed",
                "The profile's latest RayJob failed; the champion (if any) keeps serving.",
                for_="5m",
            ),
        ],
    )


def _platform() -> Group:
    return Group(
        "platform",
        [
            Alert(
                "TwinTargetDown",
                f'up{{job=~"{LONG_RUNNING_JOBS}"}} == 0',
                "{{ $labels.job }} target {{ $labels.instance }} is down",
                "Prometheus cannot scrape {{ $labels.job }} at {{ $labels.instance }}: the process is "
                "down, restarting, or its metrics port is unreachable.",
                for_="5m",
            ),
            Alert(
                "TwinOperatorMetricsAbsent",
                'absent(up{job="twin-operator"})',
                "Prometheus scrapes no twin operator",
                "No target of job twin-operator exists: the operator is not running, or its "
                "ServiceMonitor is not selected by this Prometheus.",
                for_="15m",
            ),
            Alert(
                "TwinOperatorReconcileErrors",
                'sum(increase(twin_operator_reconciles_total{outcome="error"}[15m])) > 0',
                "The operator's reconcile passes keep failing",
                "{{ $value | humanize }} reconcile passes ended in an unexpected error in the last 15 "
                "minutes: profiles are not being brought to their spec.",
                for_="30m",
            ),
        ],
    )


def groups() -> list[Group]:
    """Every rule group, in the order the files are written."""
    return [_features(), _crawl(), _serving(), _training(), _platform()]


def alert_names() -> list[str]:
    return sorted({r.name for g in groups() for r in g.rules if isinstance(r, Alert)})

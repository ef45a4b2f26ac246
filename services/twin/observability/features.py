"""The feature pipeline's metrics: change events, dead letters, chunks, freshness and lag.

Exported by ``twin features`` on ``TWIN_FEATURES__METRICS_PORT``. One worker handles every
profile's changes, so these carry no profile label (the per-profile counts come from the
operator's ``twin_profile_*`` gauges).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

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

CHANGE_OPS = ("c", "u", "d", "r")  # Debezium's create, update, delete, read (snapshot)
EVENT_OUTCOMES = ("applied", "stale", "unchanged", "dead_lettered")


def worker_started() -> None:
    """Create the event series at zero, so a worker's first batch shows as a rate: a series born
    at its first increment has no earlier sample for rate() to start from."""
    for op in CHANGE_OPS:
        for outcome in EVENT_OUTCOMES:
            FEATURE_EVENTS.labels(op=op, outcome=outcome)
    FEATURE_EVENTS.labels(op="tombstone", outcome="tombstone")

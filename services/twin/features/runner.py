"""Run the feature pipeline until stopped (or idle), on whatever runtime the ports were built for.

One process: the change feed (embedded Debezium or a Kafka consumer) calls the pipeline with
batches; the embedder is a pool of Ray actors; SIGTERM/SIGINT stop the feed cleanly, after the
batch in hand is written and its position committed. Which feed, embedder and store is decided by
the composition root (:func:`twin.wiring.feature_deps`); this module only runs the lifecycle.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from twin.features.pipeline import BatchReport, FeaturePipeline
from twin.ports import ChangeFeed, FeatureDeps
from twin.settings import FeaturesSettings

log = logging.getLogger(__name__)


@dataclass
class FeaturesSummary:
    batches: int = 0
    received: int = 0
    applied: int = 0
    stale: int = 0
    unchanged: int = 0
    dead_lettered: int = 0
    chunks: int = 0
    freshness_s: list[float] = field(default_factory=list)
    # Monotonic times of the first batch's start and the last batch's end: the busy span.
    first_started: float | None = None
    last_finished: float | None = None

    @property
    def busy_s(self) -> float:
        if self.first_started is None or self.last_finished is None:
            return 0.0
        return self.last_finished - self.first_started

    def add(self, report: BatchReport) -> None:
        self.batches += 1
        self.received += report.received
        self.applied += report.applied
        self.stale += report.stale
        self.unchanged += report.unchanged
        self.dead_lettered += report.dead_lettered
        self.chunks += report.chunks
        self.freshness_s.extend(report.freshness_s)


class FeatureService:
    """The consumer's lifecycle: (re)connect, consume, stop on a signal or when idle."""

    def __init__(
        self,
        config: FeaturesSettings,
        deps: FeatureDeps,
        *,
        idle_exit_s: float | None = None,
        on_batch: Callable[[BatchReport, FeaturesSummary], None] | None = None,
        max_restarts: int = 20,
    ) -> None:
        self.config = config
        self.deps = deps
        self.idle_exit_s = idle_exit_s
        self.on_batch = on_batch
        self.max_restarts = max_restarts
        self.summary = FeaturesSummary()
        self.embedder: Any = None
        self._stopping = threading.Event()
        self._feed: ChangeFeed | None = None
        # The idle clock starts once the feed has shown it is up (a batch or a heartbeat): start-up
        # (JVM, snapshot, consumer-group join) takes seconds and is not idleness.
        self._last_activity: float | None = None
        self._busy = False
        self._busy_total = 0.0  # seconds spent handling batches, for the index maintenance gate

    def stop(self) -> None:
        self._stopping.set()
        if self._feed is not None:
            self._feed.stop()

    def _watch_idle(self) -> None:
        assert self.idle_exit_s is not None
        while not self._stopping.is_set():
            seen = self._last_activity
            if not self._busy and seen is not None and time.monotonic() - seen >= self.idle_exit_s:
                self.stop()
                return
            time.sleep(0.2)

    def run(self) -> FeaturesSummary:
        """Consume until stopped. A lost database or broker connection (a Postgres restart, say)
        stops the feed with an error; the service reconnects and resumes from the last committed
        position, backing off exponentially, up to ``max_restarts`` failures in a row."""
        from twin.observability import serve_metrics
        from twin.observability.features import worker_started

        self.embedder = self.deps.embedder()
        worker_started()
        if self.config.metrics_port:
            serve_metrics(self.config.metrics_port)

        def _signal(signum: int, frame: FrameType | None) -> None:
            self.stop()

        previous = {sig: signal.signal(sig, _signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        if self.idle_exit_s is not None:
            threading.Thread(target=self._watch_idle, name="features-idle", daemon=True).start()
        threading.Thread(target=self._maintain_indexes, name="features-indexes", daemon=True).start()
        failures = 0
        try:
            while not self._stopping.is_set():
                try:
                    self._consume_once()
                    break  # the feed returned normally: it was stopped
                except Exception as exc:
                    if self._stopping.is_set():
                        break
                    failures += 1
                    if failures > self.max_restarts:
                        raise
                    delay = min(30.0, 0.5 * 2 ** (failures - 1))
                    log.warning("feature consumer stopped (%s); restarting in %.1fs", exc, delay)
                    self._stopping.wait(delay)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            close = getattr(self.embedder, "close", None)
            if close is not None:
                close()
        return self.summary

    def _maintain_indexes(self) -> None:
        """Build the HNSW index of each partition that outgrew exact search, on its own connection
        (a concurrent build does not block the writers), every ``index_maintenance_interval_s``."""
        interval = self.config.index_maintenance_interval_s
        busy_before = self._busy_total
        while not self._stopping.wait(interval):
            # An HNSW build takes a core for tens of seconds: during a backfill (consumer busy more
            # than half the time) it would starve the embedder, so it waits for a quieter stream.
            # Until then retrieval searches those partitions exactly: slower, never wrong.
            busy, busy_before = self._busy_total - busy_before, self._busy_total
            if busy > interval / 2:
                continue
            try:
                created = self.deps.maintain_indexes()
                if created:
                    log.info("built HNSW indexes: %s", ", ".join(created))
            except Exception as exc:  # retried next interval; retrieval stays exact meanwhile
                log.warning("index maintenance failed: %s", exc)

    def _handle(self, pipeline: FeaturePipeline, batch: Any) -> None:
        started = time.monotonic()
        if self.summary.first_started is None:
            self.summary.first_started = started
        self._busy = True  # a long batch is not idleness
        try:
            report = pipeline.handle(batch)
        finally:
            self._busy = False
        self.summary.last_finished = time.monotonic()
        self._busy_total += self.summary.last_finished - started
        self.summary.add(report)
        self._last_activity = time.monotonic()
        if self.on_batch is not None:
            self.on_batch(report, self.summary)

    def _heartbeat(self) -> None:
        if self._last_activity is None:
            self._last_activity = time.monotonic()

    def _consume_once(self) -> None:
        with self.deps.store(self.embedder.dimension) as store:
            pipeline = FeaturePipeline(store, self.embedder, max_content_chars=self.config.max_content_chars)
            feed = self.deps.feed()
            self._feed = feed
            if self._stopping.is_set():
                return
            try:
                feed.run(lambda batch: self._handle(pipeline, batch), self._heartbeat)
            finally:
                self._feed = None


def run_features(
    config: FeaturesSettings,
    deps: FeatureDeps,
    *,
    idle_exit_s: float | None = None,
    on_batch: Callable[[BatchReport, FeaturesSummary], None] | None = None,
) -> FeaturesSummary:
    """Consume changes into the feature store until a signal, or ``idle_exit_s`` without changes."""
    return FeatureService(config, deps, idle_exit_s=idle_exit_s, on_batch=on_batch).run()

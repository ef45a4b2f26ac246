"""The cluster runtime's change feed: Debezium (Kafka Connect) → a Kafka topic → this consumer.

Feature workers form one consumer group on the change topic; Kafka spreads partitions over
them. Offsets are committed only after the handler returns, i.e. after the batch's writes
(auto-commit is off): a crash or a rebalance replays at most the batches in flight, which the
feature store makes harmless. A broker outage is ridden out: kafka-python reconnects by itself,
and a failed commit is retried on the next loop (the same records may then come again).
Unprocessable records are also published to a dead-letter topic (see :class:`TopicDeadLetters`).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

from twin import observability as obs
from twin.domain.features import RawChange

log = logging.getLogger(__name__)


class KafkaChangeFeed:
    def __init__(
        self,
        *,
        bootstrap: str,
        topic: str,
        group_id: str,
        max_batch: int = 256,
        poll_timeout_ms: int = 200,
    ) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.group_id = group_id
        self.max_batch = max_batch
        self.poll_timeout_ms = poll_timeout_ms
        self._stopped = threading.Event()

    def _consumer(self) -> Any:
        from kafka import KafkaConsumer

        return KafkaConsumer(
            self.topic,
            bootstrap_servers=self.bootstrap,
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=self.max_batch,
            client_id=f"{self.group_id}-worker",
            reconnect_backoff_max_ms=2000,
        )

    def _update_lag(self, consumer: Any) -> None:
        try:
            assignment = consumer.assignment()
            if not assignment:
                return
            ends = consumer.end_offsets(list(assignment))
            for tp in assignment:
                obs.FEATURE_CONSUMER_LAG.labels(partition=str(tp.partition)).set(
                    max(0, ends.get(tp, 0) - consumer.position(tp))
                )
        except Exception:  # lag is best effort: never let a metric stop consumption
            log.debug("could not read consumer lag", exc_info=True)

    def run(
        self, handler: Callable[[Sequence[RawChange]], None], heartbeat: Callable[[], None] | None = None
    ) -> None:
        from kafka.errors import KafkaError

        consumer = self._consumer()
        try:
            while not self._stopped.is_set():
                records = consumer.poll(timeout_ms=self.poll_timeout_ms, max_records=self.max_batch)
                if not records:
                    if heartbeat is not None and consumer.assignment():
                        heartbeat()
                    self._update_lag(consumer)
                    continue
                changes = [
                    RawChange(key=r.key, value=r.value, position=f"{tp.topic}/{tp.partition}@{r.offset}")
                    for tp, batch in records.items()
                    for r in batch
                ]
                handler(changes)
                try:
                    consumer.commit()
                except KafkaError as exc:  # broker away or group rebalanced: the batch may come again
                    log.warning("offset commit failed, records may be redelivered: %s", exc)
                self._update_lag(consumer)
        finally:
            consumer.close(autocommit=False)

    def stop(self) -> None:
        self._stopped.set()


class TopicDeadLetters:
    """Wraps a FeatureStore so dead letters also go to a Kafka topic (for alerting and replay tools)."""

    def __init__(self, store: Any, bootstrap: str, topic: str) -> None:
        from kafka import KafkaProducer

        self._store = store
        self._topic = topic
        self._producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def dead_letter(self, change: RawChange, reason: str) -> None:
        self._store.dead_letter(change, reason)  # the table is the record of truth

        def text(v: bytes | str | None) -> str | None:
            return v.decode("utf-8", "replace") if isinstance(v, bytes) else v

        payload = {
            "reason": reason,
            "position": change.position,
            "key": text(change.key),
            "value": text(change.value),
        }
        self._producer.send(self._topic, json.dumps(payload).encode("utf-8")).get(timeout=30)

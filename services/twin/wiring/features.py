"""The feature workers' ports: the change feed of the configured runtime, Ray embedding actors, the store.

Part of the composition root (:mod:`twin.wiring`): only it turns ``Settings`` into adapters.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from typing import TYPE_CHECKING

from twin.ports import FeatureDeps, FeatureStore
from twin.settings import Settings
from twin.wiring.runtime import ensure_ray
from twin.wiring.stores import connection, database_dsn, feature_store

if TYPE_CHECKING:
    from twin.ports import (
        ChangeFeed,
        Embedder,
    )


def embedder(settings: Settings) -> Embedder:
    """The features' embedding model in this process (queries, token counting, small batches)."""
    from twin.adapters.embedders import SentenceTransformerEmbedder

    return SentenceTransformerEmbedder(settings.features.embedding_model)


def ray_embedder(settings: Settings) -> Embedder:
    """The feature workers' embedder: a pool of Ray actors holding the model (Ray started first)."""
    from twin.adapters.ray_embedder import RayEmbedder

    ensure_ray(settings)
    f = settings.features
    return RayEmbedder(f.embedding_model, workers=f.embed_workers, batch_size=f.embed_batch_size)


def change_feed(settings: Settings, dsn: str) -> ChangeFeed:
    """Kafka (a consumer group on Debezium's topic) or Debezium's embedded engine, per settings."""
    f = settings.features
    if f.runtime == "kafka":
        from twin.adapters.kafka_feed import KafkaChangeFeed

        return KafkaChangeFeed(
            bootstrap=f.kafka_bootstrap, topic=f.topic, group_id=f.group_id, max_batch=f.max_batch_events
        )
    from twin.adapters.debezium_embedded import EmbeddedDebeziumFeed

    return EmbeddedDebeziumFeed(
        dsn,
        settings.home / "debezium",
        slot=f.slot_name,
        publication=f.publication,
        poll_interval_ms=f.poll_interval_ms,
        max_batch_size=f.max_batch_events,
    )


def maintain_indexes(settings: Settings, dsn: str | None = None) -> list[str]:
    """Build the HNSW index of each feature-store partition that outgrew exact search, on a
    connection of its own (a concurrent build does not block the writers)."""
    from twin.adapters.pgvector_store import PgFeatureStore

    with connection(settings, dsn) as conn:
        return PgFeatureStore(conn).maintain_indexes()


def feature_deps(settings: Settings) -> FeatureDeps:
    """The feature service's ports: Ray embedding actors, the change feed of the configured
    runtime, and the feature store (with Kafka's dead-letter topic in the Kafka runtime)."""
    dsn = database_dsn(settings)
    return FeatureDeps(
        embedder=partial(ray_embedder, settings),
        feed=partial(change_feed, settings, dsn),
        store=partial(_consumer_store, settings, dsn),
        maintain_indexes=partial(maintain_indexes, settings, dsn),
    )


@contextmanager
def _consumer_store(settings: Settings, dsn: str, dimension: int) -> Iterator[FeatureStore]:
    """The feature workers' store: in the Kafka runtime, dead letters also go to their topic."""
    with feature_store(settings, dsn=dsn, dimension=dimension) as store:
        f = settings.features
        if f.runtime == "kafka":
            from twin.adapters.kafka_feed import TopicDeadLetters

            yield TopicDeadLetters(store, f.kafka_bootstrap, f.dead_letter_topic)
        else:
            yield store

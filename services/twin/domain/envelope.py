"""Decode Debezium's JSON change envelopes for ``raw_documents`` into :class:`ChangeEvent`.

Both change feeds (Kafka Connect on a cluster, Debezium's embedded engine on one machine) deliver
the same JSON (``JsonConverter``), with or without the ``{"schema": ..., "payload": ...}`` wrapper.
Column encodings, as Debezium writes them for Postgres: uuid, text → strings; timestamptz → an
ISO-8601 string (``io.debezium.time.ZonedTimestamp``); jsonb → a *string* of JSON text
(``io.debezium.data.Json``).

Anything that can never become a change event raises :class:`PoisonEvent` with a reason a person
can act on; a tombstone (the ``None`` value that follows every delete) decodes to ``None``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError

from twin.domain.documents import RawDocument
from twin.domain.errors import PoisonEvent
from twin.domain.features import ChangeEvent, ChangeOp, RawChange

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_UNSUPPORTED_OPS = {"t": "truncate", "m": "message"}
_TIMESTAMP_COLUMNS = ("published_at", "fetched_at")


def decode_change(
    raw: RawChange,
    *,
    table: str = "raw_documents",
    schema: str = "public",
    max_content_chars: int = 2_000_000,
) -> ChangeEvent | None:
    """The change ``raw`` carries, or ``None`` for a tombstone.

    Raises :class:`PoisonEvent` for a value that is not a Debezium envelope of ``schema.table``,
    an unsupported op (truncate, logical message), a missing position (``source.lsn``/``ts_ms``),
    a missing or invalid id, a row that is not a valid :class:`RawDocument`, or content longer
    than ``max_content_chars``.
    """
    if raw.value is None:
        return None
    parsed = _parse_json(raw.value, "value")
    if isinstance(parsed, Mapping) and "schema" in parsed and parsed.get("payload", ...) is None:
        return None  # a tombstone that went through schemas.enable=true
    envelope = _unwrap(parsed, "value")

    op_code = envelope.get("op")
    if op_code is None:
        raise PoisonEvent("envelope has no 'op'")
    if op_code in _UNSUPPORTED_OPS:
        raise PoisonEvent(f"unsupported op {op_code!r} ({_UNSUPPORTED_OPS[op_code]})")
    try:
        op = ChangeOp(op_code)
    except ValueError:
        raise PoisonEvent(f"unknown op {op_code!r}") from None

    source = envelope.get("source")
    if not isinstance(source, Mapping):
        raise PoisonEvent("envelope has no 'source' object")
    src_schema, src_table = source.get("schema"), source.get("table")
    if src_schema != schema or src_table != table:
        raise PoisonEvent(f"unknown table {src_schema}.{src_table} (expected {schema}.{table})")
    lsn = _integer(source, "lsn")
    committed_at = _EPOCH + timedelta(milliseconds=_integer(source, "ts_ms"))

    key_id = _key_id(raw.key)
    if op is ChangeOp.DELETE:
        return ChangeEvent(op, _deleted_id(envelope.get("before"), key_id), lsn, committed_at, None)

    after = envelope.get("after")
    if not isinstance(after, Mapping):
        what = "null" if after is None else type(after).__name__
        raise PoisonEvent(f"op {op.value!r} ({op.name.lower()}) with 'after' {what}, not an object")
    if after.get("id") is None:
        raise PoisonEvent("row has no 'id'")
    document_id = _uuid(after["id"], "after.id")
    _check_key(key_id, document_id)
    document = _document(after, document_id, max_content_chars)
    return ChangeEvent(op, document_id, lsn, committed_at, document)


def _deleted_id(before: Any, key_id: uuid.UUID | None) -> uuid.UUID:
    """A delete's id: ``before.id`` (all a default replica identity keeps), else the key's."""
    if before is not None and not isinstance(before, Mapping):
        raise PoisonEvent(f"'before' of a delete is a JSON {type(before).__name__}, not an object")
    row_id = before.get("id") if before is not None else None
    if row_id is None:
        if key_id is None:
            raise PoisonEvent("delete without an id: neither 'before.id' nor the key's 'id' is set")
        return key_id
    document_id = _uuid(row_id, "before.id")
    _check_key(key_id, document_id)
    return document_id


def _parse_json(data: bytes | str, what: str) -> Any:
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise PoisonEvent(f"{what} is not UTF-8: {exc}") from None
    if not data.strip():
        raise PoisonEvent(f"{what} is empty (a tombstone is a null {what}, not an empty one)")
    try:
        return json.loads(data)
    except json.JSONDecodeError as exc:
        raise PoisonEvent(f"{what} is not JSON: {exc}") from None


def _unwrap(obj: Any, what: str) -> Mapping[str, Any]:
    """The envelope itself, with the ``schemas.enable=true`` wrapper taken off."""
    if not isinstance(obj, Mapping):
        raise PoisonEvent(f"{what} is a JSON {type(obj).__name__}, not an object")
    if "payload" in obj and "schema" in obj:
        obj = obj["payload"]
        if not isinstance(obj, Mapping):
            raise PoisonEvent(f"{what} 'payload' is a JSON {type(obj).__name__}, not an object")
    return obj


def _integer(source: Mapping[str, Any], name: str) -> int:
    value = source.get(name)
    if value is None:
        raise PoisonEvent(f"envelope has no 'source.{name}'")
    if isinstance(value, bool) or not isinstance(value, int):
        raise PoisonEvent(f"'source.{name}' is {value!r}, not an integer")
    return value


def _uuid(value: Any, where: str) -> uuid.UUID:
    if not isinstance(value, str):
        raise PoisonEvent(f"{where} is {value!r}, not a UUID string")
    try:
        return uuid.UUID(value)
    except ValueError:
        raise PoisonEvent(f"{where} is {value!r}, not a valid UUID") from None


def _key_id(key: bytes | str | None) -> uuid.UUID | None:
    """The id in the message key (``{"id": "<uuid>"}``), or None when there is no key."""
    if key is None:
        return None
    obj = _unwrap(_parse_json(key, "key"), "key")
    if obj.get("id") is None:
        raise PoisonEvent("key has no 'id'")
    return _uuid(obj["id"], "key.id")


def _check_key(key_id: uuid.UUID | None, row_id: uuid.UUID) -> None:
    if key_id is not None and key_id != row_id:
        raise PoisonEvent(f"key id {key_id} does not match row id {row_id}")


def _document(after: Mapping[str, Any], document_id: uuid.UUID, max_content_chars: int) -> RawDocument:
    row = dict(after)
    content = row.get("content")
    if isinstance(content, str) and len(content) > max_content_chars:
        raise PoisonEvent(
            f"document {document_id}: content of {len(content):,} characters exceeds the limit of "
            f"{max_content_chars:,}"
        )
    metadata = row.get("metadata")
    if metadata is None:
        row["metadata"] = {}
    elif isinstance(metadata, str):  # io.debezium.data.Json: the jsonb value as JSON text
        try:
            row["metadata"] = json.loads(metadata)
        except json.JSONDecodeError as exc:
            raise PoisonEvent(f"document {document_id}: field 'metadata' is not JSON: {exc}") from None
    if not isinstance(row["metadata"], Mapping):
        raise PoisonEvent(
            f"document {document_id}: field 'metadata' is a JSON {type(row['metadata']).__name__}, "
            "not an object"
        )
    for column in _TIMESTAMP_COLUMNS:
        if row.get(column) is not None:
            row[column] = _timestamp(row[column], column, document_id)
    try:
        return RawDocument.model_validate(row)
    except ValidationError as exc:
        problems = "; ".join(
            f"field {'.'.join(str(p) for p in err['loc']) or '<row>'!r}: {err['msg']}"
            for err in exc.errors(include_url=False)
        )
        raise PoisonEvent(f"document {document_id} is not a valid raw document: {problems}") from None


def _timestamp(value: Any, column: str, document_id: uuid.UUID) -> datetime:
    """A timestamptz column (ISO-8601 text); a value without an offset is taken as UTC."""
    if not isinstance(value, str):
        raise PoisonEvent(
            f"document {document_id}: field {column!r} is {value!r}, not an ISO-8601 timestamp string"
        )
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise PoisonEvent(
            f"document {document_id}: field {column!r} is {value!r}, not an ISO-8601 timestamp"
        ) from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)

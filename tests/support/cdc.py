"""Watch ``raw_documents`` the way change capture does: a pgoutput logical slot, read over SQL."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg


class ChangeWatcher:
    def __init__(self, conn: psycopg.Connection[Any], slot: str, publication: str) -> None:
        self._conn = conn
        self.slot = slot
        self.publication = publication

    def changes(self) -> Counter[str]:
        """Counts of insert/update/delete events since the slot was made (peeked, not consumed)."""
        rows = self._conn.execute(
            "SELECT data FROM pg_logical_slot_peek_binary_changes(%s, NULL, NULL,"
            " 'proto_version', '1', 'publication_names', %s)",
            (self.slot, self.publication),
        ).fetchall()
        self._conn.commit()
        names = {b"I": "insert", b"U": "update", b"D": "delete"}
        return Counter(names[bytes(r[0][:1])] for r in rows if bytes(r[0][:1]) in names)


@contextmanager
def watch_raw_documents(dsn: str) -> Iterator[ChangeWatcher]:
    """A pgoutput slot on a publication of ``raw_documents``; both dropped on exit (slots pin WAL)."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"CREATE PUBLICATION {name} FOR TABLE raw_documents")
        conn.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (name,))
        conn.autocommit = False
        try:
            yield ChangeWatcher(conn, name, name)
        finally:
            conn.rollback()
            conn.autocommit = True
            conn.execute("SELECT pg_drop_replication_slot(%s)", (name,))
            conn.execute(f"DROP PUBLICATION {name}")

"""Open the document store the settings describe: an external DSN, or the embedded server."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from twin.adapters.postgres import PostgresDocumentStore, connect, migrate
from twin.settings import Settings


def database_dsn(settings: Settings) -> str:
    """The DSN to use, starting the embedded Postgres first when no external one is configured."""
    if settings.database.dsn is not None:
        return settings.database.dsn.get_secret_value()
    from twin.adapters.embedded_postgres import EmbeddedPostgres

    return EmbeddedPostgres(settings.database.embedded_dir, settings.database.embedded_port).start()


@contextmanager
def open_store(settings: Settings) -> Iterator[PostgresDocumentStore]:
    """A migrated document store; the connection closes on exit (the embedded server keeps running)."""
    with connect(database_dsn(settings), connect_timeout_s=settings.database.connect_timeout_s) as conn:
        migrate(conn)
        yield PostgresDocumentStore(conn)

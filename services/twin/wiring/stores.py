"""Postgres: the embedded server or an external one, migrated connections, the document and
feature stores, retrieval.

Part of the composition root (:mod:`twin.wiring`): only it turns ``Settings`` into adapters.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from twin.settings import Settings

if TYPE_CHECKING:
    from psycopg import Connection

    from twin.adapters.pgvector_retriever import PgRetriever
    from twin.adapters.pgvector_store import PgFeatureStore
    from twin.adapters.postgres import PostgresDocumentStore


def database_dsn(settings: Settings) -> str:
    """The DSN to use, starting the embedded Postgres first when no external one is configured."""
    if settings.database.dsn is not None:
        return settings.database.dsn.get_secret_value()
    from twin.adapters.embedded_postgres import EmbeddedPostgres

    return EmbeddedPostgres(settings.database.embedded_dir, settings.database.embedded_port).start()


def embedded_postgres(settings: Settings) -> Any:
    """The embedded server the settings describe (``twin db start|stop|status``)."""
    from twin.adapters.embedded_postgres import EmbeddedPostgres

    return EmbeddedPostgres(settings.database.embedded_dir, settings.database.embedded_port)


@contextmanager
def connection(settings: Settings, dsn: str | None = None) -> Iterator[Connection[Any]]:
    """A connection to the migrated database; closed on exit (the embedded server keeps running)."""
    from twin.adapters.postgres import connect, migrate

    with connect(
        dsn or database_dsn(settings), connect_timeout_s=settings.database.connect_timeout_s
    ) as conn:
        migrate(conn)
        yield conn


@contextmanager
def document_store(settings: Settings) -> Iterator[PostgresDocumentStore]:
    """The ``raw_documents`` store (port :class:`twin.ports.DocumentStore`)."""
    from twin.adapters.postgres import PostgresDocumentStore

    with connection(settings) as conn:
        yield PostgresDocumentStore(conn)


@contextmanager
def feature_store(
    settings: Settings, *, dsn: str | None = None, dimension: int | None = None
) -> Iterator[PgFeatureStore]:
    """The feature store (ports :class:`~twin.ports.FeatureStore` and
    :class:`~twin.ports.TrainingSnapshot`), optionally checking the vector dimension."""
    from twin.adapters.pgvector_store import PgFeatureStore

    with connection(settings, dsn) as conn:
        yield PgFeatureStore(conn, dimension=dimension)


@contextmanager
def retriever(settings: Settings, *, dimension: int | None = None) -> Iterator[PgRetriever]:
    """Profile-scoped retrieval (port :class:`twin.ports.Retriever`) on its own connection."""
    from twin.adapters.pgvector_retriever import PgRetriever

    with connection(settings) as conn:
        yield PgRetriever(conn, dimension=dimension)

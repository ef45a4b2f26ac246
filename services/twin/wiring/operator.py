"""The TwinProfile operator's port: each profile's stored data, in Postgres and the model registry.

Part of the composition root (:mod:`twin.wiring`): only it turns ``Settings`` into adapters.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from typing import TYPE_CHECKING, Any

from twin.settings import Settings, env_name
from twin.wiring.training import model_registry

if TYPE_CHECKING:
    from psycopg import Connection

    from twin.ports import ProfileData


def profile_data(settings: Settings) -> ProfileData:
    """The profiles' stored data (port :class:`twin.ports.ProfileData`) for the operator: the
    external Postgres of ``TWIN_DATABASE__DSN`` (an operator never starts an embedded one: the
    crawl Jobs and feature workers could not reach it) and the model registry. Nothing connects
    until a method is called."""
    from twin.adapters.profile_data import PgProfileData

    return PgProfileData(partial(_operator_connection, settings), model_registry(settings))


# Migrations are applied once per process; afterwards a connection is just a connection.
_migrated: set[str] = set()


@contextmanager
def _operator_connection(settings: Settings) -> Iterator[Connection[Any]]:
    """A short-lived connection that fails within the connect timeout when Postgres is down."""
    from twin.adapters.postgres import connect, migrate
    from twin.domain.errors import DependencyNotReady

    if settings.database.dsn is None:
        variable = env_name("database", "dsn")
        raise DependencyNotReady(f"the operator needs an external Postgres: set {variable}")
    dsn = settings.database.dsn.get_secret_value()
    timeout = settings.database.connect_timeout_s
    with connect(dsn, timeout_s=timeout, connect_timeout_s=timeout) as conn:
        if dsn not in _migrated:
            migrate(conn)
            _migrated.add(dsn)
        yield conn

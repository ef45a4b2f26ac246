"""``twin db start|stop|status``: the embedded Postgres."""

from __future__ import annotations

import typer

from twin import wiring
from twin.cli.common import console, db_app, load_settings


@db_app.command("start")
def db_start() -> None:
    """Start the embedded Postgres (idempotent) and print its DSN."""
    console.print(wiring.database_dsn(load_settings()))


@db_app.command("stop")
def db_stop() -> None:
    """Stop the embedded Postgres."""
    wiring.embedded_postgres(load_settings()).stop()


@db_app.command("status")
def db_status() -> None:
    """Say whether the embedded Postgres runs."""
    pg = wiring.embedded_postgres(load_settings())
    running = pg.is_running()
    console.print(f"embedded Postgres at {pg.dsn()}: {'running' if running else 'stopped'}")
    raise typer.Exit(0 if running else 1)

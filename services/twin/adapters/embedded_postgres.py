"""The embedded runtime's Postgres 16 + pgvector, from the ``pgserver`` wheel, over TCP.

``pgserver`` itself listens on a Unix socket only; Debezium needs TCP and ``wal_level=logical``,
so we run its bundled ``initdb``/``pg_ctl`` ourselves. The server outlives the command that
started it (so ``twin crawl`` and, later, ``twin features`` share it) until ``twin db stop``.
As root, Postgres refuses to run, so it runs as a ``pgserver`` system user (pgserver's recipe).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import warnings
from dataclasses import dataclass
from pathlib import Path

from twin.domain.errors import DependencyNotReady

DATABASE = "twin"
_SERVER_OPTIONS = (
    "-c listen_addresses=127.0.0.1 -c unix_socket_directories='' "
    "-c wal_level=logical -c max_replication_slots=16 -c max_wal_senders=16 "
    "-c shared_buffers=512MB -c maintenance_work_mem=256MB -c max_connections=100"
)


def _pgserver_import() -> None:
    """Import pgserver once, quietly: its package import warns about XDG_RUNTIME_DIR, which we never use."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver  # noqa: F401


def _bin(name: str) -> str:
    _pgserver_import()
    from pgserver._commands import POSTGRES_BIN_PATH

    return str(POSTGRES_BIN_PATH / name)


@dataclass
class EmbeddedPostgres:
    data_dir: Path
    port: int

    @property
    def _pgdata(self) -> Path:
        return self.data_dir / "pgdata"

    @property
    def log_file(self) -> Path:
        return self._pgdata / "server.log"

    def dsn(self, database: str = DATABASE) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _run_as(self) -> str | None:
        if os.geteuid() != 0:
            return None
        _pgserver_import()
        from pgserver.utils import ensure_folder_permissions, ensure_prefix_permissions, ensure_user_exists

        ensure_user_exists("pgserver")
        ensure_prefix_permissions(self._pgdata)
        bin_dir = Path(_bin("pg_ctl")).parent
        ensure_prefix_permissions(bin_dir)
        ensure_folder_permissions(bin_dir, 0o055)
        ensure_folder_permissions(bin_dir.parent / "lib", 0o044)
        return "pgserver"

    def _pg(self, *args: str, user: str | None, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            list(args), user=user, check=check, text=True, capture_output=True, timeout=120, cwd="/"
        )

    def is_running(self) -> bool:
        if not (self._pgdata / "PG_VERSION").exists():
            return False
        result = self._pg(_bin("pg_ctl"), "-D", str(self._pgdata), "status", user=self._run_as(), check=False)
        return result.returncode == 0

    def start(self) -> str:
        """Initialise the data directory if needed and start the server; return its DSN. Idempotent."""
        self._pgdata.mkdir(parents=True, exist_ok=True)
        user = self._run_as()
        if user is not None:
            import shutil

            shutil.chown(self._pgdata, user, user)
            self._pgdata.chmod(0o700)
        if not (self._pgdata / "PG_VERSION").exists():
            self._pg(
                _bin("initdb"),
                "-D",
                str(self._pgdata),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                user=user,
            )
        if not self.is_running():
            result = self._pg(
                _bin("pg_ctl"),
                "-D",
                str(self._pgdata),
                "-w",
                "-t",
                "60",
                "-l",
                str(self.log_file),
                "-o",
                f"-p {self.port} {_SERVER_OPTIONS}",
                "start",
                user=user,
                check=False,
            )
            if result.returncode != 0:
                tail = self.log_file.read_text(errors="replace")[-2000:] if self.log_file.exists() else ""
                where = f"127.0.0.1:{self.port}"
                raise DependencyNotReady(
                    f"embedded Postgres did not start on {where}: {result.stderr.strip()}\n{tail}"
                )
        self._ensure_database()
        return self.dsn()

    def _ensure_database(self) -> None:
        import psycopg

        from twin.adapters.postgres import connect

        with connect(self.dsn("postgres")) as conn:
            conn.autocommit = True
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)).fetchone()
            if not exists:
                # A concurrent starter may win the race: that is fine.
                with contextlib.suppress(psycopg.errors.DuplicateDatabase):
                    conn.execute(f"CREATE DATABASE {DATABASE}")

    def restart(self) -> str:
        """Stop (fast: clients are disconnected) and start again; the DSN stays the same."""
        self.stop()
        return self.start()

    def stop(self) -> None:
        if self.is_running():
            user = self._run_as()
            self._pg(_bin("pg_ctl"), "-D", str(self._pgdata), "-w", "-m", "fast", "stop", user=user)

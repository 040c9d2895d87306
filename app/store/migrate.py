"""Apply the schema migrations (Alembic) to the configured database, under a lock.

Replicas that start together (``backchannel serve`` migrates before it listens) or a
``backchannel migrate`` run beside them must not race: each migration runs on one connection
that first takes a lock, and Alembic reads the current revision only once it holds it, so the
second process waits and then finds the database already at head.

- PostgreSQL: a session-level advisory lock (``pg_advisory_lock``), released when that
  connection closes, so a killed process never leaves it held.
- SQLite: the database's own write lock. The migration runs in one ``BEGIN IMMEDIATE``
  transaction (DDL is transactional in SQLite), waiting up to ten minutes for another.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, create_engine
from sqlalchemy.pool import NullPool

from app.settings import Settings
from app.store.dialect import dialect_of
from app.store.engine import make_engine

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# The advisory lock's key: any constant every Backchannel process agrees on ("bchmigr" in hex-ish).
ADVISORY_LOCK_KEY = 0x0BC4_3161
SQLITE_LOCK_WAIT_SECONDS = 600.0

log = logging.getLogger("backchannel.migrate")


class DuplicateConsoleEmails(ValueError):
    """Migration 0003 found console accounts sharing an email (ignoring case): which ones
    must be renamed or removed before a console email can be unique across the server."""

    def __init__(self, duplicates: dict[str, list[tuple[str, str]]]) -> None:
        self.duplicates = duplicates
        lines = [
            f"  {email}: " + ", ".join(f"workspace {ws} (console user {user})" for ws, user in found)
            for email, found in sorted(duplicates.items())
        ]
        super().__init__(
            "Cannot upgrade: a console account's email must be unique across the server, and "
            f"{len(duplicates)} email(s) belong to several accounts:\n" + "\n".join(lines) + "\n"
            "Give each of those accounts its own email (or delete the extra ones), then run "
            "`backchannel migrate` again. Nothing was changed."
        )


def alembic_config(settings: Settings) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", settings.sqlalchemy_url.replace("%", "%%"))
    config.attributes["settings"] = settings
    return config


def upgrade(settings: Settings, revision: str = "head") -> None:
    with migration_lock(settings) as connection:
        config = alembic_config(settings)
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


@contextmanager
def migration_lock(settings: Settings) -> Iterator[Connection]:
    """A connection that holds the migration lock; Alembic runs on it."""
    dialect = dialect_of(settings)
    if dialect.advisory_locks:
        engine = create_engine(settings.sqlalchemy_url, poolclass=NullPool)
    else:
        # make_engine's writers begin with BEGIN IMMEDIATE: the write lock comes with the
        # transaction Alembic opens before it reads alembic_version.
        engine = make_engine(settings.model_copy(update={"database_busy_timeout_seconds": SQLITE_LOCK_WAIT_SECONDS}))
    try:
        with engine.connect() as connection:
            if dialect.advisory_locks:
                _take_advisory_lock(connection)
            yield connection
    finally:
        engine.dispose()


def _take_advisory_lock(connection: Connection) -> None:
    if not connection.exec_driver_sql("SELECT pg_try_advisory_lock(%s)", (ADVISORY_LOCK_KEY,)).scalar():
        log.warning("waiting for another process to finish migrating this database")
        connection.exec_driver_sql("SELECT pg_advisory_lock(%s)", (ADVISORY_LOCK_KEY,))
    connection.commit()  # end the implicit transaction; the session-level lock stays until close


def current_head() -> str | None:
    return ScriptDirectory.from_config(alembic_config(Settings())).get_current_head()

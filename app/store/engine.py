"""Engine and session factories. Nothing connects at import time."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import orjson
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlmodel import Session, create_engine

from app import errors
from app.settings import Settings

T = TypeVar("T")


def _json_dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


# JSON columns (message parts, event payloads, properties) go through orjson both ways.
_JSON = {"json_serializer": _json_dumps, "json_deserializer": orjson.loads}


def make_engine(settings: Settings, *, for_writes: bool = True) -> Engine:
    """On SQLite, writers get ``BEGIN IMMEDIATE`` and readers a plain deferred ``BEGIN``,
    so reads never queue behind the write lock."""
    if settings.is_sqlite:
        engine = create_engine(
            settings.sqlalchemy_url,
            **_JSON,
            connect_args={"check_same_thread": False, "timeout": settings.database_busy_timeout_seconds},
            pool_size=8,
            max_overflow=8,
        )
        _tune_sqlite(engine, immediate=for_writes, busy_ms=int(settings.database_busy_timeout_seconds * 1000))
        return engine
    return create_engine(
        settings.sqlalchemy_url,
        **_JSON,
        pool_size=int(os.environ.get("BACKCHANNEL_DB_POOL_SIZE", "10")),
        max_overflow=10,
        pool_pre_ping=True,
        pool_recycle=1800,
    )


def _tune_sqlite(engine: Engine, *, immediate: bool, busy_ms: int) -> None:
    """WAL, a busy timeout, foreign keys, and ``BEGIN IMMEDIATE`` so writers queue up
    on the write lock instead of failing to upgrade a read lock mid-transaction."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={busy_ms}")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def get_in_workspace(s: Session, model: type[T], row_id: str, workspace_id: str, what: str) -> T:
    """The row with this id in this workspace; another workspace's row is a 404 like a missing one."""
    row = s.get(model, row_id)
    if row is None or getattr(row, "workspace_id", None) != workspace_id:
        raise errors.NotFound(f"No such {what}.")
    return row


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """One transaction: commit on success, roll back on any error."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise

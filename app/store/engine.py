"""Engine and session factories. Nothing connects at import time."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import orjson
from sqlalchemy.engine import Engine
from sqlmodel import Session, create_engine

from app import errors
from app.settings import Settings
from app.store.dialect import dialect_of

T = TypeVar("T")


def _json_dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


# JSON columns (message parts, event payloads, properties) go through orjson both ways.
_JSON = {"json_serializer": _json_dumps, "json_deserializer": orjson.loads}


def make_engine(settings: Settings, *, for_writes: bool = True, inline: bool = False) -> Engine:
    """An engine for writers or, where the dialect keeps them apart, for readers
    (``Dialect.separate_read_engine``: on SQLite writers begin ``IMMEDIATE``, readers deferred).
    ``inline``: the writer on the event loop (``make_inline_engine``)."""
    dialect = dialect_of(settings)
    options = dialect.engine_options(settings)
    if inline:  # never waits: not for the lock (``Dialect.tune``), not for a pooled connection
        options.update(pool_size=1, max_overflow=4, pool_timeout=0)
        options["connect_args"] = {**options.get("connect_args", {}), "timeout": 0}
    engine = create_engine(settings.sqlalchemy_url, **_JSON, **options)
    dialect.tune(engine, settings, for_writes=for_writes, inline=inline)
    return engine


def make_inline_engine(settings: Settings) -> Engine | None:
    """Where the dialect allows writes on the event loop (``Dialect.inline_writes``): the
    engine of those, which never waits for a lock (``Dialect.tune``); else None. One
    connection is enough (the loop runs one transaction at a time); a few more may open
    rather than make the loop wait for one."""
    return make_engine(settings, inline=True) if dialect_of(settings).inline_writes else None


def make_engines(settings: Settings) -> tuple[Engine, Engine]:
    """The write engine and the read engine (the same one unless the dialect keeps them apart)."""
    engine = make_engine(settings)
    if dialect_of(settings).separate_read_engine:
        return engine, make_engine(settings, for_writes=False)
    return engine, engine


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

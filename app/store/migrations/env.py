"""Alembic environment: the URL and metadata come from Backchannel's own settings and models."""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

import app.store.tables  # noqa: F401  (registers the tables)
from app.settings import Settings
from app.store.dialect import dialect_of
from app.store.engine import make_engine
from app.store.search import outside_the_models

config = context.config
target_metadata = SQLModel.metadata


def run_migrations_online() -> None:
    connectable = config.attributes.get("connection")
    if connectable is not None:
        context.configure(
            connection=connectable,
            target_metadata=target_metadata,
            render_as_batch=dialect_of(connectable).render_as_batch,
            include_name=outside_the_models,
            # One transaction for the whole upgrade, on SQLite too (its DDL is transactional;
            # Alembic otherwise commits after each migration there): the write lock that
            # migrate.migration_lock relies on is held to the end, so a second process never
            # reads a half-upgraded revision and runs the same migration again.
            transactional_ddl=True,
        )
        with context.begin_transaction():
            context.run_migrations()
        return
    settings: Settings = config.attributes.get("settings") or Settings()
    engine = make_engine(settings, for_writes=False)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=dialect_of(settings).render_as_batch,
            compare_type=True,
            include_name=outside_the_models,
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run_migrations_online()

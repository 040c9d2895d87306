"""Migrations build the whole schema from an empty database, on SQLite and on PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlmodel import SQLModel

import app.models  # noqa: F401
from app.db import make_engine
from app.migrate import current_head, upgrade
from app.settings import Settings


def assert_schema_matches_models(settings: Settings) -> None:
    engine = make_engine(settings, for_writes=False)
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
            tables = set(inspect(conn).get_table_names())
            version = conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
    finally:
        engine.dispose()
    assert diff == [], f"models and migrations differ: {diff}"
    assert set(SQLModel.metadata.tables) <= tables
    assert version == current_head()


def test_sqlite_migrates_from_empty_and_is_idempotent(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path}/fresh.db", env="test")
    upgrade(settings)
    upgrade(settings)  # a second run is a no-op
    assert_schema_matches_models(settings)
    engine = make_engine(settings, for_writes=False)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    engine.dispose()


@pytest.mark.postgres
def test_postgres_migrates_from_empty(postgres_database: str) -> None:
    settings = Settings(database_url=postgres_database, env="test")
    upgrade(settings)
    assert_schema_matches_models(settings)

"""Migrations build the whole schema from an empty database, on SQLite and on PostgreSQL, and
processes that migrate one database at the same time (replicas starting together) do not race."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlmodel import SQLModel

import app.store.tables  # noqa: F401
from app.settings import Settings
from app.store.engine import make_engine
from app.store.migrate import ADVISORY_LOCK_KEY, current_head, upgrade
from app.store.search import outside_the_models
from tests.conftest import ROOT


def assert_schema_matches_models(settings: Settings) -> None:
    engine = make_engine(settings, for_writes=False)
    try:
        with engine.connect() as conn:
            # What the search index adds beside its table (FTS5, a GIN index) is not in the models.
            context = MigrationContext.configure(conn, opts={"include_name": outside_the_models})
            diff = compare_metadata(context, SQLModel.metadata)
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


RACE = """
import sys, time
from pathlib import Path
from app.store.migrate import upgrade
from app.settings import Settings
settings = Settings(database_url=sys.argv[1], env="test")  # imports done: wait for the start line
go = Path(sys.argv[2])
while not go.exists():
    time.sleep(0.002)
upgrade(settings)
"""


def migrate_together(database_url: str, tmp_path: Path, processes: int = 2) -> None:
    """Start several migrations of one fresh database at the same instant; all must succeed."""
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RACE, database_url, str(go)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(processes)
    ]
    time.sleep(3)  # every process has imported Alembic and the models and is polling for "go"
    go.touch()
    outputs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0] * processes, "\n".join(outputs)


def test_sqlite_migrations_started_together_do_not_race(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/race.db"
    migrate_together(url, tmp_path)
    assert_schema_matches_models(Settings(database_url=url, env="test"))


@pytest.mark.postgres
def test_postgres_migrations_started_together_do_not_race(postgres_database: str, tmp_path: Path) -> None:
    migrate_together(postgres_database, tmp_path, processes=3)
    assert_schema_matches_models(Settings(database_url=postgres_database, env="test"))


@pytest.mark.postgres
def test_backchannel_migrate_waits_for_the_advisory_lock(postgres_database: str) -> None:
    """While another process holds the migration lock, ``backchannel migrate`` waits for it."""
    import psycopg

    env = {**os.environ, "BACKCHANNEL_DATABASE_URL": postgres_database}
    with psycopg.connect(postgres_database, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (ADVISORY_LOCK_KEY,))
        proc = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "migrate", "--json"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and not _waiting_for_lock(holder):
                assert proc.poll() is None, proc.communicate()
                time.sleep(0.1)
            assert _waiting_for_lock(holder), "backchannel migrate never asked for the lock"
            time.sleep(0.5)
            assert proc.poll() is None, "migrated while another process held the lock"
        finally:
            holder.execute("SELECT pg_advisory_unlock(%s)", (ADVISORY_LOCK_KEY,))
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "waiting for another process" in err
    assert json.loads(out) == {"status": "ok", "revision": current_head()}
    assert_schema_matches_models(Settings(database_url=postgres_database, env="test"))


def _waiting_for_lock(conn: Any) -> bool:
    row = conn.execute(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND objid = %s",
        (ADVISORY_LOCK_KEY & 0xFFFFFFFF,),
    ).fetchone()
    return bool(row and row[0])

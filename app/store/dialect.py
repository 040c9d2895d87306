"""Every difference between SQLite and PostgreSQL, in one place.

The rest of the code asks a ``Dialect`` what the database can do (``row_locks``,
``one_writer``, …) instead of asking which database it is. ``dialect_of(settings)``,
``dialect_of(engine)`` and ``Tx.dialect`` all return the one instance per database kind.

It also spells the hot paths' prepared statements (``sql.py``) for the DB-API driver: they
are written with ``?`` for a parameter and ``?j`` for a JSON parameter, and timestamps
travel as the driver wants them. Timestamps are stored as naive UTC (``tables.UTCDateTime``),
in SQLite as SQLAlchemy's ``YYYY-MM-DD HH:MM:SS.ffffff`` text, and come back aware.
"""

from __future__ import annotations

import os
import sqlite3
import time
from datetime import UTC, datetime
from typing import Any, cast

import orjson
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import DBAPIError, DisconnectionError

from app.ids import isoformat, utc_text
from app.settings import Settings


class Dialect:
    """What one kind of database can do, and how its driver spells statements and values."""

    __slots__ = (
        "name", "sqlite", "one_writer", "separate_read_engine", "render_as_batch", "row_locks",
        "advisory_locks", "plans_by_statistics", "take_sync_seq", "sync_seq_expression", "sync_settled",
        "reclaims_at_once", "inline_writes", "_rendered",
    )  # fmt: skip

    def __init__(self, name: str) -> None:
        self.name = name
        sqlite = self.sqlite = name == "sqlite"
        # One writer at a time (SQLite's database-wide write lock): one writer lane, and no
        # separate background lane, since nothing can run beside it anyway.
        self.one_writer = sqlite
        # Readers get an engine of their own whose BEGIN is deferred, so reads never queue
        # behind the write lock that writers take with ``BEGIN IMMEDIATE``. (PostgreSQL reads
        # and writes share one pool.)
        self.separate_read_engine = sqlite
        # Alembic's batch mode (copy-and-move a table to alter it): SQLite's ALTER TABLE is minimal.
        self.render_as_batch = sqlite
        # Row locks: ``FOR UPDATE [SKIP LOCKED]``, ``FOR NO KEY UPDATE`` / ``FOR KEY SHARE``.
        # On SQLite the one writer holds the whole database, so there is nothing to lock or skip.
        self.row_locks = not sqlite
        # Migrations serialise on ``pg_advisory_lock``; on SQLite, on the database's write lock.
        self.advisory_locks = not sqlite
        # PostgreSQL's planner weighs indexes by their statistics; SQLite's (never ANALYZEd
        # here) takes the first index that fits, so some queries steer it off one.
        self.plans_by_statistics = not sqlite
        # The change order a CRM syncs by (``sql.next_sync_seq``), one value per transaction.
        # SQLite commits transactions in the order they take its one write lock, so a counter
        # bumped in the transaction is in commit order. PostgreSQL's writers commit side by
        # side in any order, so the value is the transaction id, and a list shows a row only
        # once every transaction that could still commit with a lower id has ended
        # (``sync_settled``: below the xmin of the statement's own snapshot). A change is then
        # listed late (after the transactions running beside it), never skipped.
        # ``sync_seq_expression``: the same value as SQL that a statement can use in place (the
        # message path's ``seq`` bump takes it so), where it is one.
        if sqlite:
            self.take_sync_seq = "UPDATE sync_clock SET value = value + 1 WHERE id = 1 RETURNING value"
            self.sync_seq_expression = ""
            self.sync_settled = ""
        else:
            self.sync_seq_expression = "pg_current_xact_id()::text::bigint"
            self.take_sync_seq = f"SELECT {self.sync_seq_expression}"
            self.sync_settled = "{column} < pg_snapshot_xmin(pg_current_snapshot())::text::bigint"
        # After an erasure, ``reclaim_erased`` is cheap on SQLite (a WAL checkpoint) and runs at
        # once; PostgreSQL's VACUUM is left to the background job.
        self.reclaims_at_once = sqlite
        # Short writes may run on the event loop itself (``Runner.write(quick=True)``): SQLite
        # runs in this process, so a transaction of a batch of messages costs only CPU, and
        # handing it to a worker thread cost more than the transaction (docs/performance.md,
        # section 16). A database across a network never: a round trip would stall the loop.
        self.inline_writes = sqlite
        self._rendered: dict[str, str] = {}

    def __repr__(self) -> str:
        return f"Dialect({self.name!r})"

    def json_array_has(self, column: str, param: str) -> str:
        """SQL that is true when the JSON array ``column`` holds the string bound to ``:param``."""
        if self.sqlite:
            return f"EXISTS (SELECT 1 FROM json_each({column}) WHERE json_each.value = :{param})"
        return f"EXISTS (SELECT 1 FROM json_array_elements_text({column}) AS tag(value) WHERE tag.value = :{param})"

    # --- full-text search (``app/store/search.py``) ---------------------------------------

    def text_match(self, entry: str, param: str) -> str:
        """SQL true when the ``search_entry`` row aliased ``entry`` matches the query bound to
        ``:param`` (made by ``text_query``): SQLite's FTS5 table ``search_fts``, PostgreSQL's GIN
        index over ``to_tsvector('simple', body)``."""
        if self.sqlite:
            return f"{entry}.id IN (SELECT rowid FROM search_fts WHERE search_fts MATCH :{param})"
        return f"to_tsvector('simple', {entry}.body) @@ to_tsquery('simple', :{param})"

    def text_query(self, terms: list[str]) -> str:
        """Every term, each as a prefix (``refun`` finds "refund"); terms are letters and digits
        only (``search.terms``), so nothing in them is query syntax."""
        if self.sqlite:
            return " ".join(f'"{t}"*' for t in terms)
        return " & ".join(f"{t}:*" for t in terms)

    def writer_lanes(self, configured: int) -> int:
        """Writer lanes for request writes (``BACKCHANNEL_DATABASE_WRITERS`` on PostgreSQL)."""
        return 1 if self.one_writer else max(1, configured)

    # --- engines ---------------------------------------------------------------------------

    def engine_options(self, settings: Settings) -> dict[str, Any]:
        if self.sqlite:
            return {
                # A statement cache larger than the default 128: multi-row inserts of rows held
                # back (``sql.Db.late``) have a text for each row count, and a miss is a prepare.
                "connect_args": {"check_same_thread": False, "timeout": settings.database_busy_timeout_seconds,
                                 "cached_statements": 512},  # fmt: skip
                "pool_size": 8,
                "max_overflow": 8,
            }
        return {
            "pool_size": int(os.environ.get("BACKCHANNEL_DB_POOL_SIZE", "10")),
            "max_overflow": 10,
            "pool_recycle": 1800,
        }  # liveness: pinged when idle a while (``tune``), not at every checkout

    def tune(self, engine: Engine, settings: Settings, *, for_writes: bool, inline: bool = False) -> None:
        """On SQLite: WAL, a busy timeout, foreign keys, and ``BEGIN IMMEDIATE`` for writers, so
        they queue up on the write lock instead of failing to upgrade a read lock mid-transaction
        (readers get a plain deferred ``BEGIN``).

        ``inline``: the writer whose transactions run on the event loop (``Runner``'s quick
        writes). It never waits: a write lock held elsewhere fails its ``BEGIN`` at once (the
        runner then waits in a worker thread), and it never checkpoints the WAL at a commit
        (``wal_autocheckpoint``: the copy and its fsync would stall the loop); the runner
        checkpoints in a worker thread instead (``checkpoint``)."""
        if not self.sqlite:
            _ping_when_idle(engine)
            return
        busy_ms = 0 if inline else int(settings.database_busy_timeout_seconds * 1000)
        begin = "BEGIN IMMEDIATE" if for_writes else "BEGIN"

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
            cur = dbapi_conn.cursor()
            # First: switching a fresh file to WAL takes a lock, and a second process doing
            # the same at that instant must wait for it rather than fail ("database is locked").
            cur.execute(f"PRAGMA busy_timeout={busy_ms}")
            _switch_to_wal(cur, 0 if inline else settings.database_busy_timeout_seconds)
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            # Deleted rows are overwritten with zeros, not left in free space: an erasure
            # (app/data/erasure.py) must remove the text from the file, not unlink it.
            cur.execute("PRAGMA secure_delete=ON")
            if inline:
                cur.execute("PRAGMA wal_autocheckpoint=0")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Any) -> None:
            # On the DB-API connection itself: through SQLAlchemy's execution path (a statement
            # object, an execution context, events) the BEGIN cost ~20 µs of a batch's ~110 µs
            # of transaction overhead. Errors come out as SQLAlchemy's (a locked database is
            # still an ``OperationalError``, a 503).
            try:
                conn.connection.driver_connection.execute(begin)
            except sqlite3.Error as exc:
                raise DBAPIError.instance(begin, (), exc, sqlite3.Error) from exc

    PING_AFTER_IDLE_SECONDS = 1.0

    def checkpoint(self, engine: Engine) -> tuple[int, int]:
        """SQLite: copy what the WAL holds into the database, without waiting for anyone
        (``wal_checkpoint(PASSIVE)``: frames a reader still needs stay for the next time).
        ``(frames in the WAL, frames copied)``. Once all are copied, the next write starts the
        WAL over from its beginning, so it does not grow."""
        with engine.connect() as conn:
            raw: Any = conn.connection.dbapi_connection
            _, frames, copied = raw.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        return frames, copied

    def reclaim_erased(self, engine: Engine, tables: tuple[str, ...], attempts: int = 20) -> bool:
        """After an erasure commits: make the deleted bytes leave the database files where the
        database allows it. Returns whether that completed.

        SQLite (``secure_delete`` on every connection) has zeroed the rows in the pages it
        wrote, but the WAL still holds earlier frames with the old page images: a
        ``wal_checkpoint(TRUNCATE)`` copies the WAL into the database and empties it. It cannot
        finish while a reader holds an old snapshot, so it is tried again a few times.
        PostgreSQL keeps dead row versions until ``VACUUM``; this runs a plain ``VACUUM`` of the
        touched tables (no exclusive lock: writers go on), which makes them unreachable and
        their space reusable. Bytes in free space, in WAL segments and in backups stay until
        overwritten or expired (docs/data.md).
        """
        if self.sqlite:
            with engine.connect() as conn:
                raw: Any = conn.connection.dbapi_connection
                for n in range(attempts):
                    busy = raw.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
                    if not busy:
                        return True
                    time.sleep(0.05 * (n + 1))
            return False
        with engine.connect() as conn:
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            conn.exec_driver_sql("VACUUM " + ", ".join(f'"{t}"' for t in tables))
        return True

    # --- prepared statements and values at the DB-API level ----------------------------------

    def sql(self, statement: str) -> str:
        rendered = self._rendered.get(statement)
        if rendered is None:
            rendered = statement
            if not self.row_locks:  # the one writer holds the whole database already
                rendered = rendered.replace(" FOR UPDATE", "")
            if self.sqlite:  # sqlite3 takes ``?``; psycopg ``%s``, and JSON cast from text
                rendered = rendered.replace("?j", "?")
            else:
                rendered = rendered.replace("?j", "%s::json").replace("?", "%s")
            self._rendered[statement] = rendered
        return rendered

    def ts(self, value: datetime) -> Any:
        if self.sqlite:  # "YYYY-MM-DD HH:MM:SS.ffffff" in UTC
            text = utc_text(value)
            return f"{text[:10]} {text[11:]}"
        if value.tzinfo is not UTC:
            value = value.astimezone(UTC) if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return value.replace(tzinfo=None)

    def ts_out(self, value: Any) -> datetime:
        if isinstance(value, str):
            if len(value) in (19, 26):  # SQLite's "YYYY-MM-DD HH:MM:SS[.ffffff]", in UTC
                # Read with its offset rather than ``replace(tzinfo=UTC)`` afterwards: that
                # parses its keywords the slow way (2 µs; the row of every message's bump).
                return datetime.fromisoformat(value + "+00:00")
            value = datetime.fromisoformat(value)
        return cast(datetime, value).replace(tzinfo=UTC)

    def iso(self, value: Any) -> str | None:
        """A stored timestamp as the API shows it (``ids.isoformat``), without a datetime in
        between where the stored text already says it."""
        if isinstance(value, str) and len(value) == 26 and value[10] == " ":
            return value[:10] + "T" + (value[11:19] if value.endswith(".000000") else value[11:]) + "Z"
        return isoformat(self.ts_out(value)) if value is not None else None

    def raw_json(self, value: Any) -> Any:
        """A stored JSON column, to be embedded as it is in a response (SQLite keeps the text)."""
        if isinstance(value, str):
            return orjson.Fragment(value)
        return value

    @staticmethod
    def json(value: Any) -> str | None:
        return None if value is None else orjson.dumps(value).decode()

    def json_out(self, value: Any) -> Any:
        return orjson.loads(value) if isinstance(value, str | bytes) else value


SQLITE = Dialect("sqlite")
POSTGRESQL = Dialect("postgresql")


def dialect_of(where: Settings | Engine | Connection | str) -> Dialect:
    """The dialect of a database: from its settings, an engine or connection, or a URL."""
    if isinstance(where, Settings):
        name = make_url(where.sqlalchemy_url).get_backend_name()
    elif isinstance(where, str):
        name = make_url(where).get_backend_name()
    else:
        name = where.dialect.name
    if name == "sqlite":
        return SQLITE
    if name == "postgresql":
        return POSTGRESQL
    raise ValueError(f"unsupported database: {name!r} (use sqlite:// or postgresql://)")


def _switch_to_wal(cur: Any, busy_timeout: float) -> None:
    """``PRAGMA journal_mode=WAL``, tried again while another connection holds the write lock.

    SQLite answers "database is locked" at once, without its busy handler, when a connection
    that reads the file wants the lock another one holds (a second process starting while the
    first migrates a fresh file): waiting is the only way, up to the busy timeout."""
    deadline = time.monotonic() + busy_timeout
    pause = 0.01
    while True:
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            return
        except Exception as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.2)


def _ping_when_idle(engine: Engine) -> None:
    """A pooled connection is pinged before use only when it has sat idle for
    ``Dialect.PING_AFTER_IDLE_SECONDS``: SQLAlchemy's ``pool_pre_ping`` pings at every checkout,
    a round trip per writer batch under load, where a connection checked in a moment ago is
    as alive as a ping would say. One found dead is replaced (SQLAlchemy retries the checkout);
    one that died within the second fails its statements like any lost connection (503), and
    the pool is then refreshed whole."""

    @event.listens_for(engine, "checkin")
    def _idle_from(_dbapi_conn: Any, record: Any) -> None:
        record.info["bc_idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _ping_if_idle(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get("bc_idle_since")
        if since is None or time.monotonic() - since < Dialect.PING_AFTER_IDLE_SECONDS:
            return  # just connected, or in use a moment ago
        try:
            engine.dialect.do_ping(dbapi_conn)
        except Exception as exc:
            raise DisconnectionError("the pooled connection did not answer a ping") from exc

"""The hot path's prepared SQL (``app/store/sql.py``) and the tables (``app/store/tables.py``)
cannot drift apart: each row class holds exactly its table's columns, a table that gains a
column its row class lacks is refused, and every statement runs against a freshly migrated
SQLite and (with ``BACKCHANNEL_TEST_POSTGRES_URL``) PostgreSQL database, its rows coming back
as they went in."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import Column, Integer, MetaData, Table

from app import errors
from app.ids import new_id, utcnow
from app.settings import Settings
from app.shapes import agent_json, message_json
from app.store import sql
from app.store.dialect import POSTGRESQL, SQLITE, dialect_of
from app.store.engine import make_engine, session_scope
from app.store.migrate import upgrade
from app.store.runner import Tx
from app.store.tables import Agent, ApiToken, Conversation, Message, User, WebhookEndpoint, Workspace
from tests.conftest import migrated_sqlite

ROW_SHAPES = [sql.CONVERSATION, sql.MESSAGE, sql.AGENT]


@pytest.mark.parametrize("shape", ROW_SHAPES, ids=lambda s: s.table)
def test_each_row_class_holds_exactly_its_tables_columns(shape: sql.Shape[Any]) -> None:
    fields = [f.name for f in dataclasses.fields(shape.row)]  # type: ignore[arg-type]
    table = Workspace.metadata.tables[shape.table]
    assert sorted(fields) == sorted(table.columns.keys())
    assert shape.names == tuple(fields)  # statements list the columns in the row class's order


def _widened(model: Any, extra: Column[Any]) -> Any:
    """The model's table with one more column, on a metadata of its own (the real one is untouched)."""
    table = Table(model.__tablename__, MetaData(), *(c._copy() for c in model.__table__.columns), extra)
    return type("Widened", (), {"__table__": table})


def test_a_column_added_to_a_table_but_not_its_row_class_is_refused() -> None:
    with pytest.raises(sql.TableDrift, match="priority"):
        sql.Shape(_widened(Conversation, Column("priority", Integer)), sql.ConversationRow)


def test_a_row_field_that_is_no_column_is_refused() -> None:
    @dataclasses.dataclass
    class WithExtra(sql.MessageRow):
        mood: str = ""

    with pytest.raises(sql.TableDrift, match="mood"):
        sql.Shape(Message, WithExtra)
    with pytest.raises(sql.TableDrift, match="nope"):
        sql.Shape(ApiToken, names=("id", "nope"))


def test_an_insert_must_give_every_column() -> None:
    with pytest.raises(sql.TableDrift):
        sql.insert_with(_widened(Agent, Column("rank", Integer)), sql.AGENT.names, {})
    assert sql.INSERT_DELIVERY.count("?") == len(sql.DELIVERY.names)


def test_dialects_are_told_apart_by_their_urls() -> None:
    assert dialect_of("sqlite:///x.db") is SQLITE
    assert dialect_of("postgresql+psycopg://u@h/db") is POSTGRESQL
    assert dialect_of(Settings(env="test", database_url="postgresql://u@h/db")) is POSTGRESQL
    assert SQLITE.one_writer and SQLITE.separate_read_engine and not SQLITE.row_locks
    assert POSTGRESQL.row_locks and POSTGRESQL.writer_lanes(4) == 4 and SQLITE.writer_lanes(4) == 1


# --- every statement, on each database ------------------------------------------------------------


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield migrated_sqlite(tmp_path)
        return
    url = request.getfixturevalue("postgres_database")
    upgrade(Settings(env="test", database_url=url))
    yield url


# The functions of sql.py that are no statement of their own.
NOT_STATEMENTS = {"db", "table_of", "insert_with", "dialect_of"}


def test_every_statement_runs_and_round_trips(database_url: str) -> None:
    settings = Settings(env="test", database_url=database_url)
    engine = make_engine(settings)
    called: set[str] = set()

    def run(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        called.add(fn.__name__)
        return fn(*args, **kwargs)

    now = utcnow().replace(microsecond=123456)
    try:
        with session_scope(engine) as s:
            s.add(Workspace(id="wsp_1", name="w", widget_key="wk_1", identity_secret="x"))
            s.flush()
            s.add(User(id="usr_1", workspace_id="wsp_1", external_id="u1"))
            s.add(Agent(id="agt_bot", workspace_id="wsp_1", name="Bot", kind="bot", is_default_bot=True))
            s.add(ApiToken(id="tok_1", workspace_id="wsp_1", name="t", prefix="bc_", token_hash="h1", scopes=["read"]))
            s.add(WebhookEndpoint(id="whe_1", workspace_id="wsp_1", url="https://example.com", secret="s"))
            s.flush()
            h = sql.db(s)
            assert run(sql.user_workspace, h, "usr_1") == "wsp_1"
            assert run(sql.default_bot_id, h, "wsp_1") == "agt_bot"
            bot = run(sql.agent, h, "agt_bot")
            assert bot is not None and bot.is_default_bot and agent_json(bot)["name"] == "Bot"
            assert run(sql.token_by_hash, h, "h1") == ("tok_1", "wsp_1", ["read"], False)
            assert run(sql.enabled_endpoints, h, "wsp_1") == [("whe_1", ["*"])]

            seq = run(sql.next_sync_seq, h)
            assert sql.next_sync_seq(h) == seq  # one value per transaction
            conv = sql.ConversationRow("cnv_1", "wsp_1", "usr_1", "open", None, 0, 0, 0, ["a"], {"k": 1}, now, now, seq, None, "bot")
            run(sql.insert_conversation, h, conv)
            assert run(sql.get_conversation, h, "wsp_1", "cnv_1", lock=True) == conv
            assert run(sql.newest_conversation, s, "wsp_1", "usr_1") == conv
            later = now + timedelta(seconds=1)
            bumped = run(sql.bump_conversation, h, "wsp_1", "cnv_1", later)
            assert (bumped.last_message_seq, bumped.updated_at) == (1, later)
            assert bumped.sync_seq == seq
            run(
                sql.update_conversation, h, "cnv_1",
                {"status": "resolved", "assignee_id": "agt_bot", "updated_at": now, "tags": ["b", "c"],
                 "properties": {"é": [1]}},
            )  # fmt: skip
            assert run(sql.conversation_seq, h, "cnv_1") == 1
            stored = sql.get_conversation(h, "wsp_1", "cnv_1")
            assert (stored.status, stored.assignee_id, stored.updated_at) == ("resolved", "agt_bot", now)
            assert (stored.tags, stored.properties) == (["b", "c"], {"é": [1]})

            first = sql.MessageRow(
                "msg_1", "wsp_1", "cnv_1", 1, "bot", "agt_bot", [{"text": {"content": "hi"}}], [], None, "c1", now, False
            )
            second = sql.MessageRow(
                "msg_2", "wsp_1", "cnv_1", 2, "user", "usr_1", [{"text": {"content": "é" * 50}}],
                [{"text": {"content": "ok"}}], {"message_id": "msg_1"}, None, later, False,
            )  # fmt: skip
            note = sql.MessageRow(
                "msg_3", "wsp_1", "cnv_1", 3, "agent", None, [{"text": {"content": "a note"}}], [], None, None, later,
                True,
            )  # fmt: skip
            run(sql.insert_message, h, first)
            sql.insert_message(h, second)
            sql.insert_message(h, note)
            assert run(sql.message_by_client_id, h, "cnv_1", "c1") == first
            assert run(sql.message_conversation_id, h, "msg_2") == "cnv_1"
            expected = [orjson.loads(orjson.dumps(message_json(m))) for m in (first, second, note)]
            assert expected[2]["private"] is True and expected[0]["private"] is False
            assert orjson.loads(orjson.dumps(run(sql.messages_json_after, s, "cnv_1", 0, 10))) == expected
            page = run(sql.messages_json_page, s, "cnv_1", 0, 10, 1)  # the first message already fills it
            assert orjson.loads(orjson.dumps(page)) == expected[:1]
            widget_page = sql.messages_json_page(s, "cnv_1", 0, 10, 10_000)  # never a private note
            assert orjson.loads(orjson.dumps(widget_page)) == expected[:2]

            run(sql.insert_event, h, "msg_evt", "wsp_1", "message.created", {"type": "message.created"}, now)
            run(sql.insert_deliveries, h, "wsp_1", "msg_evt", "message.created", ["whe_1"], lambda: new_id("dlv"), now)
            # What Tx.emit writes, read back through the ORM: the same tables.
            Tx(s).emit("wsp_1", "conversation.created", {"conversation": {"id": "cnv_1"}})
            events = s.connection().exec_driver_sql("SELECT count(*) FROM event").scalar()
            deliveries = (
                s.connection()
                .exec_driver_sql(
                    "SELECT count(*) FROM webhook_delivery WHERE status = 'pending' AND next_attempt_at IS NOT NULL"
                )
                .scalar()
            )
            assert (events, deliveries) == (2, 2)
            msg = s.get(Message, "msg_2")
            assert msg is not None and msg.reply_to == {"message_id": "msg_1"} and msg.created_at == later
            assert s.get(Conversation, "cnv_1").updated_at == now  # type: ignore[union-attr]

            # A writer's batch: the token brings its workspace's endpoints along (one round trip
            # on PostgreSQL), and on PostgreSQL bumps go ahead of the next round trip.
            h.facts.clear()
            h.writing = True
            assert sql.token_by_hash(h, "h1") == ("tok_1", "wsp_1", ["read"], False)
            assert h.facts[("endpoints", "wsp_1")] == [("whe_1", ["*"])]
            if h.dialect.row_locks:
                at = later + timedelta(seconds=1)
                run(sql.bump_ahead, h, ["cnv_1"], at)
                assert h.bumps_unused
                ahead = sql.bump_conversation(h, "wsp_1", "cnv_1", utcnow())  # taken, not bumped again
                assert (ahead.last_message_seq, ahead.updated_at, h.bumps_unused) == (2, at, False)
                assert sql.conversation_seq(h, "cnv_1") == 2
                run(sql.bump_ahead, h, ["cnv_1"], at)
                with pytest.raises(errors.NotFound):  # ahead by id alone: another workspace's is refused
                    sql.bump_conversation(h, "wsp_other", "cnv_1", at)
    finally:
        engine.dispose()
    statements = {
        name
        for name, fn in inspect.getmembers(sql, inspect.isfunction)
        if fn.__module__ == sql.__name__ and not name.startswith("_") and name not in NOT_STATEMENTS
    }
    if not dialect_of(database_url).row_locks:
        statements.discard("bump_ahead")  # PostgreSQL's alone
    assert statements <= called, f"untested statements in sql.py: {statements - called}"


def test_queued_inserts_go_out_as_one_statement_and_anything_else_as_it_is() -> None:
    """PostgreSQL: consecutive plain inserts fuse into one data-modifying ``WITH`` (parameters
    in their order); an update or an insert that returns rows is left as it is, in its place."""
    from app.store.sql import _fused

    queued: list[tuple[str, Any]] = [
        ("INSERT INTO a (x) VALUES (%s)", [1]),
        ("INSERT INTO b (y, z) VALUES (%s, %s)", [2, 3]),
        ("UPDATE c SET x = %s", [4]),
        ("INSERT INTO d (x) VALUES (%s)", [5]),
        ("INSERT INTO e (x) VALUES (%s) RETURNING x", [6]),
        ("INSERT INTO f (x) VALUES (%s)", [7]),
        ("INSERT INTO g (x) VALUES (%s)", [8]),
    ]
    assert _fused(queued) == [
        ("WITH w0 AS (INSERT INTO a (x) VALUES (%s)) INSERT INTO b (y, z) VALUES (%s, %s)", [1, 2, 3]),
        ("UPDATE c SET x = %s", [4]),
        ("INSERT INTO d (x) VALUES (%s)", [5]),
        ("INSERT INTO e (x) VALUES (%s) RETURNING x", [6]),
        ("WITH w0 AS (INSERT INTO f (x) VALUES (%s)) INSERT INTO g (x) VALUES (%s)", [7, 8]),
    ]
    # A blind last statement (one that reads nothing the inserts write) joins them.
    bump = ("UPDATE c SET x = x + 1 RETURNING x", [9])
    assert _fused([queued[0], queued[1], bump], last_blind=True) == [
        ("WITH w0 AS (INSERT INTO a (x) VALUES (%s)), w1 AS (INSERT INTO b (y, z) VALUES (%s, %s))"
         " UPDATE c SET x = x + 1 RETURNING x", [1, 2, 3, 9]),
    ]  # fmt: skip
    assert _fused([queued[2], bump], last_blind=True) == [queued[2], bump]
    # Two writes' inserts stay apart (each a statement of one shape), but a write's inserts still
    # join the next write's blind bump.
    from app.store.sql import _WRITE_DONE

    assert _fused([queued[0], _WRITE_DONE, queued[5], queued[6], _WRITE_DONE]) == [
        queued[0], ("WITH w0 AS (INSERT INTO f (x) VALUES (%s)) INSERT INTO g (x) VALUES (%s)", [7, 8]),
    ]  # fmt: skip
    assert _fused([queued[0], _WRITE_DONE, bump], last_blind=True) == [
        ("WITH w0 AS (INSERT INTO a (x) VALUES (%s)) UPDATE c SET x = x + 1 RETURNING x", [1, 9]),
    ]


def test_a_statement_names_a_held_back_table_only_as_a_word() -> None:
    """SQLite sends rows held back (``Db.late``) before a statement that names their table:
    quoted or not, anywhere in it; never for a column that only contains the name."""
    from app.store.sql import _late_table, _names_table

    assert _late_table(sql.MESSAGE.insert) == "message" and _late_table(sql.EVENT.insert) == "event"
    assert _names_table("message", "SELECT conversation_id FROM message WHERE id = ?")
    assert _names_table("message", 'INSERT INTO "message" (id) VALUES (?)')
    assert _names_table("message", "SELECT count(*) FROM conversation JOIN message ON x")
    assert _names_table("event", "DELETE FROM event")
    assert not _names_table("message", "UPDATE conversation SET last_message_seq = last_message_seq + 1")
    assert not _names_table("message", "SELECT message_id FROM search_entry")
    assert not _names_table("event", "INSERT INTO webhook_delivery (event_id, event_type) VALUES (?, ?)")
    assert not _names_table("event", "SELECT id, events FROM webhook_endpoint")


@pytest.mark.postgres
def test_a_pooled_connection_is_pinged_only_after_sitting_idle(
    postgres_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No ping for a connection checked in a moment ago (under load: no round trip per batch);
    one idle for a while is pinged, and when the server has closed it meanwhile, a new one is
    used instead of failing the caller's statement."""
    import psycopg

    from app.store.dialect import Dialect

    engine = make_engine(Settings(env="test", database_url=postgres_database))
    pings: list[int] = []
    ping = engine.dialect.do_ping
    monkeypatch.setattr(engine.dialect, "do_ping", lambda conn: (pings.append(1), ping(conn))[1])

    def backend() -> int:
        with engine.connect() as c:
            return int(c.exec_driver_sql("SELECT pg_backend_pid()").scalar_one())

    try:
        first = backend()
        assert backend() == first and pings == []
        monkeypatch.setattr(Dialect, "PING_AFTER_IDLE_SECONDS", 0.0)
        assert backend() == first and pings == [1]
        with psycopg.connect(postgres_database, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (first,))
        assert backend() != first  # the ping found it closed: replaced, not failed
    finally:
        engine.dispose()

"""Plain rows for the hot paths: conversations, messages and the outbox, in prepared SQL.

Posting a message is the product's busiest write and reading a page of messages its busiest
read. The ORM's unit of work cost several milliseconds of CPU per request there, and even
SQLAlchemy Core statements cost ~0.2 ms each to build, key, compile-cache and execute (see
docs/performance.md). So the handful of statements these paths run are written out once
per dialect and executed on the DB-API connection of the session's own transaction (same
BEGIN, same savepoints, same commit): on PostgreSQL psycopg prepares them server-side after
a few uses. Results come back in small slotted classes that ``serializers`` turns into the
public JSON exactly as it does ORM instances.

The tables are the ORM's (``models``); the migration tests pin that these statements and
those tables agree. Everything that is not hot (users, agents, tokens, settings) stays on
the ORM.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

import orjson
from sqlalchemy import Connection, Table
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session

from app import errors
from app.ids import isoformat
from app.store.tables import Conversation

CONVERSATIONS = cast(Table, Conversation.__table__)  # type: ignore[attr-defined]  # for filtered lists


@dataclass(slots=True)
class ConversationRow:
    """A conversation as stored; mutated in place by the write that holds its row lock."""

    id: str
    workspace_id: str
    user_id: str
    status: str
    assignee_id: str | None
    last_message_seq: int
    user_read_seq: int
    agent_read_seq: int
    created_at: datetime
    updated_at: datetime


@dataclass(slots=True)
class MessageRow:
    """A message as stored."""

    id: str
    workspace_id: str
    conversation_id: str
    seq: int
    actor_type: str
    actor_id: str | None
    message_parts: list[dict[str, Any]]
    reply_parts: list[dict[str, Any]]
    reply_to: dict[str, Any] | None
    client_message_id: str | None
    created_at: datetime


CONVERSATION_COLUMNS = (
    "id, workspace_id, user_id, status, assignee_id, last_message_seq, user_read_seq, agent_read_seq, "
    "created_at, updated_at"
)
MESSAGE_COLUMNS = (
    "id, workspace_id, conversation_id, seq, actor_type, actor_id, message_parts, reply_parts, reply_to, "
    "client_message_id, created_at"
)
# The same, with the JSON columns as their stored text, to be embedded in a response as is.
MESSAGE_COLUMNS_JSON_TEXT = (
    "id, workspace_id, conversation_id, seq, actor_type, actor_id, CAST(message_parts AS TEXT),"
    " CAST(reply_parts AS TEXT), CAST(reply_to AS TEXT), client_message_id, created_at"
)
MESSAGE_COLUMNS_JSON_TEXT_NAMED = (
    "id, workspace_id, conversation_id, seq, actor_type, actor_id, CAST(message_parts AS TEXT) AS parts,"
    " CAST(reply_parts AS TEXT) AS replies, CAST(reply_to AS TEXT) AS reply_to, client_message_id, created_at"
)


class Dialect:
    """How one engine spells parameters, timestamps and JSON at the DB-API level.

    Statements are written with ``?`` for a parameter and ``?j`` for a JSON parameter.
    Timestamps are stored as naive UTC (``models.UTCDateTime``), in SQLite as SQLAlchemy's
    ``YYYY-MM-DD HH:MM:SS.ffffff`` text, and come back aware.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.sqlite = name == "sqlite"
        self._rendered: dict[str, str] = {}

    def sql(self, statement: str) -> str:
        rendered = self._rendered.get(statement)
        if rendered is None:
            if self.sqlite:
                rendered = statement.replace("?j", "?").replace(" FOR UPDATE", "")
            else:
                rendered = statement.replace("?j", "%s::json").replace("?", "%s")
            self._rendered[statement] = rendered
        return rendered

    def ts(self, value: datetime) -> Any:
        if value.tzinfo is not UTC:
            value = value.astimezone(UTC) if value.tzinfo is not None else value.replace(tzinfo=UTC)
        if self.sqlite:  # "YYYY-MM-DD HH:MM:SS.ffffff+00:00" less the offset
            return value.isoformat(" ", "microseconds")[:26]
        return value.replace(tzinfo=None)

    def ts_out(self, value: Any) -> datetime:
        if isinstance(value, str):
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


_DIALECTS: dict[str, Dialect] = {}


class Db:
    """The session's transaction at the DB-API level: ``run`` a statement, get its rows."""

    __slots__ = ("conn", "dialect", "_raw", "_errors")

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        name = conn.dialect.name
        self.dialect = _DIALECTS.get(name) or _DIALECTS.setdefault(name, Dialect(name))
        self._raw: Any = conn.connection.dbapi_connection
        self._errors: type[Exception] = conn.dialect.loaded_dbapi.Error

    def run(self, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        sql = self.dialect.sql(statement)
        cur = self._raw.cursor()
        try:
            cur.execute(sql, params)
            return list(cur.fetchall()) if cur.description is not None else []
        except self._errors as exc:
            # The same exceptions as through SQLAlchemy (IntegrityError, OperationalError, …),
            # so callers map a locked or unreachable database to 503 in one place.
            raise DBAPIError.instance(sql, params, exc, self._errors) from exc
        finally:
            cur.close()

    def savepoint(self) -> None:
        self.run("SAVEPOINT bc_write")

    def release(self) -> None:
        self.run("RELEASE SAVEPOINT bc_write")

    def rollback_to_savepoint(self) -> None:
        self.run("ROLLBACK TO SAVEPOINT bc_write")
        self.run("RELEASE SAVEPOINT bc_write")

    def run_many(self, statement: str, rows: Sequence[Sequence[Any]]) -> None:
        sql = self.dialect.sql(statement)
        cur = self._raw.cursor()
        try:
            cur.executemany(sql, rows)
        except self._errors as exc:
            raise DBAPIError.instance(sql, list(rows), exc, self._errors) from exc
        finally:
            cur.close()


def db(s: Session | Db) -> Db:
    """The hot-path handle on the session's connection (and transaction), one per session:
    every session here lives for one transaction (``db.session_scope``, ``Runner.read``).
    A handle passes through as it is."""
    if isinstance(s, Db):
        return s
    handle = s.info.get("bc_db")
    if handle is None:
        handle = s.info["bc_db"] = Db(s.connection())
    return cast(Db, handle)


def _conversation(d: Dialect, r: tuple[Any, ...]) -> ConversationRow:
    return ConversationRow(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], d.ts_out(r[8]), d.ts_out(r[9]))


def _message(d: Dialect, r: tuple[Any, ...]) -> MessageRow:
    return MessageRow(
        r[0], r[1], r[2], r[3], r[4], r[5],
        d.json_out(r[6]), d.json_out(r[7]), d.json_out(r[8]),
        r[9], d.ts_out(r[10]),
    )  # fmt: skip


def get_conversation(
    s: Session | Db, workspace_id: str, conversation_id: str, *, lock: bool = False
) -> ConversationRow:
    """The conversation, or 404 (another workspace's conversation is missing too).

    ``lock`` takes the row lock (``FOR UPDATE`` on PostgreSQL; SQLite writers already hold
    the database's one write lock), so the caller's read-modify-write of ``seq`` and status
    cannot interleave with another writer's.
    """
    h = db(s)
    found = h.run(
        f"SELECT {CONVERSATION_COLUMNS} FROM conversation WHERE id = ?" + (" FOR UPDATE" if lock else ""),
        (conversation_id,),
    )
    if not found or found[0][1] != workspace_id:
        raise errors.NotFound("No such conversation.")
    return _conversation(h.dialect, found[0])


def bump_conversation(h: Db, workspace_id: str, conversation_id: str, at: datetime) -> ConversationRow:
    """Lock the conversation and take its next ``seq`` in one statement; 404 if it is not
    this workspace's. The row comes back as it now is (``last_message_seq`` is the new seq)."""
    found = h.run(
        "UPDATE conversation SET last_message_seq = last_message_seq + 1, updated_at = ?"
        f" WHERE id = ? AND workspace_id = ? RETURNING {CONVERSATION_COLUMNS}",
        (h.dialect.ts(at), conversation_id, workspace_id),
    )
    if not found:
        raise errors.NotFound("No such conversation.")
    return _conversation(h.dialect, found[0])


def newest_conversation(s: Session | Db, workspace_id: str, user_id: str) -> ConversationRow | None:
    """The user's newest conversation: the one the widget shows."""
    h = db(s)
    found = h.run(
        f"SELECT {CONVERSATION_COLUMNS} FROM conversation WHERE workspace_id = ? AND user_id = ?"
        " ORDER BY created_at DESC LIMIT 1",
        (workspace_id, user_id),
    )
    return _conversation(h.dialect, found[0]) if found else None


def insert_conversation(h: Db, c: ConversationRow) -> None:
    ts = h.dialect.ts
    h.run(
        f"INSERT INTO conversation ({CONVERSATION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (c.id, c.workspace_id, c.user_id, c.status, c.assignee_id, c.last_message_seq, c.user_read_seq,
         c.agent_read_seq, ts(c.created_at), ts(c.updated_at)),
    )  # fmt: skip


# Only these columns are ever written through ``update_conversation``.
_CONVERSATION_UPDATES = frozenset(
    {"status", "assignee_id", "last_message_seq", "user_read_seq", "agent_read_seq", "updated_at"}
)


def update_conversation(h: Db, conversation_id: str, changes: dict[str, Any]) -> None:
    assert _CONVERSATION_UPDATES.issuperset(changes), changes
    names = sorted(changes)
    values = [h.dialect.ts(changes[n]) if n == "updated_at" else changes[n] for n in names]
    h.run(f"UPDATE conversation SET {', '.join(f'{n} = ?' for n in names)} WHERE id = ?", (*values, conversation_id))


def messages_json_after(s: Session | Db, conversation_id: str, after: int, limit: int) -> list[dict[str, Any]]:
    """Up to ``limit`` messages with ``seq > after``, oldest first, straight to the public JSON
    shape (``serializers.message_json``): a page of messages is the busiest read, and its
    parts need not be parsed to be sent."""
    h = db(s)
    d = h.dialect
    statement = (
        f"SELECT {MESSAGE_COLUMNS_JSON_TEXT} FROM message WHERE conversation_id = ? AND seq > ? ORDER BY seq LIMIT ?"
    )
    return [_message_json(d, r) for r in h.run(statement, (conversation_id, after, limit))]


# The stored size of a message's JSON columns (characters), for pages bounded in size.
_MESSAGE_SIZE = (
    "LENGTH(CAST(message_parts AS TEXT)) + LENGTH(CAST(reply_parts AS TEXT))"
    " + COALESCE(LENGTH(CAST(reply_to AS TEXT)), 0)"
)


def messages_json_page(
    s: Session | Db, conversation_id: str, after: int, limit: int, max_chars: int
) -> list[dict[str, Any]]:
    """``messages_json_after``, also bounded in size: messages are taken while the ones before
    them hold fewer than ``max_chars`` characters of stored JSON (so always at least one, and a
    page exceeds the bound by at most its last message). The running size is a window sum over
    the same index scan, so the bound costs no extra visit."""
    h = db(s)
    d = h.dialect
    return [
        _message_json(d, r)
        for r in h.run(
            "SELECT id, workspace_id, conversation_id, seq, actor_type, actor_id, parts, replies, reply_to,"
            " client_message_id, created_at FROM ("
            f" SELECT {MESSAGE_COLUMNS_JSON_TEXT_NAMED},"
            f" COALESCE(SUM({_MESSAGE_SIZE}) OVER (ORDER BY seq ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0)"
            " AS size_before"
            " FROM message WHERE conversation_id = ? AND seq > ? ORDER BY seq LIMIT ?"
            ") AS page WHERE size_before < ? ORDER BY seq",
            (conversation_id, after, limit, max_chars),
        )
    ]


def _message_json(d: Dialect, r: tuple[Any, ...]) -> dict[str, Any]:
    actor = {"type": r[4]} if r[5] is None else {"type": r[4], "id": r[5]}
    return {
        "id": r[0],
        "conversation_id": r[2],
        "seq": r[3],
        "actor": actor,
        "message_parts": d.raw_json(r[6]),
        "reply_parts": d.raw_json(r[7]),
        "reply_to": d.raw_json(r[8]),
        "client_message_id": r[9],
        "created_at": d.iso(r[10]),
    }


def message_by_client_id(h: Db, conversation_id: str, client_message_id: str) -> MessageRow | None:
    found = h.run(
        f"SELECT {MESSAGE_COLUMNS} FROM message WHERE conversation_id = ? AND client_message_id = ?",
        (conversation_id, client_message_id),
    )
    return _message(h.dialect, found[0]) if found else None


def message_conversation_id(h: Db, message_id: str) -> str | None:
    found = h.run("SELECT conversation_id FROM message WHERE id = ?", (message_id,))
    return found[0][0] if found else None


def insert_message(h: Db, m: MessageRow) -> None:
    d = h.dialect
    h.run(
        f"INSERT INTO message ({MESSAGE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?j, ?j, ?j, ?, ?)",
        (m.id, m.workspace_id, m.conversation_id, m.seq, m.actor_type, m.actor_id, d.json(m.message_parts),
         d.json(m.reply_parts), d.json(m.reply_to), m.client_message_id, d.ts(m.created_at)),
    )  # fmt: skip


@dataclass(slots=True)
class AgentRow:
    id: str
    workspace_id: str
    name: str
    kind: str
    avatar_url: str | None
    created_at: datetime


def agent(h: Db, agent_id: str) -> AgentRow | None:
    """An agent (``agent_json`` accepts it)."""
    found = h.run("SELECT id, workspace_id, name, kind, avatar_url, created_at FROM agent WHERE id = ?", (agent_id,))
    if not found:
        return None
    r = found[0]
    return AgentRow(r[0], r[1], r[2], r[3], r[4], h.dialect.ts_out(r[5]))


def default_bot_id(h: Db, workspace_id: str) -> str | None:
    found = h.run("SELECT id FROM agent WHERE workspace_id = ? AND is_default_bot = ?", (workspace_id, True))
    return found[0][0] if found else None


def user_workspace(h: Db, user_id: str) -> str | None:
    found = h.run('SELECT workspace_id FROM "user" WHERE id = ?', (user_id,))
    return found[0][0] if found else None


# --- the outbox -------------------------------------------------------------------------


def insert_event(h: Db, event_id: str, workspace_id: str, type_: str, payload: dict[str, Any], at: datetime) -> None:
    h.run(
        "INSERT INTO event (id, workspace_id, type, payload, created_at) VALUES (?, ?, ?, ?j, ?)",
        (event_id, workspace_id, type_, h.dialect.json(payload), h.dialect.ts(at)),
    )


def enabled_endpoints(h: Db, workspace_id: str) -> list[tuple[str, list[str]]]:
    """``(id, event types)`` of the workspace's enabled webhook endpoints."""
    d = h.dialect
    found = h.run(
        "SELECT id, events FROM webhook_endpoint WHERE workspace_id = ? AND enabled = ?", (workspace_id, True)
    )
    return [(r[0], d.json_out(r[1])) for r in found]


def insert_deliveries(h: Db, workspace_id: str, event_id: str, type_: str, endpoint_ids: list[str],
                      new_id: Callable[[], str], at: datetime) -> None:  # fmt: skip
    """One pending delivery of the event per endpoint, due now."""
    ts = h.dialect.ts(at)
    h.run_many(
        "INSERT INTO webhook_delivery (id, workspace_id, endpoint_id, event_id, event_type, status, attempts,"
        " schedule_step, next_attempt_at, lease_until, lease_owner, last_status_code, last_error, created_at,"
        " updated_at) VALUES (?, ?, ?, ?, ?, 'pending', 0, 0, ?, NULL, NULL, NULL, NULL, ?, ?)",
        [(new_id(), workspace_id, endpoint_id, event_id, type_, ts, ts, ts) for endpoint_id in endpoint_ids],
    )


# --- API tokens -------------------------------------------------------------------------


def token_by_hash(h: Db, token_hash: str) -> tuple[str, str, list[str], bool] | None:
    """``(id, workspace_id, scopes, revoked)`` of the token with this hash."""
    found = h.run("SELECT id, workspace_id, scopes, revoked_at FROM api_token WHERE token_hash = ?", (token_hash,))
    if not found:
        return None
    r = found[0]
    return r[0], r[1], h.dialect.json_out(r[2]), r[3] is not None

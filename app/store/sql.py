"""Plain rows for the hot paths: conversations, messages and the outbox, in prepared SQL.

Posting a message is the product's busiest write and reading a page of messages its busiest
read. The ORM's unit of work cost several milliseconds of CPU per request there, and even
SQLAlchemy Core statements cost ~0.2 ms each to build, key, compile-cache and execute (see
docs/performance.md). So the handful of statements these paths run are built once, at import,
and executed on the DB-API connection of the session's own transaction (same BEGIN, same
savepoints, same commit): on PostgreSQL psycopg prepares them server-side after a few uses.
Results come back in small slotted classes that ``shapes`` turns into the public JSON
exactly as it does ORM instances.

One persistence layer: the tables are the ORM's (``tables``), and every column list here is
derived from them through a ``Shape``, which checks at import that a row class holds exactly
its table's columns (a column added to a table and not to its row class fails the import,
and ``tests/store/test_sql.py``). The dialect (``dialect.py``) spells each statement for its
driver. Everything that is not hot (users, agents, tokens, settings) stays on the ORM.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import re
from collections.abc import Callable, Sequence
from datetime import datetime
from operator import attrgetter, itemgetter
from typing import Any, Generic, TypeVar, cast

from sqlalchemy import JSON, Connection, Engine, Table, event
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session as OrmSession
from sqlmodel import Session, SQLModel

from app import errors
from app.store.dialect import Dialect, dialect_of
from app.store.tables import (
    Agent,
    ApiToken,
    Conversation,
    Event,
    Message,
    UTCDateTime,
    WebhookDelivery,
    WebhookEndpoint,
)

# In a message's stored parts only where a part names an uploaded file: inside a text, the
# quotes around these words would be escaped.
FILE_MARKER = '"file_id"'
CONVERSATIONS = cast(Table, Conversation.__table__)  # type: ignore[attr-defined]  # for filtered lists

R = TypeVar("R")


class TableDrift(TypeError):
    """A row class or statement here names columns its table does not have, or misses some."""


def table_of(model: type[SQLModel]) -> Table:
    return cast(Table, model.__table__)  # type: ignore[attr-defined]


class Shape(Generic[R]):
    """Columns of one table, in a fixed order, with what the hot path needs built from them once:
    the column list (also with JSON columns as their stored text), the ``INSERT``, and the
    conversions of timestamps and JSON to and from the driver.

    With a row class, the order is its fields' and they must be exactly the table's columns;
    with ``names``, a projection, each must be a column of the table.
    """

    def __init__(self, model: type[SQLModel], row: type[R] | None = None, names: Sequence[str] = ()) -> None:
        table = table_of(model)
        columns = table.columns
        self.table = table.name
        self.row = row
        if row is not None:
            names = [f.name for f in dataclasses.fields(cast(Any, row))]
            missing = [c for c in columns.keys() if c not in names]  # noqa: SIM118  (a ColumnCollection)
            if missing:
                raise TableDrift(f"{row.__name__} lacks columns of table {table.name!r}: {missing}")
        names = list(names or columns.keys())
        unknown = [n for n in names if n not in columns]
        if unknown:
            raise TableDrift(f"table {table.name!r} has no columns {unknown}")
        self.names: tuple[str, ...] = tuple(names)
        self.index = {n: i for i, n in enumerate(names)}
        self.timestamps = frozenset(n for n in names if isinstance(columns[n].type, UTCDateTime))
        self.json = frozenset(n for n in names if isinstance(columns[n].type, JSON))
        self._ts = tuple(self.index[n] for n in names if n in self.timestamps)
        self._json = tuple(self.index[n] for n in names if n in self.json)
        self._get = attrgetter(*names)
        self._make: Any = row
        self._readers: dict[Dialect, tuple[tuple[int, Callable[[Any], Any]], ...]] = {}
        # "id, workspace_id, …"; the same with each JSON column as its stored text, to be
        # embedded in a response as it is (``AS`` its own name where a subquery needs names).
        self.columns = ", ".join(names)
        self.columns_json_text = ", ".join(f"CAST({n} AS TEXT)" if n in self.json else n for n in names)
        self.columns_json_text_named = ", ".join(f"CAST({n} AS TEXT) AS {n}" if n in self.json else n for n in names)
        # Characters of stored JSON in a row, for pages bounded in size.
        self.json_size = " + ".join(
            f"COALESCE(LENGTH(CAST({n} AS TEXT)), 0)" if columns[n].nullable else f"LENGTH(CAST({n} AS TEXT))"
            for n in names
            if n in self.json
        )
        placeholders = ", ".join("?j" if n in self.json else "?" for n in names)
        self.insert = f'INSERT INTO "{table.name}" ({self.columns}) VALUES ({placeholders})'

    def params(self, d: Dialect, values: Sequence[Any]) -> list[Any]:
        """Values in this shape's order, as the driver takes them."""
        out = list(values)
        for i in self._ts:
            if out[i] is not None:
                out[i] = d.ts(out[i])
        for i in self._json:
            out[i] = d.json(out[i])
        return out

    def params_of(self, d: Dialect, row: R) -> list[Any]:
        return self.params(d, self._get(row))

    def read(self, d: Dialect, r: Sequence[Any]) -> R:
        """A fetched row (``SELECT {columns}``) as the row class."""
        # Only the timestamp and JSON columns need converting: a loop over those few indexes
        # instead of a zip over every column (the hot path reads rows on every message).
        readers = self._readers.get(d)
        if readers is None:
            readers = self._readers[d] = tuple(
                (i, d.ts_out if n in self.timestamps else d.json_out)
                for i, n in enumerate(self.names)
                if n in self.timestamps or n in self.json
            )
        if not readers:
            return self._make(*r)
        values = list(r)
        for i, f in readers:
            v = values[i]
            if v is not None:
                values[i] = f(v)
        return self._make(*values)


def insert_with(model: type[SQLModel], params: Sequence[str], fixed: dict[str, str]) -> tuple[Shape[Any], str]:
    """An ``INSERT`` of every column of the table: ``params`` from parameters (their shape is
    returned with it), the others as the fixed SQL literals of ``fixed``."""
    shape: Shape[Any] = Shape(model, names=params)
    columns = table_of(model).columns.keys()
    if set(columns) != {*params, *fixed} or set(params) & set(fixed):
        raise TableDrift(f"an INSERT into {shape.table!r} must give each of {columns} once")
    values = ["?j" if n in shape.json else "?" if n in shape.index else fixed[n] for n in columns]
    return shape, f'INSERT INTO "{shape.table}" ({", ".join(columns)}) VALUES ({", ".join(values)})'


# --- row classes ---------------------------------------------------------------------------


@dataclasses.dataclass(slots=True)
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
    tags: list[str]
    properties: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    sync_seq: int  # the change order a CRM syncs by (``next_sync_seq``)
    assignee_kind: str | None
    handled_by: str
    rating_score: int | None = None
    rating_comment: str | None = None
    rated_at: datetime | None = None
    resolved_at: datetime | None = None


@dataclasses.dataclass(slots=True)
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
    private: bool


@dataclasses.dataclass(slots=True)
class AgentRow:
    """An agent as stored (``shapes.agent_json`` accepts it)."""

    id: str
    workspace_id: str
    name: str
    kind: str
    avatar_url: str | None
    is_default_bot: bool
    created_at: datetime
    status: str
    last_seen_at: datetime | None


CONVERSATION: Shape[ConversationRow] = Shape(Conversation, ConversationRow)
MESSAGE: Shape[MessageRow] = Shape(Message, MessageRow)
AGENT: Shape[AgentRow] = Shape(Agent, AgentRow)
EVENT: Shape[Any] = Shape(Event)
ENDPOINT_EVENTS: Shape[Any] = Shape(WebhookEndpoint, names=("id", "events"))
TOKEN: Shape[Any] = Shape(ApiToken, names=("id", "workspace_id", "scopes", "revoked_at"))
ENDPOINTS_OF_TOKEN = (
    f"SELECT {ENDPOINT_EVENTS.columns} FROM webhook_endpoint WHERE enabled = ? AND workspace_id = "
    "(SELECT workspace_id FROM api_token WHERE token_hash = ?)"
)
DELIVERY, INSERT_DELIVERY = insert_with(
    WebhookDelivery,
    ("id", "workspace_id", "endpoint_id", "event_id", "event_type", "next_attempt_at", "created_at", "updated_at"),
    {"status": "'pending'", "attempts": "0", "schedule_step": "0", "lease_until": "NULL", "lease_owner": "NULL",
     "last_status_code": "NULL", "last_error": "NULL"},
)  # fmt: skip

# The columns ``update_conversation`` may write: all but the conversation's identity.
CONVERSATION_UPDATES = frozenset(CONVERSATION.names) - {"id", "workspace_id", "user_id", "created_at"}


# --- the transaction at the DB-API level ------------------------------------------------------


class Db:
    """The session's transaction at the DB-API level: ``run`` a statement and get its rows, or
    ``send`` one whose result nobody reads.

    On PostgreSQL what is sent waits in a queue and goes out with the next statement that is
    run (or at ``flush``), all in one round trip (psycopg's pipeline mode): a message's
    inserts (message, search entry, outbox event, deliveries) cost no round trip of their own.
    Anything else executed on the connection (the ORM, Core) sends the queue first
    (``_send_queued_first``), so statements always reach the database in the order given, and
    an error in a queued statement is raised by the ``run`` or ``flush`` that sent it. SQLite,
    in process, executes at once.

    An insert may be sent ``late``: on SQLite it waits for the transaction's last statement
    (``flush``, or before the commit), or for the first statement that names its table (a
    read of it, say), and goes out with the others of its kind as one multi-row ``INSERT``.
    A batch's messages, outbox events, webhook deliveries and search entries go so: a few
    statements a batch instead of three or four a message. The search index needs this most:
    once FTS5 has pending rows in a transaction, it writes them out as a new segment of its
    index at every later statement (at each statement savepoint), so a batch of 16 messages
    indexed one by one cost 16 segment writes and their merging (~30 µs a message); sent
    together last, one.

    On PostgreSQL a writer's batch of messages costs about two round trips, whatever its
    size: the ``BEGIN``, the batch's ``seq`` bumps (sent ``ahead``: ``bump_ahead``), the API
    token and its workspace's webhook endpoints (``run_together``) in the first; every insert
    and the ``COMMIT`` in the last (``flush_and_commit``). (A pooled connection is pinged
    only after sitting idle: ``dialect._ping_when_idle``.)

    Facts read once per transaction: the enabled webhook endpoints of a workspace
    (``enabled_endpoints``) and an API token (``token_by_hash``). A write that goes through
    the ORM or Core (which could change them: a new endpoint, a revoked token) drops them.
    """

    __slots__ = (
        "conn", "dialect", "_raw", "_cursor", "_errors", "sync_seq", "_queued", "_late", "_pipelines", "facts",
        "writing", "_ahead", "_bumped",
    )  # fmt: skip

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.dialect = dialect_of(conn)
        self._raw: Any = conn.connection.dbapi_connection
        self._cursor: Any = None
        self._errors: type[Exception] = conn.dialect.loaded_dbapi.Error
        self.sync_seq: int | None = None  # this transaction's change order, once taken
        self._queued: list[tuple[str, Sequence[Any]]] = []
        # SQLite: (table, insert) → the rows held back for it (``late``)
        self._late: dict[tuple[str, str], list[Sequence[Any]]] = {}
        self._pipelines = not self.dialect.sqlite
        self.facts: dict[tuple[str, str], Any] = {}  # per transaction: see the class docstring
        self.writing = False  # a writer's batch (``Runner``): its emits will want the endpoints
        # PostgreSQL: statements sent ahead of the next round trip, each with the key its rows
        # are kept under (a conversation id: ``bump_ahead``), and those rows once they came
        self._ahead: list[tuple[str, Sequence[Any], str]] = []
        self._bumped: dict[str, list[tuple[Any, ...]]] = {}
        conn.info["bc_db"] = self

    def run(self, statement: str, params: Sequence[Any] = (), *, blind: bool = False) -> list[tuple[Any, ...]]:
        """Execute (after what is queued) and return the rows. ``blind``: the statement reads
        nothing that queued inserts write, so on PostgreSQL they may join it as one statement
        (``_fused``)."""
        sql = self.dialect.sql(statement)
        if self._late and self._names_late(sql):
            self._send_late()
        if self._queued:
            return self._send_queue(sql, params, blind=blind)
        return self._execute(sql, params)

    def run_together(self, *statements: tuple[str, Sequence[Any]]) -> list[list[tuple[Any, ...]]]:
        """Execute several statements (after what is queued) and return each one's rows: on
        PostgreSQL in one round trip (reads that do not depend on each other's results)."""
        if not self._pipelines:
            return [self.run(q, p) for q, p in statements]
        queued, self._queued = _fused(self._queued), []
        return self._pipeline(queued + [(self.dialect.sql(q), p) for q, p in statements], len(queued))

    def send(self, statement: str, params: Sequence[Any] = ()) -> None:
        """Execute a statement whose result is not needed: queued on PostgreSQL (see the class)."""
        if self._pipelines:
            self._queued.append((self.dialect.sql(statement), params))
        else:
            self.run(statement, params)

    def late(self, insert: str, row: Sequence[Any]) -> None:
        """An ``INSERT INTO t (…) VALUES (?, …)`` of one row: on SQLite it goes out at ``flush``
        (or before the commit, or before a statement that names ``t``), with the other rows of
        the same insert in one statement. On PostgreSQL it is ``send``. Anything the ORM or
        Core runs sends it first too (``_send_queued_first``)."""
        if self._pipelines:
            self.send(insert, row)
            return
        self._late.setdefault((_late_table(insert), self.dialect.sql(insert)), []).append(row)

    def _names_late(self, sql: str) -> bool:
        """Whether the statement names a table that rows held back (``late``) go to."""
        return any(_names_table(table, sql) for table, _ in self._late)

    def ahead(self, statement: str, params: Sequence[Any], key: str) -> None:
        """PostgreSQL: a statement that goes out first in the transaction's next round trip, its
        rows kept under ``key`` for ``take_bumped``. Only before anything is queued: it runs
        before what is."""
        assert self._pipelines and not self._queued, "ahead: PostgreSQL, before anything is queued"
        self._ahead.append((self.dialect.sql(statement), params, key))

    def flush(self) -> None:
        """Send what is queued and wait for it: raises the first error among it."""
        if self._late:
            self._send_late()
        if self._queued or self._ahead:
            self._send_queue(None, ())

    def flush_and_commit(self) -> None:
        """Send what is queued and commit the transaction: on PostgreSQL in one round trip
        (the ``COMMIT`` behind the queued statements, none of it run after an error in them).
        The session's own commit then finds nothing left to do. SQLite: ``flush``."""
        if not self._pipelines or self._raw.pgconn.transaction_status != _PG_INTRANS:
            self.flush()
            return
        queued, self._queued = _fused(self._queued), []
        queued.append(("COMMIT", ()))
        self._pipeline(queued, len(queued))

    def write_done(self) -> None:
        """One write of a batch is done: what it queued is not fused with the next write's
        (``_fused``), so a message's inserts are one statement of one shape, whose SQL psycopg
        converts once and PostgreSQL prepares once, not a statement as long as the batch."""
        if self._queued and self._queued[-1] is not _WRITE_DONE:
            self._queued.append(_WRITE_DONE)

    def discard(self) -> None:
        """Forget what is queued (the transaction is being rolled back)."""
        self._queued.clear()
        self._late.clear()
        self._ahead.clear()
        self._bumped.clear()

    def take_bumped(self, conversation_id: str) -> list[tuple[Any, ...]] | None:
        """The rows of this conversation's bump taken ahead (``bump_ahead``), once; None if none was."""
        if self._ahead:
            self.flush()
        return self._bumped.pop(conversation_id, None)

    @property
    def bumps_unused(self) -> bool:
        """Some bump taken ahead was not taken by its write (or not even sent)."""
        return bool(self._bumped or self._ahead)

    LATE_ROWS = 100  # rows per multi-row insert (SQLite allows 32,766 parameters a statement)

    def _send_late(self) -> None:
        late, self._late = self._late, {}
        # Referenced tables first (a search entry or a delivery names its message or event).
        for (_, insert), rows in sorted(late.items(), key=lambda item: _FK_ORDER.get(item[0][0], len(_FK_ORDER))):
            head, _, values = insert.rpartition(" VALUES ")
            for start in range(0, len(rows), self.LATE_ROWS):
                chunk = rows[start : start + self.LATE_ROWS]
                self._execute(f"{head} VALUES {', '.join([values] * len(chunk))}", [v for r in chunk for v in r])

    def _send_queue(self, sql: str | None, params: Sequence[Any], *, blind: bool = False) -> list[tuple[Any, ...]]:
        queued, self._queued = self._queued, []
        if sql is not None:
            queued.append((sql, params))
        queued = _fused(queued, last_blind=blind)
        if len(queued) == 1:  # one statement (a few inserts fused): no pipeline needed
            return self._execute(*queued[0])
        if not queued:  # only what goes ahead
            self._pipeline([], 0)
            return []
        return self._pipeline(queued, len(queued) - 1)[0]

    def _pipeline(self, queued: list[tuple[str, Sequence[Any]]], wanted: int) -> list[list[tuple[Any, ...]]]:
        """PostgreSQL: the statements in one round trip (psycopg's pipeline mode), and the rows
        of those from ``queued[wanted]`` on. The ``BEGIN`` of a transaction not begun yet goes
        with them, and what waits to go ``ahead`` goes first (its rows kept by key)."""
        ahead, self._ahead = self._ahead, []
        statements = [(q, p) for q, p, _ in ahead] + queued if ahead else queued
        first_wanted = len(ahead) + wanted
        cursors: list[Any] = []  # a cursor of its own for each statement whose rows are wanted
        shared = self._cursor
        sent = 0
        try:
            with self._raw.pipeline() as pipeline:
                for n, (q, p) in enumerate(statements):
                    if n < len(ahead) or n >= first_wanted:
                        cur = self._raw.cursor()
                        cursors.append(cur)
                    else:  # nobody reads its rows: its errors are raised all the same
                        if shared is None:
                            shared = self._cursor = self._raw.cursor()
                        cur = shared
                    cur.execute(q, p)
                    sent = n + 1
                pipeline.sync()
                results = [list(cur.fetchall()) if _pg_has_rows(cur) else [] for cur in cursors]
        except self._errors as exc:
            q, p = statements[max(sent, 1) - 1]
            raise DBAPIError.instance(q, p, exc, self._errors) from exc
        finally:
            for cur in cursors:
                cur.close()
        for (_, _, key), found in zip(ahead, results, strict=False):
            self._bumped[key] = found
        return results[len(ahead) :]

    def _execute(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        pipelines = self._pipelines
        if pipelines and (self._ahead or self._raw.pgconn.transaction_status == _PG_IDLE):
            # The transaction's first statement: psycopg would send its BEGIN in a round trip
            # of its own; in a pipeline the two go together (and what goes ahead, first).
            return self._pipeline([(sql, params)], 0)[0]
        # One cursor for the transaction's statements (each is read to its end before the
        # next): a cursor made and closed per statement cost ~1 µs of the four a message runs.
        cur = self._cursor
        if cur is None:
            cur = self._cursor = self._raw.cursor()
        try:
            cur.execute(sql, params)
            has_rows = _pg_has_rows(cur) if pipelines else cur.description is not None
            return cur.fetchall() if has_rows else []  # type: ignore[no-any-return]
        except self._errors as exc:
            # The same exceptions as through SQLAlchemy (IntegrityError, OperationalError, …),
            # so callers map a locked or unreachable database to 503 in one place.
            raise DBAPIError.instance(sql, params, exc, self._errors) from exc

    def savepoint(self) -> None:
        self.send("SAVEPOINT bc_write")

    def release(self) -> None:
        self.send("RELEASE SAVEPOINT bc_write")

    def rollback_to_savepoint(self) -> None:
        # What the failed write queued goes out too (with its SAVEPOINT, maybe still queued),
        # to be undone with it; an error in it is the one the write already failed with.
        with contextlib.suppress(DBAPIError):
            self.flush()
        self.run("ROLLBACK TO SAVEPOINT bc_write")
        self.send("RELEASE SAVEPOINT bc_write")
        # A clock bump made inside the savepoint is undone with it: take it again if needed,
        # and what was read inside it may be undone too.
        self.sync_seq = None
        self.facts.clear()



# The order rows held back (``Db.late``) go out in: a table before the tables whose foreign
# keys name it (the models' own dependency order).
_FK_ORDER = {table.name: n for n, table in enumerate(SQLModel.metadata.sorted_tables)}


def _late_table(insert: str) -> str:
    """The table of an ``INSERT INTO <table> (…``, without quotes."""
    return insert.split(None, 3)[2].strip('"')


@functools.lru_cache(maxsize=2048)
def _names_table(table: str, sql: str) -> bool:
    """Whether ``sql`` names ``table`` (as a word: ``last_message_seq`` does not name ``message``).
    The statements are a few hundred constants: each is looked at once."""
    name = re.escape(table)
    return re.search(rf'(?<![\w"]){name}(?![\w"])|"{name}"', sql) is not None


# libpq's transaction states (psycopg.pq.TransactionStatus): connected and no transaction
# begun; in a transaction, no error so far.
_PG_IDLE, _PG_INTRANS = 0, 2
_WRITE_DONE: tuple[str, Sequence[Any]] = ("", ())  # in the queue between two writes' statements (``_fused``)


def _pg_has_rows(cur: Any) -> bool:
    """Whether a psycopg cursor holds rows: its ``description`` would build a Column per field
    each time it is read (8 % of the writer thread's CPU); its result's field count does not."""
    result = cur.pgresult
    return result is not None and result.nfields > 0


def _fused(queued: list[tuple[str, Sequence[Any]]], *, last_blind: bool = False) -> list[tuple[str, Sequence[Any]]]:
    """Consecutive plain ``INSERT``s as one statement (PostgreSQL's data-modifying ``WITH``):
    a message's row, search entry, outbox event and deliveries cost the driver one statement,
    and with ``last_blind`` they join the last statement too (the next message's ``seq``).
    One write's inserts are not joined with the next write's (``Db.write_done``).
    Only inserts: none of them reads what another wrote (they all see the same snapshot, and
    foreign keys are checked at the end of the statement), and none writes a row twice; a
    blind last statement reads nothing they write."""
    out: list[tuple[str, Sequence[Any]]] = []
    run: list[tuple[str, Sequence[Any]]] = []
    last = len(queued) - 1
    for n, item in enumerate([*queued, ("", ())]):
        if (item[0].startswith("INSERT INTO ") and " RETURNING " not in item[0]) or (n == last and last_blind):
            run.append(item)
            continue
        if item is _WRITE_DONE and n + 1 == last and last_blind:
            continue  # a write's inserts and the next write's bump: one statement of one shape still
        if len(run) > 1:
            heads = ", ".join(f"w{i} AS ({q})" for i, (q, _) in enumerate(run[:-1]))
            out.append((f"WITH {heads} {run[-1][0]}", [v for _, p in run for v in p]))
        else:
            out.extend(run)
        run = []
        if item[0]:
            out.append(item)
    return out


@event.listens_for(Engine, "before_cursor_execute")
@event.listens_for(Engine, "commit")
def _send_queued_first(conn: Connection, *_: Any) -> None:
    """Whatever runs on a connection through SQLAlchemy comes after what ``Db.send`` queued
    and what ``Db.late`` holds; so does a commit that no statement came before."""
    h = conn.info.get("bc_db")  # kept with the DB-API connection: only this checkout's counts
    if h is not None and (h._queued or h._late) and h.conn is conn:
        h.flush()


@event.listens_for(Engine, "rollback")
def _forget_queued_on_rollback(conn: Connection) -> None:
    h = conn.info.get("bc_db")
    if h is not None and h.conn is conn:
        h.discard()


@event.listens_for(OrmSession, "after_flush")
def _orm_wrote(session: OrmSession, _context: Any) -> None:
    h = session.info.get("bc_db")
    if h is not None:
        h.facts.clear()


@event.listens_for(OrmSession, "do_orm_execute")
def _orm_executes(state: Any) -> None:
    if not state.is_select:
        h = state.session.info.get("bc_db")
        if h is not None:
            h.facts.clear()


def db(s: Session | Db) -> Db:
    """The hot-path handle on the session's connection (and transaction), one per session:
    every session here lives for one transaction (``engine.session_scope``, ``Runner.read``).
    A handle passes through as it is."""
    if isinstance(s, Db):
        return s
    handle = s.info.get("bc_db")
    if handle is None:
        handle = s.info["bc_db"] = Db(s.connection())
    return cast(Db, handle)


# --- conversations ---------------------------------------------------------------------------


def get_conversation(
    s: Session | Db, workspace_id: str, conversation_id: str, *, lock: bool = False
) -> ConversationRow:
    """The conversation, or 404 (another workspace's conversation is missing too).

    ``lock`` takes the row lock (``FOR UPDATE`` where the dialect has row locks; SQLite writers
    already hold the database's one write lock), so the caller's read-modify-write of ``seq``
    and status cannot interleave with another writer's.
    """
    h = db(s)
    found = h.run(_GET_CONVERSATION_FOR_UPDATE if lock else _GET_CONVERSATION, (conversation_id,))
    if not found or found[0][CONVERSATION.index["workspace_id"]] != workspace_id:
        raise errors.NotFound("No such conversation.")
    return CONVERSATION.read(h.dialect, found[0])


_GET_CONVERSATION = f"SELECT {CONVERSATION.columns} FROM conversation WHERE id = ?"
_GET_CONVERSATION_FOR_UPDATE = _GET_CONVERSATION + " FOR UPDATE"


def bump_conversation(h: Db, workspace_id: str, conversation_id: str, at: datetime) -> ConversationRow:
    """Lock the conversation and take its next ``seq`` in one statement; 404 if it is not
    this workspace's. The row comes back as it now is (``last_message_seq`` is the new seq).

    Where the change order is an expression (PostgreSQL's transaction id) and this transaction
    has not taken it yet, the statement takes it too, instead of a round trip of its own."""
    d = h.dialect
    found = h.take_bumped(conversation_id) if h.bumps_unused else None
    if found is None:
        if h.sync_seq is None and d.sync_seq_expression:
            sql = _BUMP_CONVERSATION.replace("sync_seq = ?", f"sync_seq = {d.sync_seq_expression}")
            params: tuple[Any, ...] = (d.ts(at), conversation_id, workspace_id)
        else:
            sql, params = _BUMP_CONVERSATION, (d.ts(at), next_sync_seq(h), conversation_id, workspace_id)
        # Blind: it reads only the conversation, which no queued insert writes.
        found = h.run(sql, params, blind=True)
    conv = CONVERSATION.read(d, found[0]) if found else None
    if conv is None or conv.workspace_id != workspace_id:  # (a bump taken ahead knew no workspace)
        raise errors.NotFound("No such conversation.")
    h.sync_seq = conv.sync_seq
    return conv


def bump_ahead(h: Db, conversation_ids: list[str], at: datetime) -> None:
    """PostgreSQL: ``bump_conversation`` of each, sent ahead of the transaction's next round trip
    (``Db.ahead``), for the writes that will begin with it (``Runner._bump_ahead``). Taken by
    id alone: ``bump_conversation`` refuses a row of another workspace, and the transaction
    then does not commit."""
    d = h.dialect
    assert d.sync_seq_expression, "bumps ahead take the transaction's change order by expression"
    sql = _BUMP_AHEAD.replace("sync_seq = ?", f"sync_seq = {d.sync_seq_expression}")
    for conversation_id in conversation_ids:
        h.ahead(sql, (d.ts(at), conversation_id), conversation_id)


_BUMP_CONVERSATION = (
    "UPDATE conversation SET last_message_seq = last_message_seq + 1, updated_at = ?, sync_seq = ?"
    f" WHERE id = ? AND workspace_id = ? RETURNING {CONVERSATION.columns}"
)
_BUMP_AHEAD = _BUMP_CONVERSATION.replace(" AND workspace_id = ?", "")


def next_sync_seq(s: Session | Db) -> int:
    """This transaction's place in the change order, stamped on every user and conversation it
    changes (``sync_seq``), so a CRM that lists changes after a cursor never misses one.

    The dialect says what it is (``Dialect.take_sync_seq``): on PostgreSQL the transaction id,
    and a list shows only rows of transactions older than every one still running
    (``Dialect.sync_settled``); on SQLite, whose one writer commits transactions in the order
    they take the write lock, a counter bumped once per transaction.
    """
    h = db(s)
    if h.sync_seq is None:
        h.sync_seq = int(h.run(h.dialect.take_sync_seq)[0][0])
    return h.sync_seq


def newest_conversation(s: Session | Db, workspace_id: str, user_id: str) -> ConversationRow | None:
    """The user's newest conversation: the one the widget shows."""
    h = db(s)
    found = h.run(
        f"SELECT {CONVERSATION.columns} FROM conversation WHERE workspace_id = ? AND user_id = ?"
        " ORDER BY created_at DESC LIMIT 1",
        (workspace_id, user_id),
    )
    return CONVERSATION.read(h.dialect, found[0]) if found else None


def conversation_seq(s: Session | Db, conversation_id: str) -> int | None:
    """The conversation's newest message ``seq`` (None: no such conversation)."""
    found = db(s).run("SELECT last_message_seq FROM conversation WHERE id = ?", (conversation_id,))
    return found[0][0] if found else None


def insert_conversation(h: Db, c: ConversationRow) -> None:
    h.send(CONVERSATION.insert, CONVERSATION.params_of(h.dialect, c))


def update_conversation(h: Db, conversation_id: str, changes: dict[str, Any]) -> None:
    """Write these columns; a change that moves ``updated_at`` also takes the change order."""
    assert CONVERSATION_UPDATES.issuperset(changes), changes
    names = sorted(changes)
    d = h.dialect
    values = [
        (None if changes[n] is None else d.ts(changes[n])) if n in CONVERSATION.timestamps
        else d.json(changes[n]) if n in CONVERSATION.json
        else changes[n]
        for n in names
    ]
    sets = ", ".join(f"{n} = ?j" if n in CONVERSATION.json else f"{n} = ?" for n in names)
    h.send(f"UPDATE conversation SET {sets} WHERE id = ?", (*values, conversation_id))


# --- messages ----------------------------------------------------------------------------------


def messages_json_after(s: Session | Db, conversation_id: str, after: int, limit: int) -> list[dict[str, Any]]:
    """Up to ``limit`` messages with ``seq > after``, oldest first, straight to the public JSON
    shape (``shapes.message_json``): a page of messages is the busiest read, and its parts
    need not be parsed to be sent."""
    h = db(s)
    d = h.dialect
    return [_message_json(d, r) for r in h.run(_MESSAGES_AFTER, (conversation_id, after, limit))]


_MESSAGES_AFTER = (
    f"SELECT {MESSAGE.columns_json_text} FROM message WHERE conversation_id = ? AND seq > ? ORDER BY seq LIMIT ?"
)


def messages_json_page(
    s: Session | Db, conversation_id: str, after: int, limit: int, max_chars: int
) -> list[dict[str, Any]]:
    """The widget's page of messages: ``messages_json_after`` without private notes (the team's
    alone, SPEC §11), also bounded in size: messages are taken while the ones before
    them hold fewer than ``max_chars`` characters of stored JSON (so always at least one, and a
    page exceeds the bound by at most its last message). The running size is a window sum over
    the same index scan, so the bound costs no extra visit."""
    h = db(s)
    d = h.dialect
    return [_message_json(d, r) for r in h.run(_MESSAGES_PAGE, (conversation_id, after, False, limit, max_chars))]


_MESSAGES_PAGE = (
    f"SELECT {MESSAGE.columns} FROM ("
    f" SELECT {MESSAGE.columns_json_text_named},"
    f" COALESCE(SUM({MESSAGE.json_size}) OVER (ORDER BY seq ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0)"
    " AS size_before"
    " FROM message WHERE conversation_id = ? AND seq > ? AND private = ? ORDER BY seq LIMIT ?"
    ") AS page WHERE size_before < ? ORDER BY seq"
)
# What the public message JSON takes from a row, in the order ``_message_json`` unpacks it.
_MESSAGE_JSON_FIELDS = itemgetter(*(MESSAGE.index[n] for n in (
    "id", "conversation_id", "seq", "actor_type", "actor_id", "message_parts", "reply_parts", "reply_to",
    "client_message_id", "created_at", "private",
)))  # fmt: skip


def _message_json(d: Dialect, r: tuple[Any, ...]) -> dict[str, Any]:
    """A row of ``MESSAGE.columns_json_text`` as ``shapes.message_json`` would render it."""
    id_, conversation_id, seq, actor_type, actor_id, parts, replies, reply_to, client_id, created_at, private = (
        _MESSAGE_JSON_FIELDS(r)
    )
    return {
        "id": id_,
        "conversation_id": conversation_id,
        "seq": seq,
        "actor": {"type": actor_type} if actor_id is None else {"type": actor_type, "id": actor_id},
        # Parts that name an uploaded file are parsed, so a fresh signed link can be added
        # to them on the way out (app/files/links.py); all others stay their stored text.
        "message_parts": d.json_out(parts) if isinstance(parts, str) and FILE_MARKER in parts else d.raw_json(parts),
        "reply_parts": d.raw_json(replies),
        "reply_to": d.raw_json(reply_to),
        "client_message_id": client_id,
        "private": bool(private),
        "created_at": d.iso(created_at),
    }


def message_by_client_id(h: Db, conversation_id: str, client_message_id: str) -> MessageRow | None:
    found = h.run(
        f"SELECT {MESSAGE.columns} FROM message WHERE conversation_id = ? AND client_message_id = ?",
        (conversation_id, client_message_id),
    )
    return MESSAGE.read(h.dialect, found[0]) if found else None


def message_conversation_id(h: Db, message_id: str) -> str | None:
    found = h.run("SELECT conversation_id FROM message WHERE id = ?", (message_id,))
    return found[0][0] if found else None


def insert_message(h: Db, m: MessageRow) -> None:
    # Held back (``Db.late``) on SQLite: the batch's messages go in together, and a statement
    # that reads messages sends them first.
    h.late(MESSAGE.insert, MESSAGE.params_of(h.dialect, m))


# --- agents and users --------------------------------------------------------------------------


def agent(h: Db, agent_id: str) -> AgentRow | None:
    found = h.run(f"SELECT {AGENT.columns} FROM agent WHERE id = ?", (agent_id,))
    return AGENT.read(h.dialect, found[0]) if found else None


def default_bot_id(h: Db, workspace_id: str) -> str | None:
    found = h.run("SELECT id FROM agent WHERE workspace_id = ? AND is_default_bot = ?", (workspace_id, True))
    return found[0][0] if found else None


def user_workspace(h: Db, user_id: str) -> str | None:
    found = h.run('SELECT workspace_id FROM "user" WHERE id = ?', (user_id,))
    return found[0][0] if found else None


# --- the outbox ----------------------------------------------------------------------------


def insert_event(h: Db, event_id: str, workspace_id: str, type_: str, payload: dict[str, Any], at: datetime) -> None:
    values = {"id": event_id, "workspace_id": workspace_id, "type": type_, "payload": payload, "created_at": at}
    h.late(EVENT.insert, EVENT.params(h.dialect, [values[n] for n in EVENT.names]))


def enabled_endpoints(h: Db, workspace_id: str) -> list[tuple[str, list[str]]]:
    """``(id, event types)`` of the workspace's enabled webhook endpoints, read once per
    transaction (``Db.facts``): an endpoint created or disabled on any instance counts from the
    next transaction on, in this one from the next write after the one that changed it."""
    key = ("endpoints", workspace_id)
    known = h.facts.get(key)
    if known is None:
        found = h.run(
            f"SELECT {ENDPOINT_EVENTS.columns} FROM webhook_endpoint WHERE workspace_id = ? AND enabled = ?",
            (workspace_id, True),
        )
        known = h.facts[key] = _endpoints(h.dialect, found)
    return known  # type: ignore[no-any-return]


def _endpoints(d: Dialect, found: list[tuple[Any, ...]]) -> list[tuple[str, list[str]]]:
    return [(r[0], d.json_out(r[1])) for r in found]


def insert_deliveries(h: Db, workspace_id: str, event_id: str, type_: str, endpoint_ids: list[str],
                      new_id: Callable[[], str], at: datetime) -> None:  # fmt: skip
    """One pending delivery of the event per endpoint, due now."""
    values = {"workspace_id": workspace_id, "event_id": event_id, "event_type": type_, "next_attempt_at": at,
              "created_at": at, "updated_at": at}  # fmt: skip
    for endpoint_id in endpoint_ids:
        values.update(id=new_id(), endpoint_id=endpoint_id)
        # Held back like their event (``Db.late``), and sent after it.
        h.late(INSERT_DELIVERY, DELIVERY.params(h.dialect, [values[n] for n in DELIVERY.names]))


# --- API tokens ----------------------------------------------------------------------------


def token_by_hash(h: Db, token_hash: str) -> tuple[str, str, list[str], bool] | None:
    """``(id, workspace_id, scopes, revoked)`` of the token with this hash, read once per
    transaction (``Db.facts``; a revocation is an ORM write, which drops it)."""
    key = ("token", token_hash)
    if key in h.facts:
        return h.facts[key]  # type: ignore[no-any-return]
    token_sql = f"SELECT {TOKEN.columns} FROM api_token WHERE token_hash = ?"
    endpoints: list[tuple[Any, ...]] | None = None
    if h.writing:
        # A write's events will want its workspace's endpoints (``enabled_endpoints``): on
        # PostgreSQL they come in the token's round trip.
        found, endpoints = h.run_together((token_sql, (token_hash,)), (ENDPOINTS_OF_TOKEN, (True, token_hash)))
    else:
        found = h.run(token_sql, (token_hash,))
    r = found[0] if found else None
    token = h.facts[key] = None if r is None else (r[0], r[1], h.dialect.json_out(r[2]), r[3] is not None)
    if token is not None and endpoints is not None:
        h.facts[("endpoints", token[1])] = _endpoints(h.dialect, endpoints)
    return token

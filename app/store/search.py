"""Full-text search over conversations (SPEC §11): the message text and the customer's name and
email, in the database itself — SQLite FTS5 on the embedded default, PostgreSQL ``tsvector``
with a GIN index.

**The index** is the table ``search_entry`` (``tables.SearchEntry``), kept apart from what it
indexes: one row per message with text (``index_message``, in the message's own write) and one
per customer for their name and email (``index_user``, when they are created or change). Its
``body`` is normalized here (``search_text``: lower case, accents and punctuation gone), so both
engines see the same words. On SQLite an external-content FTS5 table ``search_fts`` indexes
``search_entry.body`` and triggers keep it in step; on PostgreSQL a GIN index over
``to_tsvector('simple', body)`` does (``create_structures``, run by the migration).

**Deleting** (erasure, retention): an entry goes with its message, conversation or user —
``ON DELETE CASCADE`` in the database, and on SQLite the trigger takes it out of ``search_fts``
too — so deleting those rows is enough. ``forget_user`` and ``forget_conversations`` delete the
entries explicitly (before the rows, if you like). FTS5 keeps a deleted entry's words in its
index segments until they are merged: after an erasure, call ``purge`` (FTS5 ``optimize``:
rewrites the index without them) so the erased text is found nowhere in the database file; it
is a no-op on PostgreSQL, whose GIN index drops dead entries at ``VACUUM``.

**Querying**: ``conversation_match`` is the condition a conversation list adds for ``?q=``:
conversations of the workspace with a message matching every term (each as a prefix), or whose
customer's name or email matches them.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, text
from sqlalchemy.sql.elements import TextClause

from app.store.dialect import Dialect, dialect_of

MAX_BODY = 20_000  # characters of a message's text that are indexed
MAX_TERMS = 8
_WORD = re.compile(r"[^\W_]+")

# What the migration adds besides the table (not in the models: tests/store/test_migrations.py
# compares the models with the schema without them, through ``outside_the_models``).
FTS_TABLE = "search_fts"
GIN_INDEX = "ix_search_entry_body"


def search_text(value: str) -> str:
    """Words only, lower case, without accents: what is indexed and what is searched."""
    if value.isascii():  # most text: no accents to take off, and no per-character loop
        return " ".join(_WORD.findall(value.lower()))
    decomposed = unicodedata.normalize("NFKD", value)
    plain = "".join(ch for ch in decomposed if not unicodedata.combining(ch)).casefold()
    return " ".join(_WORD.findall(plain))


def terms(query: str) -> list[str]:
    """A search box's words (at most ``MAX_TERMS``, each at most 64 characters)."""
    return [t[:64] for t in search_text(query[:500]).split()][:MAX_TERMS]


def message_text(parts: Iterable[dict[str, Any]]) -> str:
    """The searchable text of a message: its text parts and the names of its files."""
    found: list[str] = []
    for part in parts:
        if "text" in part:
            found.append(str(part["text"].get("content", "")))
        else:
            for kind in ("file", "video", "audio"):
                if kind in part and part[kind].get("name"):
                    found.append(str(part[kind]["name"]))
    return search_text(" ".join(found)[:MAX_BODY])


_INSERT = "INSERT INTO search_entry (workspace_id, user_id, conversation_id, message_id, body) VALUES (?, ?, ?, ?, ?)"


def index_message(
    h: Any, workspace_id: str, user_id: str, conversation_id: str, message_id: str, parts: list[dict[str, Any]]
) -> None:
    """Index a new message (``h``: the write's ``rows.Db``); a message without text costs nothing.
    Sent ``late``: a batch's messages go into the index together (``Db.late``)."""
    body = message_text(parts)
    if body:
        h.late(_INSERT, (workspace_id, user_id, conversation_id, message_id, body))


def index_user(h: Any, workspace_id: str, user_id: str, name: str | None, email: str | None) -> None:
    """(Re)index a customer's name and email."""
    h.run("DELETE FROM search_entry WHERE user_id = ? AND message_id IS NULL", (user_id,))
    body = search_text(" ".join(v for v in (name, email) if v))
    if body:
        h.run(_INSERT, (workspace_id, user_id, None, None, body))


def forget_user(h: Any, user_id: str) -> None:
    """Delete every entry of a customer: their name and email, and their conversations' messages."""
    h.run("DELETE FROM search_entry WHERE user_id = ?", (user_id,))


def forget_conversations(h: Any, conversation_ids: list[str]) -> None:
    for conversation_id in conversation_ids:
        h.run("DELETE FROM search_entry WHERE conversation_id = ?", (conversation_id,))


def purge(h: Any) -> None:
    """After deleting entries: leave no word of them in the index's storage (SQLite FTS5)."""
    if h.dialect.sqlite:
        h.run(f"INSERT INTO {FTS_TABLE}({FTS_TABLE}) VALUES ('optimize')")


def conversation_match(dialect: Dialect, workspace_id: str, query_terms: list[str]) -> TextClause:
    """The condition on ``conversation`` for a search: a message of it matches every term, or
    its customer's name or email does."""
    match = dialect.text_match("e", "search_q")
    return text(
        "(conversation.id IN (SELECT e.conversation_id FROM search_entry e"
        f" WHERE e.workspace_id = :search_ws AND e.conversation_id IS NOT NULL AND {match})"
        " OR conversation.user_id IN (SELECT e.user_id FROM search_entry e"
        f" WHERE e.workspace_id = :search_ws AND e.message_id IS NULL AND {match}))"
    ).bindparams(search_ws=workspace_id, search_q=dialect.text_query(query_terms))


# --- the engine's own index (the migration) ------------------------------------------------


def create_structures(conn: Connection) -> None:
    """The index over ``search_entry.body``: FTS5 and its triggers, or the GIN index."""
    if dialect_of(conn).sqlite:
        for statement in (
            f"CREATE VIRTUAL TABLE {FTS_TABLE} USING fts5(body, content='search_entry', content_rowid='id',"
            " tokenize='unicode61 remove_diacritics 2')",
            "CREATE TRIGGER search_entry_ai AFTER INSERT ON search_entry BEGIN"
            f" INSERT INTO {FTS_TABLE}(rowid, body) VALUES (new.id, new.body); END",
            "CREATE TRIGGER search_entry_ad AFTER DELETE ON search_entry BEGIN"
            f" INSERT INTO {FTS_TABLE}({FTS_TABLE}, rowid, body) VALUES ('delete', old.id, old.body); END",
            "CREATE TRIGGER search_entry_au AFTER UPDATE ON search_entry BEGIN"
            f" INSERT INTO {FTS_TABLE}({FTS_TABLE}, rowid, body) VALUES ('delete', old.id, old.body);"
            f" INSERT INTO {FTS_TABLE}(rowid, body) VALUES (new.id, new.body); END",
        ):
            conn.exec_driver_sql(statement)
    else:
        conn.exec_driver_sql(f"CREATE INDEX {GIN_INDEX} ON search_entry USING GIN (to_tsvector('simple', body))")


def drop_structures(conn: Connection) -> None:
    if dialect_of(conn).sqlite:
        for trigger in ("search_entry_ai", "search_entry_ad", "search_entry_au"):
            conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {trigger}")
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {FTS_TABLE}")
    else:
        conn.exec_driver_sql(f"DROP INDEX IF EXISTS {GIN_INDEX}")


def backfill(conn: Connection) -> None:
    """Index what was stored before the index existed (the migration)."""
    d = dialect_of(conn)
    users = conn.execute(text('SELECT id, workspace_id, name, email FROM "user"')).all()
    rows = [
        (ws, uid, None, None, search_text(" ".join(v for v in (name, email) if v))) for uid, ws, name, email in users
    ]
    found = conn.execute(
        text(
            "SELECT m.id, m.workspace_id, m.conversation_id, c.user_id, CAST(m.message_parts AS TEXT)"
            " FROM message m JOIN conversation c ON c.id = m.conversation_id WHERE m.actor_type <> 'system'"
        )
    )
    for message_id, ws, conversation_id, user_id, parts in found:
        rows.append((ws, user_id, conversation_id, message_id, message_text(d.json_out(parts) or [])))
    insert = text(
        "INSERT INTO search_entry (workspace_id, user_id, conversation_id, message_id, body)"
        " VALUES (:ws, :user_id, :conversation_id, :message_id, :body)"
    )
    values = [
        {"ws": ws, "user_id": u, "conversation_id": c, "message_id": m, "body": body}
        for ws, u, c, m, body in rows
        if body
    ]
    if values:
        conn.execute(insert, values)


def outside_the_models(name: str | None, type_: Any, parent_names: Any) -> bool:
    """Alembic's ``include_name``: False for what ``create_structures`` makes (not in the models)."""
    if type_ == "table" and name is not None and name.startswith(FTS_TABLE):
        return False
    return not (type_ == "index" and name == GIN_INDEX)

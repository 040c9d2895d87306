"""Erasure (SPEC §13): a user, or some conversations, deleted — not hidden — with everything
stored that carries their data, in one transaction; after it commits, their files' bytes,
and the database's own leftovers (``Dialect.reclaim_erased``).

What goes with a conversation: its messages (and their search entries, ``app/store/search.py``),
web-view openings, files, the outbox events
whose payload names it (and those events' webhook deliveries and attempts, pending or not:
a delivery's body is its event), and the idempotency records whose stored response names it.
With a user also: their own uploads, events and idempotency records that name them, and the
user row; ``user.deleted`` (``{user_id, external_id}``) is announced in the same transaction.
The audit log is not touched: it names who acted on what, never what a customer wrote.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import anyio
from sqlalchemy import bindparam, text
from sqlalchemy.engine import Engine

from app import errors, events
from app.files import records as files
from app.files.service import Files
from app.store import search
from app.store.dialect import dialect_of
from app.store.runner import Tx
from app.store.tables import User, UTCDateTime

log = logging.getLogger("backchannel.data")

# The tables an erasure deletes from: what ``Dialect.reclaim_erased`` cleans up after it.
ERASED_TABLES = (
    "message", "conversation", "webview_opening", "email_progress", "file", "event", "webhook_delivery",
    "webhook_attempt", "idempotency_record", "user",
)  # fmt: skip
_CHUNK = 200  # ids per IN list / LIKE group: well inside every driver's parameter limit


@dataclass
class Erased:
    """What an erasure removed; ``storage_keys`` are the file bytes to delete after commit."""

    conversations: int = 0
    messages: int = 0
    files: int = 0
    events: int = 0
    storage_keys: list[str] = field(default_factory=list)


def _chunks(ids: Sequence[str]) -> Iterable[list[str]]:
    for i in range(0, len(ids), _CHUNK):
        yield list(ids[i : i + _CHUNK])


def _run(tx: Tx, sql: str, ids: list[str], **params: Any) -> int:
    statement = text(sql).bindparams(bindparam("ids", expanding=True))
    result: Any = tx.session.execute(statement, {"ids": ids, **params})
    return int(result.rowcount or 0)


def _naming(
    tx: Tx,
    table: str,
    column: str,
    workspace_id: str,
    needles: Sequence[str],
    since: datetime | None,
    until: datetime | None = None,
) -> list[str]:
    """Keys of the workspace's ``table`` rows whose stored JSON text (``column``) names any of
    ``needles`` (ids: ``usr_…``, ``cnv_…``, which never occur by chance). Only rows written
    ``since`` (nothing names a user or conversation before it existed): both tables are
    indexed by ``created_at``, so an erasure of old conversations reads few rows. ``until``
    bounds it on the other side too (retention: see ``erase_conversations``)."""
    found: list[str] = []
    key = "key" if table == "idempotency_record" else "id"
    bound = ("" if since is None else " AND created_at >= :since") + (
        "" if until is None else " AND created_at <= :until"
    )
    for group in _chunks(needles):
        likes = " OR ".join(f"CAST({column} AS TEXT) LIKE :n{i}" for i in range(len(group)))
        params: dict[str, Any] = {f"n{i}": f"%{needle}%" for i, needle in enumerate(group)}
        statement = text(f"SELECT {key} FROM {table} WHERE workspace_id = :ws{bound} AND ({likes})")
        if since is not None:
            statement = statement.bindparams(bindparam("since", type_=UTCDateTime()))
            params["since"] = since
        if until is not None:
            statement = statement.bindparams(bindparam("until", type_=UTCDateTime()))
            params["until"] = until
        rows = tx.session.execute(statement, {"ws": workspace_id, **params})
        found += [r[0] for r in rows]
    return found


def _erase_events_naming(
    tx: Tx, workspace_id: str, needles: Sequence[str], since: datetime | None, until: datetime | None
) -> int:
    event_ids = _naming(tx, "event", "payload", workspace_id, needles, since, until)
    for ids in _chunks(event_ids):
        _run(
            tx,
            "DELETE FROM webhook_attempt WHERE delivery_id IN (SELECT id FROM webhook_delivery WHERE event_id IN :ids)",
            ids,
        )
        _run(tx, "DELETE FROM webhook_delivery WHERE event_id IN :ids", ids)
        _run(tx, "DELETE FROM event WHERE id IN :ids", ids)
    return len(event_ids)


def _erase_idempotency_naming(
    tx: Tx, workspace_id: str, needles: Sequence[str], since: datetime | None, until: datetime | None
) -> None:
    for keys in _chunks(_naming(tx, "idempotency_record", "response_body", workspace_id, needles, since, until)):
        _run(tx, "DELETE FROM idempotency_record WHERE workspace_id = :ws AND key IN :ids", keys, ws=workspace_id)


def erase_conversations(
    tx: Tx,
    workspace_id: str,
    conversation_ids: Sequence[str],
    *,
    also_naming: Sequence[str] = (),
    since: datetime | None = None,
    until: datetime | None = None,
    purge_index: bool = True,
) -> Erased:
    """Delete these conversations (the caller has checked they are the workspace's) and all
    that carries their data; ``also_naming`` adds ids (a user's) whose events and idempotency
    records go too. ``since``: when the oldest of them (and of ``also_naming``) was created;
    ``until``: no event or record naming them is newer (retention: a day after their newest
    ``updated_at``, since every stored event about a conversation comes with a change to it).
    ``purge_index=False`` leaves rewriting the search index to the caller (retention does it
    once a round, not once a batch: on SQLite it rewrites the whole index)."""
    out = Erased(conversations=len(conversation_ids))
    if tx.dialect.row_locks:
        # A message being posted to one of them meanwhile (another writer lane or instance)
        # holds its row lock: wait for it, so its message is deleted too; a post after this
        # finds no conversation (404). In id order, as everywhere.
        for ids in _chunks(sorted(conversation_ids)):
            _run(tx, "SELECT id FROM conversation WHERE id IN :ids ORDER BY id FOR UPDATE", ids)
    for ids in _chunks(conversation_ids):
        _run(tx, "DELETE FROM webview_opening WHERE conversation_id IN :ids", ids)
        _run(tx, "DELETE FROM email_progress WHERE conversation_id IN :ids", ids)  # offline replies (app/mail)
        out.messages += _run(tx, "DELETE FROM message WHERE conversation_id IN :ids", ids)
    out.storage_keys = files.delete_files(tx.session, workspace_id, conversation_ids=conversation_ids)
    out.files = len(out.storage_keys)
    needles = [*also_naming, *conversation_ids]
    out.events = _erase_events_naming(tx, workspace_id, needles, since, until)
    _erase_idempotency_naming(tx, workspace_id, needles, since, until)
    for ids in _chunks(conversation_ids):
        _run(tx, "DELETE FROM conversation WHERE id IN :ids", ids)
    # Their search entries went with the rows (ON DELETE CASCADE); FTS5 keeps the words of
    # deleted entries until its segments merge: rewrite the index without them.
    if purge_index:
        search.purge(tx.db)
    return out


def erase_user(tx: Tx, workspace_id: str, user_id: str) -> Erased:
    """Delete the user and everything about them; 404 if not this workspace's user."""
    user = tx.session.get(User, user_id)
    if user is None or user.workspace_id != workspace_id:
        raise errors.NotFound("No such user.")
    if tx.dialect.row_locks:  # a conversation being started for them meanwhile waits, then fails
        _run(tx, 'SELECT id FROM "user" WHERE id IN :ids FOR UPDATE', [user_id])
    external_id = user.external_id
    conversation_ids = [
        r[0]
        for r in tx.session.execute(
            text("SELECT id FROM conversation WHERE workspace_id = :ws AND user_id = :user"),
            {"ws": workspace_id, "user": user_id},
        )
    ]
    search.forget_user(tx.db, user_id)  # their name and email too, before the index is purged
    out = erase_conversations(tx, workspace_id, conversation_ids, also_naming=[user_id], since=user.created_at)
    out.storage_keys += files.delete_files(tx.session, workspace_id, user_id=user_id)
    out.files = len(out.storage_keys)
    tx.session.expunge(user)
    _run(tx, 'DELETE FROM "user" WHERE id IN :ids', [user_id])
    tx.emit(workspace_id, events.USER_DELETED, {"user_id": user_id, "external_id": external_id})
    return out


async def finish(store: Files, engine: Engine, erased: Erased, vacuum_soon: Callable[[], None]) -> None:
    """After the erasure committed: delete the files' bytes, and on SQLite checkpoint the WAL
    so no earlier page image holds the erased text (``Dialect.reclaim_erased``). PostgreSQL's
    ``VACUUM`` is left to the background job (``vacuum_soon``: ``retention.DataJob``), off
    the request path."""
    if erased.storage_keys:
        try:
            await store.delete_bytes(erased.storage_keys)
        except Exception as exc:  # the rows are gone; the bytes are retried by nobody: say so
            log.error("erasure: could not delete %d files' bytes (%s)", len(erased.storage_keys), type(exc).__name__)
            raise
    dialect = dialect_of(engine)
    if not dialect.reclaims_at_once:
        vacuum_soon()
    elif not await anyio.to_thread.run_sync(dialect.reclaim_erased, engine, ERASED_TABLES):
        log.warning("erasure: the WAL checkpoint could not finish (a long reader); the next one will")

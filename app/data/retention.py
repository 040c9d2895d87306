"""Retention (SPEC §13): each workspace's ``retention_days``, and the background job that
erases resolved conversations past it, in small batches that never stall the writer.

The job (``DataJob``, started in the lifespan) wakes every ``RETENTION_INTERVAL_SECONDS``, or
at once when a workspace's retention changes. For each workspace with ``retention_days`` set
it takes up to ``RETENTION_BATCH`` resolved conversations whose last change (``updated_at``:
a resolved conversation changes no more, so this is when it was resolved, or later) is older
than that, deletes their messages a thousand at a time, then erases them as an erasure does
(``erasure.erase_conversations``), each step one short write of its own, with a pause
between steps so request writes queued behind it go first. Several instances may run it at
once: each step reads what is still there, so two only repeat a little work.

After erasing, the database is told to let go of the bytes (``Dialect.reclaim_erased``): on
PostgreSQL a plain ``VACUUM`` of the touched tables, also asked for by each user erasure
(``vacuum_soon``); on SQLite the erasure's own WAL checkpoint. The audit log is never touched.
"""

from __future__ import annotations

import contextlib
import logging
from datetime import timedelta
from typing import Any

import anyio
from sqlalchemy import bindparam, text
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from app.data import erasure
from app.files.service import Files
from app.ids import utcnow
from app.settings import Settings
from app.store import search
from app.store.dialect import dialect_of
from app.store.runner import Runner, Tx
from app.store.tables import UTCDateTime, Workspace

log = logging.getLogger("backchannel.data")
MESSAGES_PER_STEP = 1000


def workspaces_with_retention(s: Session) -> list[tuple[str, int]]:
    found = s.exec(select(Workspace).where(col(Workspace.retention_days).is_not(None)))
    return [(w.id, w.retention_days) for w in found if w.retention_days]


def expired_conversations(s: Session, workspace_id: str, days: int, limit: int) -> list[str]:
    """Up to ``limit`` of the workspace's resolved conversations unchanged for ``days`` days."""
    statement = text(
        "SELECT id FROM conversation WHERE workspace_id = :ws AND status = 'resolved' AND updated_at < :cutoff"
        " ORDER BY updated_at LIMIT :n"
    ).bindparams(bindparam("cutoff", type_=UTCDateTime()))
    cutoff = utcnow() - timedelta(days=days)
    return [r[0] for r in s.execute(statement, {"ws": workspace_id, "cutoff": cutoff, "n": limit})]


def delete_some_messages(tx: Tx, conversation_ids: list[str], limit: int = MESSAGES_PER_STEP) -> int:
    """Delete up to ``limit`` messages of these conversations (a step of a retention batch)."""
    statement = text(
        "DELETE FROM message WHERE id IN (SELECT id FROM message WHERE conversation_id IN :ids LIMIT :n)"
    ).bindparams(bindparam("ids", expanding=True))
    result: Any = tx.session.execute(statement, {"ids": conversation_ids, "n": limit})
    return int(result.rowcount or 0)


def erase_expired(tx: Tx, workspace_id: str, days: int, conversation_ids: list[str]) -> erasure.Erased:
    """Erase those of ``conversation_ids`` still resolved and expired (read again, in this
    transaction: a customer may have written meanwhile, reopening one)."""
    still = set(expired_conversations(tx.session, workspace_id, days, len(conversation_ids)))
    doomed = [c for c in conversation_ids if c in still]
    since, newest = tx.session.execute(
        text("SELECT MIN(created_at), MAX(updated_at) FROM conversation WHERE id IN :ids").bindparams(
            bindparam("ids", expanding=True)
        ),
        {"ids": doomed or [""]},
    ).one()
    d = dialect_of(tx.session.connection())
    return erasure.erase_conversations(
        tx,
        workspace_id,
        doomed,
        since=d.ts_out(since) if since else None,
        # Events and idempotency records about them are as old as their last change: only
        # those rows are read (the tables are indexed by age), not the whole recent outbox.
        until=d.ts_out(newest) + timedelta(days=1) if newest else None,
        purge_index=False,  # once a round (``DataJob.run_once``)
    )


def purge_search_index(tx: Tx) -> None:
    search.purge(tx.db)


class DataJob:
    """The background job of retention and of reclaiming erased space."""

    def __init__(self, runner: Runner, engine: Engine, files: Files, settings: Settings) -> None:
        self.runner = runner
        self.engine = engine
        self.files = files
        self.settings = settings
        self._wake = anyio.Event()
        self._vacuum = False
        self._stopping = False
        self.erased_total = 0  # conversations erased by retention since start (tests, logs)

    def wake(self) -> None:
        """Look now (a workspace's retention changed)."""
        self._wake.set()

    def vacuum_soon(self) -> None:
        """An erasure committed: reclaim its space on the next round (PostgreSQL's VACUUM)."""
        self._vacuum = True
        self._wake.set()

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    async def run(self) -> None:
        while not self._stopping:
            with anyio.move_on_after(self.settings.retention_interval_seconds):
                await self._wake.wait()
            self._wake = anyio.Event()
            if self._stopping:
                return
            try:
                await self.run_once()
            except Exception:  # the next round tries again
                log.exception("retention round failed")

    async def run_once(self) -> int:
        """One round over every workspace; returns how many conversations it erased."""
        erased = 0
        for workspace_id, days in await self.runner.read(workspaces_with_retention):
            erased += await self._expire(workspace_id, days)
        if erased:
            self.erased_total += erased
            log.info("retention erased %d conversations", erased)
        dialect = dialect_of(self.engine)
        if erased:
            # The erased messages' words leave the search index's storage (SQLite FTS5 keeps
            # them in its segments until they are merged): once a round, not once a batch.
            await self.runner.write(purge_search_index)
        if (erased or self._vacuum) and not self._stopping:
            self._vacuum = False
            await anyio.to_thread.run_sync(dialect.reclaim_erased, self.engine, erasure.ERASED_TABLES)
        return erased

    async def _expire(self, workspace_id: str, days: int) -> int:
        erased = 0
        pause = self.settings.retention_pause_seconds
        while not self._stopping:
            batch = await self.runner.read(expired_conversations, workspace_id, days, self.settings.retention_batch)
            if not batch:
                return erased
            while await self.runner.write(delete_some_messages, batch) == MESSAGES_PER_STEP:
                await anyio.sleep(pause)
            done: erasure.Erased = await self.runner.write(erase_expired, workspace_id, days, batch)
            if done.storage_keys:
                await self.files.delete_bytes(done.storage_keys)
            erased += done.conversations
            await anyio.sleep(pause)
        return erased


async def run_data_job(job: DataJob, exit_stack: contextlib.AsyncExitStack) -> None:
    """Lifespan: run ``job`` until ``exit_stack`` closes."""
    tg = await exit_stack.enter_async_context(anyio.create_task_group())
    tg.start_soon(job.run)
    exit_stack.callback(job.stop)  # exits before the task group, which then waits for run()

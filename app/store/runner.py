"""The unit of work: ``Tx`` (one transaction and what to announce once it commits) and the
``Runner`` that group-commits writes, runs reads, and publishes each write's events after its
commit.

Routes (REST, widget socket, console) pass write functions ``fn(tx, …)`` to ``Runner.write``;
nothing else writes conversation state, and delivery (sockets, webhooks) only consumes events.
A write function does store work only: anything outside the transaction (rate limits, live
events, caches) is settled before it is queued or left to the runner after the commit
(``Tx.publish``, ``Tx.after_commit``), because a batch may run it more than once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlmodel import Session

from app import errors, events
from app.ids import isoformat, new_id, utcnow
from app.realtime.broker import Broker
from app.store import sql as rows
from app.store.dialect import Dialect, dialect_of
from app.store.engine import session_scope
from app.store.tables import WebhookEndpoint
from app.store.threads import run_in_thread

log = logging.getLogger("backchannel.actions")
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Emitted:
    """An event recorded in the outbox: its id is the webhook-id of every delivery of it."""

    id: str
    type: str


@dataclass
class StoreCache:
    """What a process may remember between transactions: facts that never change once stored.

    A workspace's default bot is created once and never removed, so its id is kept once a
    transaction that read it has committed (``Tx.after_commit``): a batch that rolls back
    and starts again must not remember what it saw.
    """

    default_bots: dict[str, str] = field(default_factory=dict)


@dataclass
class Tx:
    """One open transaction, plus what to announce once it commits.

    A write may run more than once (a batch that starts again, a lost lock race), each time in
    a fresh ``Tx``: what it queues here happens once, after the commit that kept it, never for
    a run that rolled back.
    """

    session: Session
    cache: StoreCache = field(default_factory=StoreCache)
    outgoing: list[dict[str, Any]] = field(default_factory=list)
    webhooks_enqueued: int = 0
    committed: list[Callable[[], object]] = field(default_factory=list)

    @property
    def db(self) -> rows.Db:
        """The transaction at the DB-API level, for the prepared statements of the hot paths."""
        return rows.db(self.session)

    @property
    def dialect(self) -> Dialect:
        """What the database can do (``row_locks``, …): ask this, not which database it is."""
        return self.db.dialect

    def emit(
        self,
        workspace_id: str,
        type_: str,
        data: dict[str, Any],
        *,
        only_endpoint: WebhookEndpoint | None = None,
    ) -> Emitted:
        """Record an event in the outbox (same transaction) and queue its live publish.

        ``app/events.py`` says which types are stored and which are also published live."""
        kind = events.EVENTS[type_]
        if not kind.stored:
            raise ValueError(f"{type_} is live only: publish it, do not store it")
        now = utcnow()
        event_id = new_id("msg")
        payload = {"type": type_, "timestamp": isoformat(now), "data": data}
        rows.insert_event(self.db, event_id, workspace_id, type_, payload, now)
        targets = [only_endpoint.id] if only_endpoint else self._subscribers(workspace_id, type_)
        if targets:
            rows.insert_deliveries(self.db, workspace_id, event_id, type_, targets, lambda: new_id("dlv"), now)
            self.webhooks_enqueued += len(targets)
        if kind.live:
            self.publish({"type": type_, "workspace_id": workspace_id, "data": data})
        return Emitted(event_id, type_)

    def publish(self, event: dict[str, Any]) -> None:
        """Announce something live after commit (typing, read state, …): never stored."""
        self.outgoing.append(event)

    def after_commit(self, fn: Callable[[], object]) -> None:
        """Run ``fn`` once this transaction has committed (in the worker thread, right after the
        commit): for what a process may remember of it, such as ``StoreCache`` entries."""
        self.committed.append(fn)

    def endpoints_changed(self) -> None:
        """This write changed webhook endpoints: later emits in the transaction read them again.
        (An ORM flush does this too; this is for a change not flushed yet.)"""
        self.db.facts.clear()

    def _subscribers(self, workspace_id: str, type_: str) -> list[str]:
        """Ids of the workspace's enabled endpoints that take this event type.

        Read in the transaction itself (once per transaction: ``sql.enabled_endpoints``), not
        cached across them: an endpoint created or disabled on any instance counts from the
        next transaction on.
        """
        endpoints = rows.enabled_endpoints(self.db, workspace_id)
        return [id_ for id_, events in endpoints if "*" in events or type_ in events]


@dataclass
class _Job:
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    future: asyncio.Future[Any]
    lane: int = 0
    partition: str = ""  # the conversation it writes to, where the caller said so
    bumps: str = ""  # the conversation whose next message seq it takes first, where the caller said so
    lost_races: int = 0  # deadlocks / serialization failures this write has lost so far
    quick: bool = False  # a short write that may run on the event loop (``Runner.write``)


@dataclass(slots=True)
class _Committed:
    """A committed write waiting for its events to be published."""

    job: _Job
    result: Any
    tx: Tx


class Runner:
    """Runs store work in a worker thread (short writes on SQLite: on the event loop), then publishes.

    Concurrent writes are group-committed: a writer lane takes every write queued behind it
    (up to ``WRITE_BATCH``) into one worker-thread call and one transaction,
    each write inside its own SAVEPOINT so a failing write rolls back alone and raises to
    its own caller. After the commit the runner itself publishes the batch's events (a lane's
    announcer, in commit order, while the lane commits its next batch) and only then resolves
    each caller: a caller that went away meanwhile (a client hanging up) loses its answer,
    never the live events of a write that committed.

    Why: every hand-off to a worker thread waits for the GIL (up to
    ``sys.getswitchinterval()``, 5 ms, while the event loop is busy), and every commit is a
    log flush. One hand-off and one commit per write capped writes near 200/s whatever the
    CPU; one per batch does not. On SQLite, which has one writer at a time anyway, queuing
    here also spares writers SQLite's busy handler, which sleeps up to 100 ms between tries
    while the lock sits free (other processes on the same file still wait through
    ``busy_timeout``). On PostgreSQL a process runs ``writers`` lanes, and writes given the
    same ``partition`` (a conversation) share one, so a process's lanes do not wait on each
    other's row locks for it. Background writes (the webhook dispatcher's claims, attempt
    records and lease renewals: ``background=True``) have a lane of their own on PostgreSQL,
    so their locks on endpoint and delivery rows never sit in a transaction that also holds
    a conversation's lock, and the two kinds cannot wait on each other in a cycle. A write
    that still loses a deadlock or a serialization failure (another instance's batch) is
    rolled back to its savepoint and run again in the lane's next batch, after this one
    committed and let go of its locks (``LOST_RACE_RETRIES`` times), instead of failing.

    On SQLite, a batch of short writes (``quick``: a message, a read receipt) runs on the
    event loop itself, on an engine of its own (``inline_engine``) that never waits for a
    lock. In process, such a transaction is a few hundred microseconds of CPU, and handing
    it to a thread cost more than that: the GIL passed back and forth at every SQLite call,
    and wake-ups both ways (−15 % CPU a message end to end; docs/performance.md, section 16).
    If another connection holds the write lock (another process, an erasure's checkpoint),
    that batch waits for it in a worker thread as any other, and the loop goes on. Its
    commits never checkpoint the WAL (which would copy pages and fsync on the loop): once
    they have written about ``CHECKPOINT_PAGES`` to it, a worker thread does, while the lane
    waits (``_checkpoint_wal``).
    """

    WRITE_BATCH = 64
    READ_BATCH = 32
    READERS = 3
    LOST_RACE_RETRIES = 5
    CHECKPOINT_PAGES = 1000  # WAL pages between checkpoints, as SQLite's own ``wal_autocheckpoint``

    def __init__(
        self,
        engine: Engine,
        read_engine: Engine,
        broker: Broker,
        *,
        writers: int = 1,
        inline_engine: Engine | None = None,
    ) -> None:
        self.engine = engine
        self.read_engine = read_engine
        self.inline_engine = inline_engine
        # Inline writes since the last WAL checkpoint, and the WAL pages each wrote, as the last
        # checkpoint found them (frames in the WAL ÷ writes since the one before).
        self._inline_writes = 0
        self._pages_per_write = 8.0
        self.broker = broker
        self.on_webhooks_enqueued: Callable[[], None] = lambda: None
        self.cache = StoreCache()
        # SQLite has one writer at a time: one lane. PostgreSQL takes several side by side,
        # plus one for background writes.
        self.dialect = dialect_of(engine)
        self._shared_lanes = self.dialect.writer_lanes(writers)
        lanes = self._shared_lanes if self.dialect.one_writer else self._shared_lanes + 1
        self._background_lane = lanes - 1
        self.bumps_ahead = not self.dialect.one_writer  # writes' ``bumps`` are used (``_bump_ahead``)
        self._lanes: list[list[_Job]] = [[] for _ in range(lanes)]
        self._writers: list[asyncio.Task[None] | None] = [None] * lanes
        self._committed: list[list[_Committed]] = [[] for _ in range(lanes)]
        self._announcers: list[asyncio.Task[None] | None] = [None] * lanes
        self._next_lane = 0
        self._reads: list[_Job] = []
        self._readers = 0

    async def write(
        self,
        fn: Callable[..., T],
        *args: Any,
        partition: str | None = None,
        bumps: str | None = None,
        background: bool = False,
        quick: bool = False,
        **kwargs: Any,
    ) -> T:
        """Run ``fn(tx, *args, **kwargs)`` in a transaction; publish its events once committed.

        ``partition`` (a conversation id, say) sends every write of that partition through
        the same writer lane, so two lanes never wait on each other's row locks for it.
        ``bumps``: the write's first step is ``sql.bump_conversation`` of this conversation (its
        partition), unless it fails before: a batch takes such bumps together (``_run_writes``).
        ``background``: the webhook dispatcher's bookkeeping, kept out of request batches.
        ``quick``: a short write of a request (a message, a receipt: a few rows, never a loop
        over many), which may run on the event loop (see the class).
        """
        if background:
            lane = self._background_lane
        elif partition is not None:
            lane = hash(partition) % self._shared_lanes
        else:
            lane = self._next_lane = (self._next_lane + 1) % self._shared_lanes
        future = asyncio.get_running_loop().create_future()
        job = _Job(fn, args, kwargs, future, lane, partition or "", bumps or "", quick=quick)
        self._enqueue(job)
        # Not shielded: a caller that goes away (a client hanging up) cancels only its wait;
        # the writer still commits the write and the announcer still publishes its events.
        return await job.future  # type: ignore[no-any-return]

    def _enqueue(self, job: _Job, *, first: bool = False) -> None:
        queued = self._lanes[job.lane]
        if first:
            queued.insert(0, job)
        else:
            queued.append(job)
        writer = self._writers[job.lane]
        if writer is None or writer.done():
            self._writers[job.lane] = asyncio.create_task(self._write_queued(job.lane), name=f"store-writer-{job.lane}")

    async def _write_queued(self, lane: int) -> None:
        """A lane's writer: commit what is queued, batch by batch, until nothing is."""
        queued = self._lanes[lane]
        while queued:
            batch = queued[: self.WRITE_BATCH]
            del queued[: self.WRITE_BATCH]
            outcomes = self._commit_inline(batch)
            inline = outcomes is not None
            if outcomes is None:
                outcomes = await self._run_batch(batch, self._commit_batch)
            committed = []
            for job, (ok, value) in zip(batch, outcomes, strict=True):
                if ok:
                    result, tx = value
                    if tx.outgoing or tx.webhooks_enqueued:
                        committed.append(_Committed(job, result, tx))
                    elif not job.future.done():  # nothing to announce: its caller need not wait
                        job.future.set_result(result)
                elif isinstance(value, _LostRace):
                    # This batch has committed (and let go of its locks): the next one runs it
                    # again, whether or not its caller still waits (as for any queued write).
                    job.lost_races += 1
                    self._enqueue(job, first=True)
                elif not job.future.done():
                    job.future.set_exception(value)
            if committed:
                self._committed[lane].extend(committed)
                announcer = self._announcers[lane]
                if announcer is None or announcer.done():
                    self._announcers[lane] = asyncio.create_task(self._announce(lane), name=f"store-announcer-{lane}")
            if inline and self._inline_writes * self._pages_per_write >= self.CHECKPOINT_PAGES:
                await self._checkpoint_wal()
            elif inline and queued:
                await asyncio.sleep(0)  # the loop's other work between two batches run on it

    async def _announce(self, lane: int) -> None:
        """A lane's announcer: publish the events of what the lane committed, in commit order,
        then resolve those writes' callers. It takes everything committed since its last
        round, so a slow broker costs one publish per round, not one per write."""
        committed = self._committed[lane]
        while committed:
            group = committed[:]
            del committed[:]
            events = [event for done in group for event in done.tx.outgoing]
            if events:
                try:
                    await self.broker.publish_many(events)
                except Exception:  # the writes are stored: subscribers catch up from the store
                    log.exception("publishing %d events after commit failed", len(events))
            if any(done.tx.webhooks_enqueued for done in group):
                self.on_webhooks_enqueued()
            for done in group:
                if not done.job.future.done():
                    done.job.future.set_result(done.result)

    async def _run_batch(
        self, batch: list[_Job], run: Callable[[list[_Job]], list[tuple[bool, Any]]]
    ) -> list[tuple[bool, Any]]:
        """Run a batch in a worker thread: each job's own outcome ``(ok, result or exception)``.
        If the batch itself failed (its transaction), every job in it failed with that."""
        try:
            return await self._in_thread(lambda: run(batch))
        except Exception as exc:
            return [(False, exc)] * len(batch)
        except BaseException:  # cancelled: the callers learn the store is unavailable
            for job in batch:
                if not job.future.done():
                    job.future.set_exception(errors.Unavailable())
            raise

    async def _settle(self, batch: list[_Job], run: Callable[[list[_Job]], list[tuple[bool, Any]]]) -> None:
        """Run a batch of reads in a worker thread and hand each job its own outcome."""
        for job, (ok, value) in zip(batch, await self._run_batch(batch, run), strict=True):
            if job.future.done():
                continue
            if ok:
                job.future.set_result(value)
            else:
                job.future.set_exception(value)

    def _commit_inline(self, batch: list[_Job]) -> list[tuple[bool, Any]] | None:
        """The batch's outcomes, committed on the event loop; None where it must go to a
        thread: not all quick, or the database was locked (nothing of it was kept)."""
        if self.inline_engine is None or not all(job.quick for job in batch):
            return None
        try:
            outcomes = self._commit_batch(batch, self.inline_engine)
        except OperationalError:  # locked (the BEGIN did not wait): a thread waits, not the loop
            return None
        except Exception as exc:  # the batch itself failed: every write in it, as in a thread
            return [(False, exc)] * len(batch)
        self._inline_writes += len(batch)
        return outcomes

    async def _checkpoint_wal(self) -> None:
        """The WAL copied into the database by a worker thread, while the lane waits (as it
        waited for SQLite's own checkpoint at a commit): with no commit beside it, it can copy
        every frame, and the next write then starts the WAL over instead of growing it."""
        writes, self._inline_writes = self._inline_writes, 0
        try:
            frames, _ = await self._in_thread(lambda: self.dialect.checkpoint(self.engine))
        except Exception as exc:  # the next one will; meanwhile the WAL grows
            log.warning("WAL checkpoint failed: %s", type(exc).__name__)
            return
        self._pages_per_write = max(1.0, frames / writes)

    def _commit_batch(self, batch: list[_Job], engine: Engine | None = None) -> list[tuple[bool, Any]]:
        """One transaction for the batch.

        First without savepoints, and on PostgreSQL with each write's inserts queued behind the
        next statement (``sql.Db.send``): a batch of writes that all succeed, the usual case,
        costs no savepoint and about one round trip per write. If any write fails, that run
        is rolled back whole and the batch runs again the careful way (``_run_writes`` with
        ``savepoints``): each write in its own savepoint, its queue sent before it counts as
        done, so a write that fails rolls back alone and raises to its own caller. (A batch of
        one needs no second run: its failure is its own.)

        Savepoints are plain SQL on the connection (SQLAlchemy's nested transactions cost more
        than the writes themselves). If a failed ORM flush has deactivated the session, the
        transaction cannot go on: it is rolled back and the batch starts again without that
        write. Re-running writes is safe: each run has a fresh ``Tx``, and nothing a run queued
        (events, ``after_commit``) happens unless its transaction commits.
        """
        outcomes: dict[int, tuple[bool, Any]] = {}
        # Run the writes in partition (conversation id) order, arrival order within one: each
        # holds its conversation's row lock until the batch commits, so batches of two
        # instances that took the same conversations in opposite orders would deadlock. One
        # order everywhere cannot cycle. (Writes to different conversations are independent,
        # and those to one keep their order, so the reordering changes no outcome.)
        pending = sorted(range(len(batch)), key=lambda i: batch[i].partition)
        savepoints = False
        while pending:
            done, broken = self._run_writes(batch, pending, savepoints=savepoints, engine=engine or self.engine)
            if broken is None:
                for ok, value in done.values():
                    if ok:
                        _run_after_commit(value[1])
                outcomes.update(done)
                break
            if not savepoints and (len(pending) > 1 or isinstance(done[broken][1], _Careful)):
                savepoints = True  # somebody failed: find out who, each write on its own
                continue
            outcomes[broken] = done[broken]
            pending = [i for i in pending if i != broken]
        return [outcomes[i] for i in range(len(batch))]

    def _run_writes(
        self, batch: list[_Job], pending: list[int], *, savepoints: bool, engine: Engine
    ) -> tuple[dict[int, tuple[bool, Any]], int | None]:
        """Run the pending writes in one transaction and commit it, unless one of them broke it:
        ``(outcomes, None)``, or ``(outcomes so far, the write that broke it)`` after a rollback.
        Without ``savepoints`` any failure breaks it."""
        broken: int | None = None
        done: dict[int, tuple[bool, Any]] = {}
        with session_scope(engine) as session:
            h = rows.db(session)
            h.writing = True
            if not savepoints:
                self._bump_ahead(h, batch, pending)
            for i in pending:
                job = batch[i]
                if savepoints:
                    h.savepoint()
                try:
                    tx = Tx(session, self.cache)
                    result = job.fn(tx, *job.args, **job.kwargs)
                    session.flush()
                    h.write_done()
                    if savepoints:
                        h.flush()  # its own errors are its own
                        h.release()
                    done[i] = (True, (result, tx))
                except Exception as exc:
                    done[i] = (False, self._failed(job, exc))
                    if not savepoints or not session.is_active:
                        broken = i
                        break
                    h.rollback_to_savepoint()
                finally:
                    # Each write sees the others' rows (one transaction) but not their objects:
                    # what a write returns is its own, detached, as with a session of its own.
                    # (A write on the hot paths' SQL alone has none: nothing to detach.)
                    if session.identity_map or session.new:
                        session.expunge_all()
            if broken is None and h.bumps_unused:
                # A bump taken ahead that its write did not use (it took another path): a seq
                # would be skipped. The careful way takes none ahead.
                broken = pending[-1]
                done[broken] = (False, _Careful())
            if broken is None:
                try:
                    h.flush_and_commit()
                except Exception as exc:
                    if savepoints:
                        raise  # the batch failed as a whole: every write in it fails with this
                    broken = pending[-1]  # somebody's queued statement failed: the careful way
                    done[broken] = (False, self._failed(batch[broken], exc))
            if broken is not None:
                h.discard()
                session.rollback()
        return done, broken

    def _bump_ahead(self, h: rows.Db, batch: list[_Job], pending: list[int]) -> None:
        """On PostgreSQL, the ``seq`` bumps that the batch's writes begin with, taken together in
        the batch's first round trip instead of one round trip each (``Db.ahead``).

        Only where nothing else in the batch could change those conversations first: every
        write has a partition (a write without one may touch any conversation), and a bump is
        taken only for the first write of its partition (a later one must see what the earlier
        ones changed). Each write then finds its row there (``Db.take_bumped``, in ``sql.bump_conversation``).
        A bump for another workspace's conversation fails its write as a missing one would, and
        one left unused sends the batch the careful way (``_commit_batch``): neither commits.
        """
        if not self.bumps_ahead or not any(batch[i].bumps for i in pending):
            return
        if not all(batch[i].partition for i in pending):
            return
        seen: set[str] = set()
        ahead = []
        for i in pending:
            job = batch[i]
            if job.partition not in seen and job.bumps == job.partition:
                ahead.append(job.bumps)
            seen.add(job.partition)
        if ahead:
            rows.bump_ahead(h, ahead, utcnow())

    def _failed(self, job: _Job, exc: Exception) -> Exception:
        """What a failed write's caller gets, or ``_LostRace`` to run it again."""
        if _lost_race(exc) and job.lost_races < self.LOST_RACE_RETRIES:
            log.info("write lost a lock race (%s); running it again", _sqlstate(exc))
            return _LostRace()
        return _unavailable(exc) if isinstance(exc, OperationalError) else exc

    async def read(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn(session, *args, **kwargs)`` on a session (and transaction) of its own.

        Reads queue up like writes: a reader takes every read queued (up to ``READ_BATCH``)
        into one worker-thread call, so a burst of reads costs one thread hand-off, not one
        each. ``READERS`` readers run side by side, so a slow read holds up only its batch.
        """
        job = _Job(fn, args, kwargs, asyncio.get_running_loop().create_future())
        self._reads.append(job)
        if self._readers < self.READERS:
            self._readers += 1
            asyncio.create_task(self._read_queued(), name="store-reader")
        return await job.future  # type: ignore[no-any-return]

    async def _read_queued(self) -> None:
        try:
            while self._reads:
                batch = self._reads[: self.READ_BATCH]
                del self._reads[: self.READ_BATCH]
                await self._settle(batch, self._read_batch)
        finally:
            self._readers -= 1

    def _read_batch(self, batch: list[_Job]) -> list[tuple[bool, Any]]:
        """Each read in a transaction (a snapshot) of its own, all on one pooled connection:
        one checkout (and, on PostgreSQL, one liveness ping) per batch, not per read."""
        outcomes: list[tuple[bool, Any]] = []
        with self.read_engine.connect() as conn:
            for job in batch:
                try:
                    with Session(bind=conn, expire_on_commit=False) as session:
                        outcomes.append((True, job.fn(session, *job.args, **job.kwargs)))
                except Exception as exc:
                    outcomes.append((False, _unavailable(exc) if isinstance(exc, OperationalError) else exc))
                finally:
                    with contextlib.suppress(Exception):
                        conn.rollback()
        return outcomes

    @staticmethod
    async def _in_thread(work: Callable[[], T]) -> T:
        try:
            return await run_in_thread(work)
        except OperationalError as exc:
            raise _unavailable(exc) from None


def _run_after_commit(tx: Tx) -> None:
    for fn in tx.committed:
        try:
            fn()
        except Exception:  # the write is committed: its caller still gets its answer
            log.exception("an after-commit step failed")


class _Careful(Exception):
    """The quick way could not commit a batch that did not fail: it runs again the careful way."""


class _LostRace(Exception):
    """A write that lost a deadlock or serialization failure: it is queued again, not failed."""


def _sqlstate(exc: BaseException) -> str | None:
    return getattr(getattr(exc, "orig", None), "sqlstate", None)


def _lost_race(exc: BaseException) -> bool:
    """PostgreSQL chose this write to break a deadlock (40P01) or a serialization conflict
    (40001): nothing is wrong with it, and it can run again once the other side committed."""
    return isinstance(exc, OperationalError) and _sqlstate(exc) in ("40P01", "40001")


def _unavailable(exc: OperationalError) -> errors.Unavailable:
    """A locked, restarting or unreachable database: 503 with Retry-After, logged once here."""
    log.warning("database unavailable: %s: %s", exc.orig.__class__.__name__, exc.orig)
    return errors.Unavailable(message="The database is busy or unavailable; retry soon.")

"""The write runner's group commit: writes queued together share one transaction, yet each
succeeds or fails alone, as if it had its own.

Three writes are queued in one go (so they land in one batch): the middle one fails, either
with a plain error after writing, or in an ORM flush (which deactivates the session and
forces the batch to start again without it). Either way the other two are stored exactly
once and the failed one leaves nothing behind. The runner publishes a write's events itself
once it has committed: exactly once however often the write ran, in commit order, and even
when the caller is gone.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.exc import IntegrityError

from app import errors
from app.ids import new_id, utcnow
from app.people import default_bot_id
from app.realtime.broker import MemoryBroker
from app.settings import Settings
from app.store import sql as sql_rows
from app.store.engine import make_engine, make_inline_engine
from app.store.runner import Runner, Tx
from app.store.tables import Agent, User, Workspace
from tests.conftest import migrated_sqlite


def recording_broker() -> tuple[MemoryBroker, list[dict[str, Any]]]:
    """A memory broker whose subscriber (the instance's listeners) records every event."""
    broker, published = MemoryBroker(), []

    async def subscriber(event: dict[str, Any]) -> None:
        published.append(event)

    asyncio.run(broker.start(subscriber))
    return broker, published


def make_runner(tmp_path: Path, broker: MemoryBroker | None = None, *, inline: bool = False) -> Runner:
    """A runner on a fresh SQLite file; ``inline``: with the engine that runs quick writes on the loop."""
    settings = Settings(env="test", database_url=migrated_sqlite(tmp_path))
    runner = Runner(make_engine(settings), make_engine(settings, for_writes=False), broker or MemoryBroker(),
                    inline_engine=make_inline_engine(settings) if inline else None)  # fmt: skip
    with runner.engine.begin() as c:
        c.execute(
            Workspace.metadata.tables["workspace"]
            .insert()
            .values(
                id="wsp_1", name="w", widget_key="wk_1", identity_secret="x", allowed_origins=[], created_at=utcnow()
            )
        )
    return runner


def add_user(tx: Tx, external_id: str) -> str:
    now = utcnow()
    user = User(id=new_id("usr"), workspace_id="wsp_1", external_id=external_id, properties={}, created_at=now,
                updated_at=now)  # fmt: skip
    tx.session.add(user)
    tx.session.flush()
    return user.id


def add_user_then_fail(tx: Tx, external_id: str) -> None:
    add_user(tx, external_id)
    raise ValueError("changed my mind")


def add_duplicate_id(tx: Tx, user_id: str) -> None:
    """An ORM flush that fails: the primary key is taken."""
    add_user(tx, "ok-but-lost")
    now = utcnow()
    tx.session.add(User(id=user_id, workspace_id="wsp_1", properties={}, created_at=now, updated_at=now))
    tx.session.flush()


def add_user_and_announce(tx: Tx, external_id: str, runs: list[str] | None = None) -> str:
    if runs is not None:
        runs.append(external_id)
    user_id = add_user(tx, external_id)
    tx.publish({"type": "test.user", "workspace_id": "wsp_1", "data": {"external_id": external_id}})
    tx.after_commit(lambda: committed.append(external_id))
    return user_id


committed: list[str] = []  # what ``after_commit`` saw, in order


def announced(published: list[dict[str, Any]]) -> list[str]:
    return [e["data"]["external_id"] for e in published if e["type"] == "test.user"]


def users(runner: Runner) -> list[str | None]:
    with runner.engine.connect() as c:
        return sorted(c.execute(select(User.__table__.c.external_id)).scalars())  # type: ignore[attr-defined]


async def in_one_batch(runner: Runner, *calls: tuple[Any, ...], quick: bool = False) -> list[Any]:
    return await asyncio.gather(
        *(runner.write(fn, *args, quick=quick) for fn, *args in calls), return_exceptions=True
    )


# The group commit's outcomes are the same whether the batch runs in a worker thread or, on
# SQLite, on the event loop (quick writes on the inline engine).
on_the_loop_or_not = pytest.mark.parametrize("inline", [False, True], ids=["in-a-thread", "on-the-loop"])


@on_the_loop_or_not
def test_a_failing_write_rolls_back_alone(tmp_path: Path, inline: bool) -> None:
    runner = make_runner(tmp_path, inline=inline)
    results = asyncio.run(
        in_one_batch(runner, (add_user, "first"), (add_user_then_fail, "failed"), (add_user, "third"), quick=inline)
    )
    assert isinstance(results[0], str) and isinstance(results[2], str)
    assert isinstance(results[1], ValueError)
    assert users(runner) == ["first", "third"]


@on_the_loop_or_not
def test_a_failed_flush_restarts_the_batch_without_it_and_stores_the_others_once(tmp_path: Path, inline: bool) -> None:
    runner = make_runner(tmp_path, inline=inline)
    taken = asyncio.run(runner.write(add_user, "owner"))
    calls = ((add_user, "first"), (add_duplicate_id, taken), (add_user, "third"))
    results = asyncio.run(in_one_batch(runner, *calls, quick=inline))
    assert isinstance(results[1], IntegrityError)
    assert isinstance(results[0], str) and isinstance(results[2], str)
    assert users(runner) == ["first", "owner", "third"]
    with runner.engine.connect() as c:
        assert c.execute(select(func.count()).select_from(User.__table__)).scalar() == 3  # type: ignore[arg-type]


@on_the_loop_or_not
@pytest.mark.parametrize("size", [1, 70])
def test_every_write_of_a_batch_commits_once(tmp_path: Path, size: int, inline: bool) -> None:
    """More writes than one batch holds are committed, each once, in order, and their events
    are published once each, in commit order."""
    broker, published = recording_broker()
    runner = make_runner(tmp_path, broker, inline=inline)
    calls = ((add_user_and_announce, f"u{i:03}") for i in range(size))
    results = asyncio.run(in_one_batch(runner, *calls, quick=inline))
    assert all(isinstance(r, str) for r in results)
    assert users(runner) == [f"u{i:03}" for i in range(size)]
    assert announced(published) == [f"u{i:03}" for i in range(size)]


def test_a_restarted_batch_announces_and_remembers_only_what_committed(tmp_path: Path) -> None:
    """A failed flush rolls the whole batch back and runs the others again: what their first
    run queued (events, ``after_commit``) is dropped with it, so each happens exactly once."""
    broker, published = recording_broker()
    runner = make_runner(tmp_path, broker)
    taken = asyncio.run(runner.write(add_user, "owner"))
    runs: list[str] = []
    committed.clear()
    results = asyncio.run(
        in_one_batch(
            runner,
            (add_user_and_announce, "first", runs),
            (add_duplicate_id, taken),
            (add_user_and_announce, "third", runs),
        )
    )
    assert isinstance(results[1], IntegrityError)
    # Run without savepoints first, then again the careful way (which stops at the failed
    # flush), then once more without the failed write.
    assert runs == ["first", "first", "first", "third"]
    assert announced(published) == ["first", "third"]
    assert committed == ["first", "third"]
    assert users(runner) == ["first", "owner", "third"]


def test_the_default_bot_is_remembered_only_once_its_creation_committed(tmp_path: Path) -> None:
    """One write creates the workspace's default bot, the next finds it in the same (not yet
    committed) transaction, and a third breaks the batch: the id the second saw was rolled
    back, so the process must not keep it, and the batch's second run creates the bot anew."""
    runner = make_runner(tmp_path)
    taken = asyncio.run(runner.write(add_user, "owner"))
    results = asyncio.run(
        in_one_batch(runner, (default_bot_id, "wsp_1"), (default_bot_id, "wsp_1"), (add_duplicate_id, taken))
    )
    assert isinstance(results[2], IntegrityError)
    with runner.engine.connect() as c:
        stored = c.execute(select(Agent.__table__.c.id).where(Agent.__table__.c.is_default_bot)).scalars().all()  # type: ignore[attr-defined]
    assert stored == [results[0]] == [results[1]]
    assert runner.cache.default_bots == {"wsp_1": stored[0]}


def test_a_caller_cancelled_after_the_commit_still_gets_its_events_published(tmp_path: Path) -> None:
    """The caller goes away (a client hanging up) right after its write committed and before
    anything was published: the write stays stored and its events still reach subscribers."""
    broker, published = recording_broker()
    runner = make_runner(tmp_path, broker)

    async def go() -> None:
        loop = asyncio.get_running_loop()

        def write_then_hang_up(tx: Tx) -> str:
            user_id = add_user_and_announce(tx, "gone")
            # Runs in the worker thread right after the commit: the caller is cancelled then.
            tx.after_commit(lambda: loop.call_soon_threadsafe(caller.cancel))
            return user_id

        caller = asyncio.create_task(runner.write(write_then_hang_up))
        with pytest.raises(asyncio.CancelledError):
            await caller
        for _ in range(100):
            if published:
                break
            await asyncio.sleep(0.01)

    asyncio.run(go())
    assert users(runner) == ["gone"]
    assert announced(published) == ["gone"]


def count_users(session: Any) -> int:
    return int(session.exec(select(func.count()).select_from(User.__table__)).one()[0])  # type: ignore[arg-type]


def failing_read(session: Any) -> int:
    raise LookupError("not here")


def test_reads_queued_together_each_get_their_own_answer(tmp_path: Path) -> None:
    """Reads are batched into one worker-thread call; a failing read fails alone."""
    runner = make_runner(tmp_path)
    asyncio.run(runner.write(add_user, "one"))

    async def burst() -> list[Any]:
        calls = [runner.read(failing_read if i % 10 == 3 else count_users) for i in range(100)]
        return await asyncio.gather(*calls, return_exceptions=True)

    results = asyncio.run(burst())
    assert [type(r) for r in results] == [LookupError if i % 10 == 3 else int for i in range(100)]
    assert all(r == 1 for r in results if isinstance(r, int))


@pytest.mark.postgres
def test_a_write_that_loses_a_deadlock_is_run_again_not_failed(postgres_database: str) -> None:
    """Two runners (two instances) lock two rows in opposite orders: PostgreSQL breaks the
    deadlock by failing one write (40P01), which its runner runs again once its batch has
    committed, so both callers succeed and both changes are stored once."""
    import threading

    from sqlalchemy import update

    from app.store.migrate import upgrade

    settings = Settings(env="test", database_url=postgres_database)
    upgrade(settings)
    broker, published = recording_broker()
    runners = [Runner(make_engine(settings), make_engine(settings, for_writes=False), broker) for _ in range(2)]
    now = utcnow()
    with runners[0].engine.begin() as c:
        c.execute(
            Workspace.metadata.tables["workspace"]
            .insert()
            .values(id="wsp_1", name="w", widget_key="wk_1", identity_secret="x", allowed_origins=[], created_at=now)
        )
        for name in ("x", "y"):
            c.execute(
                User.__table__.insert().values(  # type: ignore[attr-defined]
                    id=f"usr_{name}",
                    workspace_id="wsp_1",
                    external_id=name,
                    name="",
                    properties={},
                    created_at=now,
                    updated_at=now,
                )
            )
    both_hold_one = threading.Barrier(2, timeout=10)
    runs: list[str] = []

    def lock_then(tx: Tx, first: str, second: str, label: str) -> str:
        table = User.__table__  # type: ignore[attr-defined]
        runs.append(label)
        tx.session.execute(update(table).where(table.c.id == first).values(name=table.c.name + label))
        if runs.count(label) == 1:
            both_hold_one.wait()  # the first run: each holds its first row, then wants the other's
        tx.session.execute(update(table).where(table.c.id == second).values(name=table.c.name + label))
        tx.publish({"type": "test.user", "workspace_id": "wsp_1", "data": {"external_id": label}})
        return label

    async def race() -> list[Any]:
        return await asyncio.gather(
            runners[0].write(lock_then, "usr_x", "usr_y", "a"),
            runners[1].write(lock_then, "usr_y", "usr_x", "b"),
            return_exceptions=True,
        )

    try:
        assert asyncio.run(race()) == ["a", "b"]
        assert sorted(runs) in (["a", "a", "b"], ["a", "b", "b"])  # one of them ran twice
        assert sorted(announced(published)) == ["a", "b"]  # but its events went out once
        with runners[0].engine.connect() as c:
            names = dict(c.execute(select(User.__table__.c.id, User.__table__.c.name)).all())  # type: ignore[attr-defined]
        # each write's two changes stored once, in the order the two writes committed
        assert sorted(names.values()) in (["ab", "ab"], ["ba", "ba"]), names
    finally:
        for runner in runners:
            runner.engine.dispose()
            runner.read_engine.dispose()


# -- queued statements (``Db.send``): PostgreSQL sends them with the next one, in one round trip


def send_user(tx: Tx, external_id: str, user_id: str | None = None) -> str:
    """A write whose insert is queued (``Db.send``), not executed at once, on PostgreSQL."""
    now = tx.db.dialect.ts(utcnow())
    uid = user_id or new_id("usr")
    tx.db.send(
        'INSERT INTO "user" (id, workspace_id, external_id, properties, created_at, updated_at, sync_seq)'
        " VALUES (?, 'wsp_1', ?, ?j, ?, ?, 0)",
        (uid, external_id, "{}", now, now),
    )
    tx.publish({"type": "test.user", "workspace_id": "wsp_1", "data": {"external_id": external_id}})
    return uid


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def any_runner(request: pytest.FixtureRequest, tmp_path: Path) -> Runner:
    if request.param == "sqlite":
        return make_runner(tmp_path)
    from app.store.migrate import upgrade

    url = request.getfixturevalue("postgres_database")
    settings = Settings(env="test", database_url=url)
    upgrade(settings)
    runner = Runner(make_engine(settings), make_engine(settings), MemoryBroker())
    with runner.engine.begin() as c:
        c.execute(
            Workspace.metadata.tables["workspace"]
            .insert()
            .values(id="wsp_1", name="w", widget_key="wk_1", identity_secret="x", allowed_origins=[], created_at=utcnow())
        )
    return runner


def test_a_queued_statement_that_fails_fails_its_own_write_only(any_runner: Runner) -> None:
    """The failing insert is still queued when its write returns (on PostgreSQL): the batch
    finds out whose it was, and the writes around it are stored once each."""
    runner = any_runner
    broker, published = recording_broker()
    runner.broker = broker
    taken = asyncio.run(runner.write(send_user, "owner"))
    published.clear()
    results = asyncio.run(
        in_one_batch(runner, (send_user, "first"), (send_user, "again", taken), (send_user, "third"))
    )
    assert isinstance(results[1], IntegrityError), results
    assert isinstance(results[0], str) and isinstance(results[2], str)
    assert users(runner) == ["first", "owner", "third"]
    assert announced(published) == ["first", "third"]
    # Then an ORM read in a write sees what an earlier write of its batch queued.
    seen = asyncio.run(in_one_batch(runner, (send_user, "fourth"), (users_seen_in_a_write,)))
    assert seen[1] == 4
    assert announced(published) == ["first", "third", "fourth"]


def users_seen_in_a_write(tx: Tx) -> int:
    return int(tx.session.execute(select(func.count()).select_from(User.__table__)).scalar_one())  # type: ignore[arg-type]


# -- rows sent late (``Db.late``): on SQLite a batch's rows go in last, in one statement

_LATE_USER = (
    'INSERT INTO "user" (id, workspace_id, external_id, properties, created_at, updated_at, sync_seq)'
    " VALUES (?, 'wsp_1', ?, '{}', ?, ?, 0)"
)


def late_user(tx: Tx, external_id: str, user_id: str | None = None, fail: bool = False) -> str:
    now = tx.db.dialect.ts(utcnow())
    uid = user_id or new_id("usr")
    tx.db.late(_LATE_USER, (uid, external_id, now, now))
    if fail:
        raise ValueError("changed my mind")
    return uid


def users_counted_by_sql(tx: Tx) -> int:
    return int(tx.db.run('SELECT count(*) FROM "user"')[0][0])


def test_rows_sent_late_are_stored_once_each_and_only_for_writes_that_committed(any_runner: Runner) -> None:
    runner = any_runner
    inserts: list[str] = []
    if runner.dialect.sqlite:

        @event.listens_for(runner.engine, "checkout")
        def trace(dbapi_connection: Any, *_: Any) -> None:
            dbapi_connection.set_trace_callback(
                lambda statement: inserts.append(statement) if statement.startswith('INSERT INTO "user"') else None
            )

        runner.engine.dispose()  # connections made from here on are traced
    taken = asyncio.run(runner.write(late_user, "owner"))
    inserts.clear()
    # A write that fails after sending its row late, and one whose late row fails (the id is
    # taken): each fails alone; the others' rows are stored once.
    results = asyncio.run(
        in_one_batch(
            runner,
            (late_user, "first"),
            (late_user, "dropped", None, True),
            (late_user, "second"),
            (late_user, "again", taken),
            (late_user, "third"),
        )
    )
    assert isinstance(results[1], ValueError) and isinstance(results[3], IntegrityError), results
    assert users(runner) == ["first", "owner", "second", "third"]
    # A statement that names the table sees what earlier writes of the batch sent late.
    seen = asyncio.run(in_one_batch(runner, (late_user, "fourth"), (late_user, "fifth"), (users_counted_by_sql,)))
    assert seen[2] == 6
    if runner.dialect.sqlite:
        # The two of the last batch went in together, before the count.
        assert inserts[-1].count("), (") == 1
        inserts.clear()
        asyncio.run(in_one_batch(runner, *((late_user, f"u{i}") for i in range(3))))
        assert len(inserts) == 1 and inserts[0].count("), (") == 2  # one statement, three rows


def test_rows_sent_late_go_in_before_a_commit_and_not_after_a_rollback(any_runner: Runner) -> None:
    from app.store import sql
    from app.store.engine import session_scope

    engine = any_runner.engine
    with session_scope(engine) as session:
        late_user(Tx(session), "kept")  # committed with nothing run after it
    with pytest.raises(ValueError), session_scope(engine) as session:
        late_user(Tx(session), "rolled back", fail=True)
    with session_scope(engine) as session:
        h = sql.db(session)
        late_user(Tx(session), "discarded")
        h.discard()
    assert users(any_runner) == ["kept"]


# -- seq bumps taken ahead (PostgreSQL): a batch's writes that begin with a bump share a round trip


def _pg_runner_with_conversations(postgres_database: str, conversations: dict[str, str]) -> Runner:
    """A runner on a migrated PostgreSQL database holding ``{conversation id: workspace id}``."""
    from app.store.migrate import upgrade
    from app.store.tables import Conversation

    settings = Settings(env="test", database_url=postgres_database)
    upgrade(settings)
    runner = Runner(make_engine(settings), make_engine(settings, for_writes=False), MemoryBroker())
    now = utcnow()
    with runner.engine.begin() as c:
        for ws in sorted(set(conversations.values())):
            c.execute(
                Workspace.metadata.tables["workspace"]
                .insert()
                .values(id=ws, name=ws, widget_key=f"wk_{ws}", identity_secret="x", allowed_origins=[], created_at=now)
            )
            c.execute(
                User.__table__.insert().values(  # type: ignore[attr-defined]
                    id=f"usr_{ws}", workspace_id=ws, external_id=ws, properties={}, created_at=now, updated_at=now
                )
            )
            c.execute(
                Agent.__table__.insert().values(  # type: ignore[attr-defined]
                    id=f"agt_{ws}", workspace_id=ws, name="Bot", kind="bot", is_default_bot=True, created_at=now
                )
            )
        for conv, ws in conversations.items():
            c.execute(
                Conversation.__table__.insert().values(  # type: ignore[attr-defined]
                    id=conv, workspace_id=ws, user_id=f"usr_{ws}", status="open", tags=[], properties={},
                    created_at=now, updated_at=now,
                )  # fmt: skip
            )
    return runner


def post(tx: Tx, workspace_id: str, conversation_id: str, text: str) -> tuple[int, str, int]:
    """A bot's message: ``(seq, handled_by as the write saw it, the row's seq after it)``."""
    from app.api.schemas import MessageIn
    from app.conversations import post_message

    body = MessageIn.model_validate({"message_parts": [{"text": {"content": text}}]})
    message, _ = post_message(tx, workspace_id, conversation_id, body)
    conv = sql_rows.get_conversation(tx.db, workspace_id, conversation_id)
    return message.seq, conv.handled_by, conv.last_message_seq


def post_only(tx: Tx, workspace_id: str, conversation_id: str, text: str) -> int:
    from app.api.schemas import MessageIn
    from app.conversations import post_message

    body = MessageIn.model_validate({"message_parts": [{"text": {"content": text}}]})
    return post_message(tx, workspace_id, conversation_id, body)[0].seq


def take_over(tx: Tx, workspace_id: str, conversation_id: str) -> str:
    """A human takes control: a bot's message after it in the same conversation is refused."""
    sql_rows.bump_conversation(tx.db, workspace_id, conversation_id, utcnow())
    sql_rows.update_conversation(tx.db, conversation_id, {"handled_by": "human"})
    return "taken"


def touch_user(tx: Tx, workspace_id: str, conversation_id: str) -> str:
    """Says it bumps the conversation, but takes another path: writes a user instead."""
    send_user(tx, f"by-{conversation_id}-{new_id('x')}")
    return "touched"


def seqs(runner: Runner) -> dict[str, int]:
    from app.store.tables import Conversation

    table = Conversation.__table__  # type: ignore[attr-defined]
    with runner.engine.connect() as c:
        return dict(c.execute(select(table.c.id, table.c.last_message_seq)).all())  # type: ignore[arg-type]


def round_trips(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts what the writer sends PostgreSQL and waits for: each pipeline, each plain statement."""
    trips: list[int] = []
    pipeline, execute = sql_rows.Db._pipeline, sql_rows.Db._execute

    def counted_pipeline(self: sql_rows.Db, queued: list[Any], wanted: int) -> Any:
        trips.append(len(self._ahead) + len(queued))  # statements in the round trip
        return pipeline(self, queued, wanted)

    def counted_execute(self: sql_rows.Db, q: str, p: Any) -> Any:
        if not (self._ahead or self._raw.pgconn.transaction_status == sql_rows._PG_IDLE):
            trips.append(1)  # (otherwise it goes as a pipeline, counted there)
        return execute(self, q, p)

    monkeypatch.setattr(sql_rows.Db, "_pipeline", counted_pipeline)
    monkeypatch.setattr(sql_rows.Db, "_execute", counted_execute)
    return trips


@pytest.mark.postgres
def test_a_batchs_seq_bumps_go_together_and_each_write_still_sees_the_ones_before_it(
    postgres_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Eight messages to six conversations in one batch: the bumps of each conversation's first
    write go in the batch's first round trip, so the batch costs three (bumps, the endpoints
    read with the inserts queued so far, the rest with the commit) instead of one more per
    message. A conversation's later write bumps it itself, after the earlier one's changes:
    a bot's message after a human took over is refused, and its batch commits the rest."""
    convs = {f"cnv_{n}": "wsp_1" for n in range(6)}
    runner = _pg_runner_with_conversations(postgres_database, convs)
    trips = round_trips(monkeypatch)

    async def batch() -> list[Any]:
        calls = [(post, "cnv_0", "a"), (post, "cnv_0", "b"), *((post, f"cnv_{n}", "c") for n in range(1, 6)),
                 (take_over, "cnv_5", ""), (post, "cnv_5", "refused")]  # fmt: skip
        return await asyncio.gather(
            *(runner.write(fn, "wsp_1", conv, *([text] if text else []), partition=conv, bumps=conv)
              for fn, conv, text in calls),
            return_exceptions=True,
        )  # fmt: skip

    try:
        results = asyncio.run(batch())
        assert results[:2] == [(1, "bot", 1), (2, "bot", 2)]
        assert results[2:7] == [(1, "bot", 1)] * 5 and results[7] == "taken"
        assert isinstance(results[8], errors.Conflict)  # it saw the takeover before it
        assert seqs(runner) == {"cnv_0": 2, "cnv_1": 1, "cnv_2": 1, "cnv_3": 1, "cnv_4": 1, "cnv_5": 2}
        # the careful rerun found the refused write; the batch's first run took its bumps together
        assert trips[0] == 6, trips
    finally:
        runner.engine.dispose()
        runner.read_engine.dispose()


@pytest.mark.postgres
def test_a_batch_of_bumping_writes_costs_a_few_round_trips_not_one_per_write(
    postgres_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    convs = {f"cnv_{n}": "wsp_1" for n in range(8)}
    runner = _pg_runner_with_conversations(postgres_database, convs)

    async def batch() -> list[Any]:
        return await asyncio.gather(*(runner.write(post_only, "wsp_1", c, "hi", partition=c, bumps=c) for c in convs))

    try:
        assert asyncio.run(batch()) == [1] * 8  # (the default bot is known from here on)
        trips = round_trips(monkeypatch)
        assert asyncio.run(batch()) == [2] * 8
        assert len(trips) == 3, trips  # bumps (and BEGIN); endpoints; inserts and COMMIT
        assert seqs(runner) == dict.fromkeys(convs, 2)
    finally:
        runner.engine.dispose()
        runner.read_engine.dispose()


@pytest.mark.postgres
def test_a_bump_taken_ahead_that_is_not_used_or_not_ours_commits_nothing(postgres_database: str) -> None:
    """A bump taken ahead for another workspace's conversation fails its write as a missing
    conversation (404) and leaves that conversation as it was; one that its write did not use
    sends the batch the careful way, where no seq is skipped. The others commit, once."""
    convs = {"cnv_a": "wsp_1", "cnv_b": "wsp_1", "cnv_theirs": "wsp_2"}
    runner = _pg_runner_with_conversations(postgres_database, convs)

    async def batch(*calls: tuple[Any, str]) -> list[Any]:
        return await asyncio.gather(
            *(runner.write(fn, "wsp_1", conv, *(["x"] if fn is post else []), partition=conv, bumps=conv)
              for fn, conv in calls),
            return_exceptions=True,
        )  # fmt: skip

    try:
        results = asyncio.run(batch((post, "cnv_a"), (post, "cnv_theirs"), (touch_user, "cnv_b")))
        assert results[0] == (1, "bot", 1) and results[2] == "touched"
        assert isinstance(results[1], errors.NotFound)
        assert seqs(runner) == {"cnv_a": 1, "cnv_b": 0, "cnv_theirs": 0}
        # alone in its batch, too
        assert asyncio.run(batch((touch_user, "cnv_b"))) == ["touched"]
        assert isinstance(asyncio.run(batch((post, "cnv_theirs")))[0], errors.NotFound)
        assert seqs(runner) == {"cnv_a": 1, "cnv_b": 0, "cnv_theirs": 0}
        assert len([u for u in users(runner) if u and u.startswith("by-cnv_b-")]) == 2
    finally:
        runner.engine.dispose()
        runner.read_engine.dispose()


# -- a batch's messages, events and deliveries held back (SQLite: ``Db.late``) --------------


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def runner_with_endpoint(request: pytest.FixtureRequest, tmp_path: Path) -> Runner:
    """A runner whose workspace ``wsp_1`` has conversations ``cnv_0``/``cnv_1`` and an enabled
    webhook endpoint that takes ``message.created``."""
    from app.store.tables import Conversation, WebhookEndpoint

    if request.param == "sqlite":
        runner = make_runner(tmp_path)
    else:
        runner = _pg_runner_with_conversations(request.getfixturevalue("postgres_database"), {})
        with runner.engine.begin() as c:
            c.execute(
                Workspace.metadata.tables["workspace"].insert().values(
                    id="wsp_1", name="w", widget_key="wk_1", identity_secret="x", allowed_origins=[], created_at=utcnow()
                )
            )
    now = utcnow()
    with runner.engine.begin() as c:
        c.execute(User.__table__.insert().values(  # type: ignore[attr-defined]
            id="usr_1", workspace_id="wsp_1", external_id="u", properties={}, created_at=now, updated_at=now))
        c.execute(Agent.__table__.insert().values(  # type: ignore[attr-defined]
            id="agt_1", workspace_id="wsp_1", name="Bot", kind="bot", is_default_bot=True, created_at=now))
        for conv in ("cnv_0", "cnv_1"):
            c.execute(Conversation.__table__.insert().values(  # type: ignore[attr-defined]
                id=conv, workspace_id="wsp_1", user_id="usr_1", status="open", tags=[], properties={},
                created_at=now, updated_at=now))
        c.execute(WebhookEndpoint.__table__.insert().values(  # type: ignore[attr-defined]
            id="whe_1", workspace_id="wsp_1", url="https://example.com/hook", description="", events=["message.created"],
            enabled=True, secret="whsec_x", created_at=now, updated_at=now))  # fmt: skip
    return runner


def post_with(tx: Tx, conversation_id: str, text: str, client_id: str | None = None,
              reply_to_client_id: str | None = None) -> tuple[int, bool, str | None]:  # fmt: skip
    """A bot's message, maybe replying to the one sent with ``reply_to_client_id`` (read in this
    transaction): ``(seq, created, the id it replies to)``."""
    from app.api.schemas import MessageIn
    from app.conversations import post_message

    reply_to = None
    if reply_to_client_id is not None:
        earlier = sql_rows.message_by_client_id(tx.db, conversation_id, reply_to_client_id)
        assert earlier is not None, "a later write of the batch must see the earlier one's message"
        reply_to = {"message_id": earlier.id, "payload": "yes"}
    body = MessageIn.model_validate(
        {"message_parts": [{"text": {"content": text}}], "client_message_id": client_id, "reply_to": reply_to}
    )
    message, created = post_message(tx, "wsp_1", conversation_id, body)
    return message.seq, created, (message.reply_to or {}).get("message_id")


def test_a_batchs_messages_held_back_are_seen_by_its_later_writes_and_stored_once(
    runner_with_endpoint: Runner,
) -> None:
    """One batch: a message, a reply to it, the first one sent again with its client id, and a
    message to another conversation. The later writes find the earlier message (held back
    until the batch's last statement on SQLite, or sent just before a read that names its
    table); every message has its event and its webhook delivery (which names the event);
    the repeated one adds nothing."""
    from app.store.tables import Event, Message, WebhookDelivery

    runner = runner_with_endpoint

    async def batch() -> list[Any]:
        calls = [("cnv_0", "first", "c-1", None), ("cnv_0", "reply", None, "c-1"), ("cnv_0", "again", "c-1", None),
                 ("cnv_1", "other", None, None)]  # fmt: skip
        return await asyncio.gather(*(runner.write(post_with, *call, partition=call[0]) for call in calls))

    try:
        first, reply, again, other = asyncio.run(batch())
        assert first[:2] == (1, True) and reply[:2] == (2, True) and again == (1, False, None) and other[:2] == (1, True)
        with runner.engine.connect() as c:
            messages = c.execute(select(Message.id, Message.conversation_id, Message.seq)).all()  # type: ignore[call-overload]
            assert sorted((conv, seq) for _, conv, seq in messages) == [("cnv_0", 1), ("cnv_0", 2), ("cnv_1", 1)]
            first_id = next(mid for mid, conv, seq in messages if (conv, seq) == ("cnv_0", 1))
            assert reply[2] == first_id
            assert c.execute(select(func.count()).select_from(Event)).scalar_one() == 3
            deliveries = c.execute(select(WebhookDelivery.event_id)).scalars().all()  # type: ignore[call-overload]
            events = set(c.execute(select(Event.id)).scalars().all())  # type: ignore[call-overload]
            assert len(deliveries) == 3 and set(deliveries) == events
    finally:
        runner.engine.dispose()
        runner.read_engine.dispose()


# --- quick writes on the event loop (SQLite) ---------------------------------------------------


def add_user_here(tx: Tx, external_id: str, threads: list[int]) -> str:
    threads.append(threading.get_ident())
    return add_user(tx, external_id)


def test_quick_writes_run_on_the_loop_and_the_others_in_a_worker_thread(tmp_path: Path) -> None:
    runner = make_runner(tmp_path, inline=True)
    quick: list[int] = []
    slow: list[int] = []

    async def both() -> None:
        await asyncio.gather(*(runner.write(add_user_here, f"q{i}", quick, quick=True) for i in range(3)))
        await runner.write(add_user_here, "slow", slow)
        # A batch mixing the two goes to a thread whole.
        await asyncio.gather(runner.write(add_user_here, "mixed-q", slow, quick=True),
                             runner.write(add_user_here, "mixed", slow))  # fmt: skip

    asyncio.run(both())
    loop_thread = threading.get_ident()  # asyncio.run runs the loop in this thread
    assert quick == [loop_thread] * 3
    assert len(slow) == 3 and loop_thread not in slow
    assert users(runner) == ["mixed", "mixed-q", "q0", "q1", "q2", "slow"]


def test_a_quick_write_finding_the_database_locked_waits_in_a_thread_and_the_loop_goes_on(tmp_path: Path) -> None:
    """Another connection (another process, say) holds the write lock: the quick write's
    ``BEGIN`` does not wait on the loop; the batch waits for the lock in a worker thread
    (busy timeout) while the loop serves everything else, then commits once."""
    runner = make_runner(tmp_path, inline=True)
    holder = sqlite3.connect(str(runner.engine.url.database), isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    threads: list[int] = []
    ticks = 0

    async def scenario() -> str:
        nonlocal ticks
        write = asyncio.create_task(runner.write(add_user_here, "waited", threads, quick=True))
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline:  # the loop is free while the write waits
            await asyncio.sleep(0.01)
            ticks += 1
        assert not write.done()
        holder.execute("COMMIT")
        return await write

    try:
        user_id = asyncio.run(scenario())
    finally:
        holder.close()
    assert user_id.startswith("usr_")
    assert ticks >= 20
    assert len(threads) == 1 and threads[0] != threading.get_ident()  # it ran once, in a thread
    assert users(runner) == ["waited"]


def test_quick_writes_checkpoint_the_wal_in_a_thread_so_it_does_not_grow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The inline engine never checkpoints at a commit (that would copy and fsync on the loop):
    the runner does, in a worker thread, every ``CHECKPOINT_PAGES`` or so. Without it the WAL
    would hold every page every write wrote; with it, it starts over."""
    monkeypatch.setattr(Runner, "CHECKPOINT_PAGES", 40)
    runner = make_runner(tmp_path, inline=True)
    wal = Path(f"{runner.engine.url.database}-wal")

    async def many() -> None:
        for round_ in range(60):
            await asyncio.gather(*(runner.write(add_user, f"u{round_}-{i}", quick=True) for i in range(4)))

    asyncio.run(many())
    assert len(users(runner)) == 240
    with runner.inline_engine.connect() as conn:  # type: ignore[union-attr]
        raw: Any = conn.connection.dbapi_connection
        assert raw.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
    # 60 commits of four users each wrote several hundred WAL pages in all; a checkpoint
    # every ~40 lets it start over, so it stays at a fraction of that.
    assert wal.stat().st_size < 150 * 4096 + 32, wal.stat().st_size

"""Attempts are written in batches: a batch with one bad outcome loses none of the others, and
a process that sent deliveries but never wrote their outcomes (``kill -9`` between the send
and the write) leaves them leased, so another dispatcher sends them again with the same id."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select

from app.ids import new_id, utcnow
from app.realtime.broker import MemoryBroker
from app.settings import Settings
from app.store.engine import make_engine
from app.store.runner import Runner
from app.store.tables import Workspace
from app.webhooks.deliveries import A_TABLE, D_TABLE, E_TABLE, EV_TABLE, Job, Outcome, claim_due, record_attempts
from app.webhooks.dispatcher import Dispatcher, Recorder
from app.webhooks.sender import Reply
from app.webhooks.signing import new_secret
from tests.conftest import migrated_sqlite
from tests.webhooks.test_netguard import run


class MemorySender:
    """A receiver in memory: answers 200 and keeps what it got."""

    def __init__(self) -> None:
        self.got: list[tuple[str, str]] = []  # (url, webhook-id)

    async def post(self, url: str, headers: dict[str, str], body: bytes) -> Reply:
        self.got.append((url, headers["webhook-id"]))
        return Reply(200, {}, b"ok")

    async def aclose(self) -> None:
        pass


def setup(tmp_path: Path, events: int, **settings: Any) -> tuple[Settings, Runner, list[str]]:
    """A workspace with one endpoint and ``events`` due deliveries; returns their event ids."""
    s = Settings(env="test", database_url=migrated_sqlite(tmp_path), webhook_allow_private_networks=True, **settings)
    engine = make_engine(s)
    runner = Runner(engine, make_engine(s, for_writes=False), MemoryBroker())
    now = utcnow()
    event_ids = [new_id("msg") for _ in range(events)]
    with engine.begin() as c:
        c.execute(insert(Workspace.metadata.tables["workspace"]).values(
            id="wsp_1", name="w", widget_key="wk_1", identity_secret="x", allowed_origins=[], created_at=now))
        c.execute(insert(E_TABLE).values(
            id="whe_1", workspace_id="wsp_1", url="http://receiver.test/hook", description="", events=["*"],
            enabled=True, secret=new_secret(), created_at=now, updated_at=now))
        for i, event_id in enumerate(event_ids):
            at = now + timedelta(microseconds=i)  # event order: ids made in one millisecond need not sort
            c.execute(insert(EV_TABLE).values(
                id=event_id, workspace_id="wsp_1", type="user.created", payload={"type": "user.created"}, created_at=at))
            c.execute(insert(D_TABLE).values(
                id=new_id("dlv"), workspace_id="wsp_1", endpoint_id="whe_1", event_id=event_id,
                event_type="user.created", status="pending", attempts=0, schedule_step=0,
                next_attempt_at=now, created_at=at, updated_at=now))
    return s, runner, event_ids


def rows(runner: Runner) -> dict[str, Any]:
    with runner.engine.connect() as c:
        return {r.event_id: r for r in c.execute(select(D_TABLE))}


def attempts(runner: Runner) -> list[Any]:
    with runner.engine.connect() as c:
        return list(c.execute(select(A_TABLE)))


def test_a_batch_with_one_bad_outcome_still_records_the_others(tmp_path: Path) -> None:
    settings, runner, event_ids = setup(tmp_path, 5)

    async def go() -> list[bool]:
        (claim,) = await runner.write(claim_due, "dsp_a", set(), 10, 60)
        assert [j.event_id for j in claim.jobs] == event_ids
        recorder = Recorder(runner, settings, "dsp_a")
        futures = []
        for i, job in enumerate(claim.jobs):
            # The third outcome cannot be stored (no start time: NOT NULL), failing its batch.
            started = None if i == 2 else utcnow()
            futures.append(recorder.submit(job, Outcome(started_at=started, duration_ms=3, status_code=200)))  # type: ignore[arg-type]
        await recorder.flush()
        return [f.result() for f in futures]

    stops = run(go())
    assert stops == [False, False, True, False, False]  # the bad one ends its endpoint's batch
    by_event = rows(runner)
    assert [by_event[e].status for e in event_ids] == ["succeeded", "succeeded", "delivering", "succeeded", "succeeded"]
    bad = by_event[event_ids[2]]
    assert bad.lease_owner == "dsp_a" and bad.lease_until is not None  # resent when the lease runs out
    assert len(attempts(runner)) == 4


def test_outcomes_for_several_endpoints_and_failures_in_one_batch(tmp_path: Path) -> None:
    settings, runner, event_ids = setup(tmp_path, 3, webhook_retry_schedule=[60])

    async def go() -> set[str]:
        (claim,) = await runner.write(claim_due, "dsp_a", set(), 10, 60)
        gone = Job("dlv_deleted", "msg_x", b"{}", "whe_gone")  # its endpoint was deleted meanwhile
        results = [
            (claim.jobs[0], Outcome(utcnow(), 1, status_code=200)),
            (claim.jobs[1], Outcome(utcnow(), 1, status_code=500, error="HTTP 500")),
            (gone, Outcome(utcnow(), 1, status_code=200)),
            (claim.jobs[2], Outcome(utcnow(), 1, error="ConnectError: refused")),
        ]
        return await runner.write(record_attempts, results, "dsp_a", settings)

    assert run(go()) == {"whe_gone"}
    by_event = rows(runner)
    ok, failed, down = (by_event[e] for e in event_ids)
    assert ok.status == "succeeded" and ok.attempts == 1 and ok.lease_owner is None
    for row in (failed, down):
        assert row.status == "pending" and row.attempts == 1 and row.schedule_step == 1 and row.lease_owner is None
        assert row.next_attempt_at > utcnow()
    assert down.last_error == "ConnectError: refused" and failed.last_status_code == 500
    with runner.engine.connect() as c:
        assert c.execute(select(E_TABLE.c.failing_since)).scalar() is not None
    assert len(attempts(runner)) == 3


class CrashesBeforeRecording(Runner):
    """A process that sends, then dies before any outcome (or the hand-back of its leases) is written."""

    async def write(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        if fn is claim_due:
            return await super().write(fn, *args, **kwargs)
        raise RuntimeError("killed")


def test_deliveries_sent_but_never_recorded_are_sent_again_after_the_lease(tmp_path: Path) -> None:
    settings, runner, event_ids = setup(
        tmp_path, 12, webhook_lease_seconds=1.0, webhook_timeout_seconds=0.5, webhook_poll_seconds=0.1
    )
    dead = CrashesBeforeRecording(runner.engine, runner.read_engine, MemoryBroker())
    first, second = MemorySender(), MemorySender()

    async def go() -> None:
        a = Dispatcher(dead, settings, first, owner="dsp_dead")
        task = asyncio.create_task(a.run())
        for _ in range(100):
            if len(first.got) >= 12:
                break
            await asyncio.sleep(0.05)
        a.stop()
        await task
        assert {r.status for r in rows(runner).values()} == {"delivering"}  # nothing was written
        b = Dispatcher(runner, settings, second, owner="dsp_new")
        task = asyncio.create_task(b.run())
        for _ in range(200):
            if {r.status for r in rows(runner).values()} == {"succeeded"}:
                break
            await asyncio.sleep(0.05)
        b.stop()
        await task

    run(go())
    assert [wid for _, wid in first.got] == event_ids
    assert sorted(wid for _, wid in second.got) == sorted(event_ids)  # each again, same webhook-id
    assert {r.status for r in rows(runner).values()} == {"succeeded"}
    assert {r.attempts for r in rows(runner).values()} == {1}

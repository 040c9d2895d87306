"""The store's worker threads (``app.store.threads``): a call's result or exception comes back
to its caller; calls that wait on each other each get a thread; threads are reused; and a
caller cancelled mid-call is cancelled only once its call has finished, as with anyio's
``run_sync`` before."""

from __future__ import annotations

import asyncio
import threading

import pytest

from app.store import threads
from app.store.threads import run_in_thread


def workers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "store-worker"]


async def test_a_call_returns_its_result_from_another_thread() -> None:
    here = threading.get_ident()
    result = await run_in_thread(lambda: ("done", threading.get_ident()))
    assert result[0] == "done"
    assert result[1] != here


async def test_a_calls_exception_is_raised_to_its_caller() -> None:
    def fails() -> None:
        raise KeyError("boom")

    with pytest.raises(KeyError, match="boom"):
        await run_in_thread(fails)
    assert await run_in_thread(lambda: 7) == 7  # the thread is still serving


async def test_calls_that_wait_on_each_other_each_get_a_thread() -> None:
    barrier = threading.Barrier(5, timeout=10)
    results = await asyncio.wait_for(asyncio.gather(*(run_in_thread(barrier.wait) for _ in range(5))), 15)
    assert sorted(results) == [0, 1, 2, 3, 4]


async def test_threads_are_reused_not_started_per_call() -> None:
    await run_in_thread(lambda: None)
    before = len(workers())
    for _ in range(200):
        await run_in_thread(lambda: None)
    assert len(workers()) <= before + 1


async def test_a_cancelled_caller_waits_for_its_call_to_finish() -> None:
    started, release, finished = threading.Event(), threading.Event(), threading.Event()

    def work() -> str:
        started.set()
        release.wait(10)
        finished.set()
        return "committed"

    task = asyncio.create_task(run_in_thread(work))
    while not started.is_set():
        await asyncio.sleep(0.001)
    task.cancel()
    await asyncio.sleep(0.05)
    task.cancel()  # a second cancel changes nothing either
    await asyncio.sleep(0.05)
    assert not task.done()  # the transaction still runs: its caller has not gone yet
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert finished.is_set()


async def test_an_idle_thread_ends(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(threads, "IDLE_SECONDS", 0.05)
    pool = threads._Threads()
    done = threading.Event()
    loop = asyncio.get_running_loop()
    call = threads._Call(done.set, loop)
    pool.submit(call)
    await call.waiter
    assert done.is_set()
    for _ in range(200):
        await asyncio.sleep(0.01)
        if pool._idle == 0:
            break
    assert pool._idle == 0  # it ended: the next call starts a thread of its own
    again = threads._Call(lambda: 5, loop)
    pool.submit(again)
    await again.waiter
    assert again.result == 5

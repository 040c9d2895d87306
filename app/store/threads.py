"""The store's worker threads: where the runner's batches (a transaction of writes, a batch of
reads) run, off the event loop.

A call is handed to an idle thread with one put on a C queue and handed back with one
``call_soon_threadsafe``. ``anyio.to_thread.run_sync``, used before, took a capacity limiter,
a cancel scope and a Python-level queue (a lock and a condition) for every call: 4–5 % of the
server's Python time end to end on SQLite, once per batch (docs/performance.md, section 15).

As with ``run_sync``, a caller cancelled while its call runs is cancelled only once the call
has finished: a transaction is never left running behind a caller that has gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")

IDLE_SECONDS = 10.0  # a thread with nothing to do for this long ends (tests start many runners)


class _Call(Generic[T]):
    __slots__ = ("work", "loop", "waiter", "finished", "result", "error")

    def __init__(self, work: Callable[[], T], loop: asyncio.AbstractEventLoop) -> None:
        self.work = work
        self.loop = loop
        self.waiter: asyncio.Future[None] = loop.create_future()
        self.finished = False
        self.result: Any = None
        self.error: BaseException | None = None

    def wake(self) -> None:  # on the loop
        if not self.waiter.done():
            self.waiter.set_result(None)


class _Threads:
    def __init__(self) -> None:
        self._calls: queue.SimpleQueue[_Call[Any]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0  # threads waiting for a call that no submitted call has claimed yet

    def submit(self, call: _Call[Any]) -> None:
        with self._lock:
            claimed = self._idle > 0
            if claimed:
                self._idle -= 1
        self._calls.put(call)
        if not claimed:
            threading.Thread(target=self._serve, name="store-worker", daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                call = self._calls.get(timeout=IDLE_SECONDS)
            except queue.Empty:
                with self._lock:
                    if self._idle > 0:  # unclaimed: nothing is on its way to this thread
                        self._idle -= 1
                        return
                continue  # claimed a moment ago: its call is being put on the queue
            try:
                call.result = call.work()
            except BaseException as exc:  # handed to the caller, raised there
                call.error = exc
            call.finished = True
            call.work = _done  # let go of what the work held (a batch, its rows)
            with contextlib.suppress(RuntimeError):  # (the loop has closed: nobody is waiting)
                call.loop.call_soon_threadsafe(call.wake)
            with self._lock:
                self._idle += 1


def _done() -> None:
    return None


_threads = _Threads()


async def run_in_thread(work: Callable[[], T]) -> T:
    """``work()`` in a worker thread; its result, or its exception raised here."""
    call: _Call[T] = _Call(work, asyncio.get_running_loop())
    _threads.submit(call)
    try:
        await call.waiter
    except asyncio.CancelledError:
        while not call.finished:  # wait the call out, then be cancelled
            call.waiter = call.loop.create_future()
            with contextlib.suppress(asyncio.CancelledError):
                await call.waiter
        raise
    if call.error is not None:
        error, call.error = call.error, None
        raise error
    return call.result  # type: ignore[no-any-return]

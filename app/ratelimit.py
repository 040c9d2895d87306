"""Fixed-window rate limits behind one async interface: in-process memory, or Redis across instances.

Every check is awaited on the event loop before any database work is queued, so a limit
never holds a writer's batch, and a slow Redis never blocks the loop: each call is bounded
by a short timeout, and while Redis is unreachable the limits fail open (a Redis outage
must not take the API down), said once in the log when it starts and once when it ends.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from typing import Any, Protocol

import redis.asyncio as redis

from app import errors

log = logging.getLogger("backchannel.ratelimit")


class RateLimiter(Protocol):
    async def consume(self, key: str, limit: int, window: float, cost: int = 1) -> float:
        """Count ``cost`` hits (bytes, for an upload allowance); return 0 when allowed, else
        the seconds until the window resets."""
        ...

    async def consume_or_raise(self, key: str, limit: int, window: float, cost: int = 1) -> None:
        """Count ``cost`` hits; ``errors.RateLimited`` (429 with ``Retry-After``) past the limit."""
        ...

    async def clear(self, key: str) -> None:
        """Start the key's window over (a good login clears the account's failures)."""
        ...

    async def aclose(self) -> None: ...


class _Base:
    async def consume(self, key: str, limit: int, window: float, cost: int = 1) -> float:  # pragma: no cover
        raise NotImplementedError

    async def consume_or_raise(self, key: str, limit: int, window: float, cost: int = 1) -> None:
        wait = await self.consume(key, limit, window, cost)
        if wait > 0:
            raise errors.RateLimited(max(1, math.ceil(wait)))

    async def aclose(self) -> None:
        return None


class MemoryRateLimiter(_Base):
    """One process: a window per key, started by its first hit. Only the event loop calls it."""

    def __init__(self) -> None:
        self._windows: dict[str, tuple[float, int]] = {}

    async def consume(self, key: str, limit: int, window: float, cost: int = 1) -> float:
        now = time.monotonic()
        start, count = self._windows.get(key, (now, 0))
        if now - start >= window:
            start, count = now, 0
        count += cost
        self._windows[key] = (start, count)
        if len(self._windows) > 100_000:  # forget finished windows
            self._windows = {k: v for k, v in self._windows.items() if now - v[0] < window}
        return 0.0 if count <= limit else window - (now - start)

    async def clear(self, key: str) -> None:
        self._windows.pop(key, None)


# KEYS[1]: the limit's key; ARGV: its window in ms, the hits to add. Starts the window with the
# first hit, counts, and answers (count, ms left in the window).
_COUNT_HITS = """
redis.call('SET', KEYS[1], 0, 'PX', ARGV[1], 'NX')
local count = redis.call('INCRBY', KEYS[1], ARGV[2])
return {count, redis.call('PTTL', KEYS[1])}
"""


class RedisRateLimiter(_Base):
    """Shared across instances: one Redis key per limit key, counting hits, that expires with
    its window (started by the first hit, as in memory). ``redis.asyncio``, never blocking.

    Hits on one key that arrive while its last count is still in flight are counted together,
    in one round trip (``INCRBY`` their sum), and each caller gets the answer it would have had
    alone: the count as it stood after its own hit, in arrival order. Under load (one busy API
    token) that is one Redis round trip per round instead of one per request.
    """

    PREFIX = "backchannel:rl:"

    def __init__(self, url: str, *, timeout: float = 0.25, retry_after_failure: float = 1.0) -> None:
        self.timeout = timeout
        self.retry_after_failure = retry_after_failure
        self._redis: Any = redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
        self._count_hits: Any = self._redis.register_script(_COUNT_HITS)  # EVALSHA, loaded on first NOSCRIPT
        self._down_since: float | None = None
        self._next_try = 0.0
        # (Redis key, window in ms) -> hits waiting for the next count: (cost, limit, answer).
        self._waiting: dict[tuple[str, int], list[tuple[int, int, asyncio.Future[float]]]] = {}
        self._counting: set[asyncio.Task[None]] = set()

    async def consume(self, key: str, limit: int, window: float, cost: int = 1) -> float:
        if time.monotonic() < self._next_try:
            return 0.0  # known down: fail open without waiting
        group = (self.PREFIX + key, max(1, int(window * 1000)))
        answer: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        waiting = self._waiting.get(group)
        if waiting is None:
            self._waiting[group] = [(cost, limit, answer)]
            task = asyncio.create_task(self._count(group), name="rate-limit-count")
            self._counting.add(task)  # held until done: the loop keeps only a weak reference
            task.add_done_callback(self._counting.discard)
        else:
            waiting.append((cost, limit, answer))
        return await answer

    async def _count(self, group: tuple[str, int]) -> None:
        """Count the key's waiting hits, round by round, until none wait."""
        rkey, window_ms = group
        waiting = self._waiting[group]
        hits: list[tuple[int, int, asyncio.Future[float]]] = []
        try:
            while waiting:
                hits = waiting[:]
                del waiting[:]
                total = sum(cost for cost, _, _ in hits)

                async def count(total: int = total) -> tuple[int, int]:
                    # One script, run atomically: the key cannot expire between starting its
                    # window and counting. (It was a MULTI/EXEC of three commands: five for
                    # redis-py to send and parse, per round.)
                    after, ttl_ms = await self._count_hits(keys=[rkey], args=[window_ms, total])
                    return int(after), int(ttl_ms)

                result = await self._call(count)
                running = result[0] - total if result is not None else 0
                for cost, limit, answer in hits:
                    running += cost
                    if answer.done():  # its caller went away (its hit still counts)
                        continue
                    if result is None:
                        answer.set_result(0.0)  # fail open
                    else:
                        answer.set_result(0.0 if running <= limit else max(result[1], 1) / 1000)
        finally:
            del self._waiting[group]
            for _, _, answer in hits + waiting:  # left unanswered only if cancelled (shutdown)
                if not answer.done():
                    answer.set_result(0.0)

    async def clear(self, key: str) -> None:
        await self._call(lambda: self._redis.delete(self.PREFIX + key))

    async def _call(self, fn: Any) -> Any:
        now = time.monotonic()
        if now < self._next_try:
            return None  # known down: do not make every request wait out the timeout
        try:
            async with asyncio.timeout(self.timeout):
                result = await fn()
        except Exception as exc:  # a Redis outage, a timeout, a refused connection: fail open
            self._next_try = time.monotonic() + self.retry_after_failure
            if self._down_since is None:
                self._down_since = now
                log.warning(
                    "rate limits: Redis is not answering (%s); allowing requests until it does", type(exc).__name__
                )
            return None
        if self._down_since is not None:
            log.warning("rate limits: Redis answers again after %.1fs; limits apply", now - self._down_since)
            self._down_since = None
        return result

    async def aclose(self) -> None:
        await self._redis.aclose()


def make_rate_limiter(broker_url: str) -> RateLimiter:
    if broker_url.startswith(("redis://", "rediss://", "unix://")):
        return RedisRateLimiter(broker_url)
    return MemoryRateLimiter()

"""Fan-out of internal events between instances: ``memory://`` and ``redis://`` behind one interface.

The broker is only the fast path. The database is the truth: anything a subscriber misses
(a Redis restart, a slow consumer) is caught up from the store by ``seq``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import orjson
import redis.asyncio as redis

from app import events

log = logging.getLogger("backchannel.broker")

Handler = Callable[[dict[str, Any]], Awaitable[None]]
CHANNEL = "backchannel:events"
# A publish happens after the write committed, while its caller waits: a Redis that hangs
# must cost a request this much at most (the event then reaches sockets by resync), not the
# seconds redis-py would wait. (The store's runner publishes each round of committed writes
# with one ``publish_many``: one timeout, one message, for all of them.)
PUBLISH_TIMEOUT = 0.5


class Broker(Protocol):
    async def start(self, handler: Handler) -> None: ...
    async def publish(self, event: dict[str, Any]) -> None: ...
    async def publish_many(self, events: list[dict[str, Any]]) -> None: ...
    async def stop(self) -> None: ...
    async def ping(self) -> bool: ...


class MemoryBroker:
    """One process: publishing is handing the event to this instance's own handler."""

    def __init__(self) -> None:
        self._handler: Handler | None = None

    async def start(self, handler: Handler) -> None:
        self._handler = handler

    async def publish(self, event: dict[str, Any]) -> None:
        if self._handler is not None:
            await self._handler(event)

    async def publish_many(self, events: list[dict[str, Any]]) -> None:
        for event in events:
            await self.publish(event)

    async def stop(self) -> None:
        self._handler = None

    async def ping(self) -> bool:
        return True


class RedisBroker:
    """Redis pub/sub across instances; reconnects with backoff and tells the handler of gaps."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._handler: Handler | None = None
        self._task: asyncio.Task[None] | None = None
        self._redis: Any = None

    async def start(self, handler: Handler) -> None:
        self._handler = handler
        self._redis = redis.from_url(self.url, health_check_interval=10)
        ready = asyncio.Event()
        self._task = asyncio.create_task(self._listen(ready), name="redis-broker")
        try:
            await asyncio.wait_for(ready.wait(), timeout=5)
        except TimeoutError:
            log.warning("redis broker not reachable yet at start-up; will keep retrying")

    async def _listen(self, ready: asyncio.Event) -> None:
        delay = 0.2
        first = True
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(CHANNEL)
                ready.set()
                if not first:
                    log.warning("redis broker reconnected; asking connections to resync")
                    await self._dispatch({"type": events.BROKER_RESYNC})
                first = False
                delay = 0.2
                async for message in pubsub.listen():
                    if message.get("type") == "message":
                        data = orjson.loads(message["data"])
                        # A round of committed writes comes as one list (``publish_many``).
                        for event in data if isinstance(data, list) else (data,):
                            await self._dispatch(event)
            except asyncio.CancelledError:
                await pubsub.aclose()
                raise
            except Exception as exc:  # connection lost: back off, reconnect, resync
                log.warning("redis broker connection lost (%s); retrying in %.1fs", exc, delay)
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _dispatch(self, event: dict[str, Any]) -> None:
        if self._handler is None:
            return
        try:
            await self._handler(event)
        except Exception:
            log.exception("event handler failed")

    async def publish(self, event: dict[str, Any]) -> None:
        try:
            async with asyncio.timeout(PUBLISH_TIMEOUT):
                await self._redis.publish(CHANNEL, orjson.dumps(event))
        except Exception as exc:
            # The write is committed; subscribers will catch up from the store.
            log.warning("redis publish failed (%s); clients will resync from the store", exc)

    async def publish_many(self, events: list[dict[str, Any]]) -> None:
        """The events in order, as one message (a JSON list): one command for Redis to run and
        one message for each instance to take in and parse, not one per event (which cost the
        app about a tenth of its CPU per message, sending and receiving)."""
        if len(events) == 1:
            await self.publish(events[0])
            return
        try:
            async with asyncio.timeout(PUBLISH_TIMEOUT):
                await self._redis.publish(CHANNEL, orjson.dumps(events))
        except Exception as exc:
            log.warning("redis publish of %d events failed (%s); clients will resync from the store", len(events), exc)

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._redis is not None:
            await self._redis.aclose()

    async def ping(self) -> bool:
        try:
            return bool(await self._redis.ping())
        except Exception:
            return False


def make_broker(url: str) -> Broker:
    if url.startswith("memory://"):
        return MemoryBroker()
    if url.startswith(("redis://", "rediss://", "unix://")):
        return RedisBroker(url)
    raise ValueError(f"unsupported BACKCHANNEL_BROKER_URL: {url!r} (use memory:// or redis://)")

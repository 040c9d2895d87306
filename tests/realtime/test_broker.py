"""The Redis broker between instances: what one instance publishes, every instance's handler
gets, in order, once; a round of committed writes goes as one message (``publish_many``)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from app.realtime.broker import RedisBroker
from tests.conftest import redis_url


async def test_a_round_of_events_reaches_every_instance_once_and_in_order() -> None:
    url = redis_url()
    if not url:
        pytest.skip("Redis not configured: set BACKCHANNEL_TEST_REDIS_URL (see .ci/run)")
    got: dict[str, list[dict[str, Any]]] = {"a": [], "b": []}
    brokers = {name: RedisBroker(url) for name in got}

    def handler(name: str) -> Any:
        async def handle(event: dict[str, Any]) -> None:
            got[name].append(event)

        return handle

    for name, broker in brokers.items():
        await broker.start(handler(name))
    try:
        round_ = [{"type": "message.created", "n": n} for n in range(5)]
        await brokers["a"].publish_many(round_)
        await brokers["b"].publish_many([{"type": "typing", "n": 5}])
        await brokers["a"].publish({"type": "typing", "n": 6})
        expected = [*round_, {"type": "typing", "n": 5}, {"type": "typing", "n": 6}]
        async with asyncio.timeout(5):
            while any(len(events) < len(expected) for events in got.values()):
                await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)  # nothing more comes
        assert got == {"a": expected, "b": expected}
    finally:
        for broker in brokers.values():
            await broker.stop()

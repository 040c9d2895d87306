"""What the running app holds, built in the lifespan and reached through ``request.app.state.bc``."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import Engine

from app.ratelimit import RateLimiter
from app.realtime.broker import Broker
from app.settings import Settings
from app.store.runner import Runner
from app.tokens import TokenAuthenticator

log = logging.getLogger("backchannel")
Listener = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass
class AppState:
    settings: Settings
    engine: Engine
    read_engine: Engine
    broker: Broker
    runner: Runner
    limiter: RateLimiter
    authenticator: TokenAuthenticator = field(default_factory=TokenAuthenticator)
    listeners: list[Listener] = field(default_factory=list)
    services: dict[str, Any] = field(default_factory=dict)  # hub, dispatcher, http client, …

    async def on_event(self, event: dict[str, Any]) -> None:
        """Every published event (from this instance or, via the broker, any other)."""
        for listener in self.listeners:
            try:
                await listener(event)
            except Exception:
                log.exception("event listener failed for %s", event.get("type"))

"""What the running app holds, built in the lifespan and reached through ``request.app.state.bc``.

Every service is a typed attribute, built by ``app.main``'s lifespan. The modules that define
the services (the store, the hubs, the webhook dispatcher and sender) never import this one:
they take what they need (a runner, the settings) as arguments, so the import graph stays a
tree with the handlers on top (tests/test_imports.py fails on a cycle).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import Engine

from app.console.hub import ConsoleHub
from app.data.retention import DataJob
from app.files.service import Files
from app.mail.replies import OfflineReplies
from app.ratelimit import RateLimiter
from app.realtime.broker import Broker
from app.realtime.hub import Hub
from app.realtime.identity import TokenSigner
from app.settings import Settings
from app.store.runner import Runner
from app.tokens import TokenAuthenticator
from app.webhooks.dispatcher import Dispatcher
from app.webhooks.sender import Sender

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
    signer: TokenSigner  # widget session and visitor tokens, from settings.secret_key
    hub: Hub  # widget sockets
    console: ConsoleHub  # live-Inbox sockets
    webhook_sender: Sender  # the one SSRF-guarded outbound sender: webhook deliveries, web-view form relay
    dispatcher: Dispatcher  # the webhook outbox worker
    files: Files  # uploads: the file store and the download-link signer (app/files)
    data_job: DataJob  # retention, and reclaiming erased space (app/data/retention.py)
    mail: OfflineReplies | None = None  # offline replies by email; None without SMTP_URL (app/mail)
    authenticator: TokenAuthenticator = field(default_factory=TokenAuthenticator)
    listeners: list[Listener] = field(default_factory=list)

    async def on_event(self, event: dict[str, Any]) -> None:
        """Every published event (from this instance or, via the broker, any other)."""
        for listener in self.listeners:
            try:
                await listener(event)
            except Exception:
                log.exception("event listener failed for %s", event.get("type"))

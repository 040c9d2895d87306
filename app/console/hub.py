"""The live-Inbox hub: which console sockets are open, and the hint each event becomes for them.

``ConsoleHub.on_event`` is one of ``AppState.listeners``; ``app.console.live`` is the socket
handler that registers sockets here. The socket carries hints, not data (see that module).
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any

from starlette.websockets import WebSocket

from app import events
from app.realtime.closecodes import CloseCode

QUEUE = 256
# The events a console hears of as hints (``app/events.py``); logout and resync it acts on itself.
FORWARDED = events.TO_CONSOLE - {events.CONSOLE_LOGOUT, events.BROKER_RESYNC}


def summarise(event: dict[str, Any]) -> dict[str, Any] | None:
    """The hint a console needs, from an internal event; None for events it ignores."""
    type_, data = event.get("type"), event.get("data") or {}
    if type_ not in FORWARDED:
        return None
    conversation = data.get("conversation") or {}
    out: dict[str, Any] = {"type": type_, "conversation_id": conversation.get("id") or data.get("conversation_id")}
    if type_ == events.MESSAGE_CREATED:
        message = data.get("message") or {}
        out.update(seq=message.get("seq"), actor=message.get("actor"), private=bool(message.get("private")),
                   assignee_id=conversation.get("assignee_id"), handled_by=conversation.get("handled_by"))  # fmt: skip
    elif type_ == events.CONVERSATION_HANDOVER:
        # Notifications (console.js): a conversation handed to humans that nobody has yet waits.
        out.update(to=data.get("to"), assignee_id=conversation.get("assignee_id"), reason=data.get("reason"))
    elif type_ == events.CONVERSATION_TYPING:
        out.update(actor=data.get("actor"), on=bool(data.get("on")))
    elif type_ == events.CONVERSATION_READ:
        out.update(reader=data.get("reader"), seq=data.get("seq"))
    return out


@dataclass(eq=False)
class LiveSocket:
    websocket: WebSocket
    workspace_id: str
    user_id: str
    queue: asyncio.Queue[dict[str, Any] | CloseCode] = field(default_factory=lambda: asyncio.Queue(QUEUE))

    def offer(self, item: dict[str, Any] | CloseCode) -> None:
        """Never blocks the listener: a socket too slow to keep up is closed (``TRY_AGAIN``, the
        widget socket's code for the same thing) and reconnects, catching up from the store."""
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            with contextlib.suppress(asyncio.QueueEmpty):
                while True:
                    self.queue.get_nowait()
            self.queue.put_nowait(CloseCode.TRY_AGAIN)


class ConsoleHub:
    def __init__(self) -> None:
        self.sockets: set[LiveSocket] = set()

    async def on_event(self, event: dict[str, Any]) -> None:
        if not self.sockets:  # nobody in the console: every message skips the hint
            return
        if event.get("type") == events.CONSOLE_LOGOUT:
            user_id = (event.get("data") or {}).get("console_user_id")
            for sock in [s for s in self.sockets if s.user_id == user_id]:
                sock.offer(CloseCode.UNAUTHENTICATED)
            return
        if event.get("type") == events.BROKER_RESYNC:
            for sock in self.sockets:
                sock.offer({"type": "resync"})
            return
        hint = summarise(event)
        if hint is None:
            return
        for sock in self.sockets:
            if sock.workspace_id == event.get("workspace_id"):
                sock.offer(hint)

    def close_all(self) -> None:
        for sock in self.sockets:
            sock.offer(CloseCode.RESTARTING)

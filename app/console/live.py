"""Live Inbox: a console WebSocket fed by ``state.listeners``.

The socket carries hints, not data: "conversation X has a message with seq N", "the
customer is typing". console.js then fetches the rendered messages after the last ``seq``
it has, so the store stays the truth and a reconnect never loses or repeats anything.
Each socket belongs to one console user and only ever hears its own workspace's events;
logging out (``console.logout``, sent over the broker to every instance) closes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlmodel import Session
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from app import conversations, errors, people
from app.console import auth
from app.state import AppState

log = logging.getLogger("backchannel.console.live")

CLOSE_LOGGED_OUT = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_OVERLOADED = 4408
QUEUE = 256
FORWARDED = {
    "message.created", "conversation.created", "conversation.assigned", "conversation.resolved",
    "conversation.reopened", "conversation.typing", "conversation.read", "webview.opened", "webview.closed",
}


def summarise(event: dict[str, Any]) -> dict[str, Any] | None:
    """The hint a console needs, from an internal event; None for events it ignores."""
    type_, data = event.get("type"), event.get("data") or {}
    if type_ not in FORWARDED:
        return None
    conversation = data.get("conversation") or {}
    out: dict[str, Any] = {"type": type_, "conversation_id": conversation.get("id") or data.get("conversation_id")}
    if type_ == "message.created":
        message = data.get("message") or {}
        out.update(seq=message.get("seq"), actor=message.get("actor"))
    elif type_ == "conversation.typing":
        out.update(actor=data.get("actor"), on=bool(data.get("on")))
    elif type_ == "conversation.read":
        out.update(reader=data.get("reader"), seq=data.get("seq"))
    return out


@dataclass(eq=False)
class LiveSocket:
    websocket: WebSocket
    workspace_id: str
    user_id: str
    queue: asyncio.Queue[dict[str, Any] | int] = field(default_factory=lambda: asyncio.Queue(QUEUE))

    def offer(self, item: dict[str, Any] | int) -> None:
        """Never blocks the listener: a socket too slow to keep up is closed and reconnects."""
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            with contextlib.suppress(asyncio.QueueEmpty):
                while True:
                    self.queue.get_nowait()
            self.queue.put_nowait(CLOSE_OVERLOADED)


class ConsoleHub:
    def __init__(self) -> None:
        self.sockets: set[LiveSocket] = set()

    async def on_event(self, event: dict[str, Any]) -> None:
        if event.get("type") == "console.logout":
            user_id = (event.get("data") or {}).get("console_user_id")
            for sock in [s for s in self.sockets if s.user_id == user_id]:
                sock.offer(CLOSE_LOGGED_OUT)
            return
        if event.get("type") == "broker.resync":
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
            sock.offer(1001)


async def start(state: AppState, exit_stack: contextlib.AsyncExitStack) -> None:
    hub = ConsoleHub()
    state.services["console"] = hub
    state.listeners.append(hub.on_event)
    exit_stack.callback(hub.close_all)


def typing_event(s: Session, workspace_id: str, conversation_id: str, agent_id: str, on: bool) -> dict[str, Any]:
    """The agent's typing indicator, shaped as the REST typing endpoint publishes it.

    Live only and never stored, so it needs a read (to check the workspace), not a write."""
    conversations.get_conversation(s, workspace_id, conversation_id)
    agent = people.get_agent(s, workspace_id, agent_id)
    return {
        "type": "conversation.typing",
        "workspace_id": workspace_id,
        "data": {"conversation_id": conversation_id, "actor": {"type": "agent", "id": agent.id, "name": agent.name},
                 "on": on},
    }


async def live(websocket: WebSocket) -> None:
    state: AppState = websocket.app.state.bc
    hub: ConsoleHub | None = state.services.get("console")
    # A page of another site could open this socket with the user's cookie: only our own
    # origin may (browsers always send Origin on WebSocket handshakes).
    if hub is None or not auth.same_origin(websocket, state, required=True):
        await websocket.close(CLOSE_FORBIDDEN)
        return
    found = await auth.load_user(state, websocket)
    if found is None:
        # Accept, then close with a code console.js understands ("log in again"); a refused
        # handshake would only look like a network error and be retried forever.
        await websocket.accept()
        await websocket.close(CLOSE_LOGGED_OUT)
        return
    user = found[0]
    await websocket.accept()
    sock = LiveSocket(websocket, user.workspace_id, user.id)
    hub.sockets.add(sock)
    sender = asyncio.create_task(_send_loop(sock))
    try:
        await _receive_loop(state, sock, user.agent_id)
    except WebSocketDisconnect:
        pass
    finally:
        hub.sockets.discard(sock)
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await sender


async def _send_loop(sock: LiveSocket) -> None:
    try:
        await sock.websocket.send_text('{"type":"hello"}')
        while True:
            item = await sock.queue.get()
            if isinstance(item, int):
                await sock.websocket.close(item)
                return
            await sock.websocket.send_text(orjson.dumps(item).decode())
    except Exception:  # the peer went away; the receive loop notices and cleans up
        return


async def _receive_loop(state: AppState, sock: LiveSocket, agent_id: str | None) -> None:
    """The console sends only typing indicators; anything else is ignored."""
    limit = state.settings.ws_messages_per_10s
    while True:
        raw = await sock.websocket.receive_text()
        if len(raw) > 4096:
            continue
        try:
            msg = orjson.loads(raw)
        except orjson.JSONDecodeError:
            continue
        if not isinstance(msg, dict) or msg.get("type") != "typing" or agent_id is None:
            continue
        if await state.limiter.consume(f"console-typing:{sock.user_id}", limit, 10.0) > 0:
            continue
        conversation_id = str(msg.get("conversation_id") or "")[:64]
        try:
            event = await state.runner.read(
                typing_event, sock.workspace_id, conversation_id, agent_id, bool(msg.get("on"))
            )
        except errors.ApiError:
            continue  # another workspace's (or no) conversation: say nothing
        await state.broker.publish(event)


ROUTES = [WebSocketRoute("/console/live", live)]

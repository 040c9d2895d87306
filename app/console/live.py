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
from typing import Any

import orjson
from sqlmodel import Session
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from app import availability, conversations, errors, people
from app.console import auth
from app.console.hub import LiveSocket
from app.realtime.closecodes import CloseCode
from app.state import AppState

log = logging.getLogger("backchannel.console.live")


def typing_event(s: Session, workspace_id: str, conversation_id: str, agent_id: str, on: bool) -> dict[str, Any]:
    """The agent's typing indicator: ``conversations.typing_event``, as the REST endpoint makes it.

    Live only and never stored, so it needs a read (to check the workspace), not a write."""
    conversations.get_conversation(s, workspace_id, conversation_id)
    agent = people.get_agent(s, workspace_id, agent_id)
    return conversations.typing_event(workspace_id, conversation_id, "agent", on, agent=agent)


async def live(websocket: WebSocket) -> None:
    state: AppState = websocket.app.state.bc
    hub = state.console
    # A page of another site could open this socket with the user's cookie: only our own
    # origin may (browsers always send Origin on WebSocket handshakes).
    if not auth.same_origin(websocket, state, required=True):
        await websocket.close(CloseCode.FORBIDDEN)
        return
    found = await auth.load_user(state, websocket)
    if found is None:
        # Accept, then close with a code console.js understands ("log in again"); a refused
        # handshake would only look like a network error and be retried forever.
        await websocket.accept()
        await websocket.close(CloseCode.UNAUTHENTICATED)
        return
    user = found[0]
    await websocket.accept()
    sock = LiveSocket(websocket, user.workspace_id, user.id)
    hub.sockets.add(sock)
    sender = asyncio.create_task(_send_loop(sock))
    seen = asyncio.create_task(_say_seen(state, user.agent_id)) if user.agent_id else None
    try:
        await _receive_loop(state, sock, user.agent_id)
    except WebSocketDisconnect:
        pass
    finally:
        hub.sockets.discard(sock)
        for task in (sender, seen):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task


async def _say_seen(state: AppState, agent_id: str) -> None:
    """While an Inbox page is open its agent counts as present (``app/availability.py``): one
    small write when it opens and every ``SEEN_EVERY_SECONDS`` after."""
    while True:
        try:
            await state.runner.write(availability.mark_seen, agent_id)
        except Exception as exc:  # the database is away: presence is a hint, try again later
            log.info("console: could not record presence: %s", type(exc).__name__)
        await asyncio.sleep(availability.SEEN_EVERY_SECONDS)


async def _send_loop(sock: LiveSocket) -> None:
    try:
        await sock.websocket.send_text('{"type":"hello"}')
        while True:
            item = await sock.queue.get()
            if isinstance(item, CloseCode):
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

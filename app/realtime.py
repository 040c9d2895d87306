"""The widget's real-time hub: which sockets follow which conversation, and delivery to each.

Every published event reaches ``Hub.on_event`` (through ``state.listeners``). The hub turns
it into a frame and pushes it onto each interested connection's bounded queue; one sender
task per connection drains that queue, so frames leave in order and a slow reader only
ever slows itself. A reader that falls too far behind is closed (1013) and, like any
reconnecting client, catches up from the store by ``seq``.

The broker is only the fast path, the database is the truth: on connect, on a gap in
``seq``, and on ``broker.resync`` a connection reads what it lacks from the store, and
live messages it has already sent (by ``seq``) are dropped, so nothing is shown twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from typing import Any

import orjson
from sqlmodel import Session, col, select
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from app.models import Agent, Conversation, Message
from app.serializers import message_json
from app.state import AppState

log = logging.getLogger("backchannel.realtime")

HISTORY_LIMIT = 200  # a fresh connection gets at most this many past messages
CATCH_UP_PAGE = 200
SEND_TIMEOUT_SECONDS = 10.0

# Close codes (docs/widget.md): the standard ones, plus 44xx mirroring HTTP statuses.
CLOSE_GOING_AWAY = 1001
CLOSE_INVALID_DATA = 1007
CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009
CLOSE_RESTARTING = 1012
CLOSE_TRY_AGAIN = 1013
CLOSE_BAD_TOKEN = 4401
CLOSE_ORIGIN = 4403
CLOSE_DEAD_PEER = 4408


def settings_frame(data: dict[str, Any]) -> dict[str, Any]:
    """Only what the widget shows: never allowed_origins or identity settings."""
    return {"type": "settings", "theme_color": data.get("theme_color"), "greeting": data.get("greeting")}


class Connection:
    """One widget socket: who it is, which conversation it follows, and its outgoing queue."""

    def __init__(self, hub: Hub, websocket: WebSocket, workspace_id: str, user_id: str, queue_size: int) -> None:
        self.hub = hub
        self.websocket = websocket
        self.workspace_id = workspace_id
        self.user_id = user_id
        self.conversation_id: str | None = None  # what the hub routes to this connection
        self.sent_seq = 0  # highest message seq this client holds; owned by the sender task
        self._sending_conversation: str | None = None
        self._queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue(maxsize=queue_size)
        self.last_received = time.monotonic()
        self.closed = False

    # -- called by the hub and the socket handler ----------------------------------------

    def push(self, kind: str, payload: Any = None) -> None:
        if self.closed:
            return
        try:
            self._queue.put_nowait((kind, payload))
        except asyncio.QueueFull:
            log.info("closing a slow widget socket (queue full); it will catch up on reconnect")
            self.close_soon(CLOSE_TRY_AGAIN, "too far behind")

    def send_frame(self, frame: dict[str, Any]) -> None:
        self.push("frame", frame)

    def close_soon(self, code: int, reason: str = "") -> None:
        if self.closed:
            return
        self.closed = True
        asyncio.get_running_loop().create_task(self.close(code, reason))

    async def close(self, code: int, reason: str = "") -> None:
        self.closed = True
        if self.websocket.application_state == WebSocketState.CONNECTED:
            with contextlib.suppress(Exception):
                await self.websocket.close(code=code, reason=reason[:120])

    # -- the sender task --------------------------------------------------------------------

    async def run_sender(self) -> None:
        """Drain the queue in order until the socket closes."""
        try:
            while not self.closed:
                kind, payload = await self._queue.get()
                if kind == "frame":
                    await self._send(payload)
                elif kind == "message":
                    await self._deliver_message(payload)
                elif kind == "bind":
                    await self._bind(payload)
                elif kind == "catch_up":
                    await self._catch_up()
                elif kind == "conversation":
                    await self._send(await self.hub.conversation_frame(payload))
        except (TimeoutError, RuntimeError, OSError, WebSocketDisconnect) as exc:
            log.info("widget socket send failed (%s); closing", type(exc).__name__)
            await self.close(CLOSE_GOING_AWAY)
        except Exception:  # the sender is the connection's heart: log, close, let it reconnect
            log.exception("widget socket sender failed")
            await self.close(CLOSE_TRY_AGAIN)

    async def _send(self, frame: dict[str, Any]) -> None:
        if self.closed:
            return
        text = orjson.dumps(frame).decode()
        await asyncio.wait_for(self.websocket.send_text(text), SEND_TIMEOUT_SECONDS)

    async def _deliver_message(self, message: dict[str, Any]) -> None:
        if message["conversation_id"] != self._sending_conversation:
            return
        seq = int(message["seq"])
        if seq <= self.sent_seq:
            return  # already sent (catch-up and live event overlap)
        if seq > self.sent_seq + 1:
            await self._catch_up()  # a gap: the store has what the broker dropped
            return
        await self._send(await self.hub.message_frame(self.workspace_id, message))
        self.sent_seq = seq

    async def _bind(self, conversation: dict[str, Any]) -> None:
        if conversation["id"] != self._sending_conversation:
            self._sending_conversation = conversation["id"]
            self.sent_seq = 0
        await self._send(await self.hub.conversation_frame(conversation))
        await self._catch_up()

    async def _catch_up(self) -> None:
        conversation_id = self._sending_conversation
        if conversation_id is None:
            return
        while True:
            rows = await self.hub.state.runner.read(_messages_after, conversation_id, self.sent_seq)
            for message in rows:
                await self._send(await self.hub.message_frame(self.workspace_id, message))
                self.sent_seq = message["seq"]
            if len(rows) < CATCH_UP_PAGE:
                return

    def start_at(self, conversation_id: str | None, seq: int) -> None:
        """Before the sender starts: the conversation and seq the client already holds."""
        self.conversation_id = self._sending_conversation = conversation_id
        self.sent_seq = seq


def _messages_after(s: Session, conversation_id: str, after: int) -> list[dict[str, Any]]:
    if after == 0:
        last = s.get(Conversation, conversation_id)
        if last is not None and last.last_message_seq > HISTORY_LIMIT:
            after = last.last_message_seq - HISTORY_LIMIT
    rows = s.exec(
        select(Message)
        .where(Message.conversation_id == conversation_id, col(Message.seq) > after)
        .order_by(col(Message.seq))
        .limit(CATCH_UP_PAGE)
    )
    return [message_json(m) for m in rows]


class Hub:
    """Routes events to connections by conversation, by user and by workspace."""

    def __init__(self, state: AppState) -> None:
        self.state = state
        self.by_conversation: dict[str, set[Connection]] = defaultdict(set)
        self.by_user: dict[str, set[Connection]] = defaultdict(set)
        self.by_workspace: dict[str, set[Connection]] = defaultdict(set)
        self._agents: dict[str, dict[str, Any] | None] = {}

    # -- registration -----------------------------------------------------------------------

    def register(self, conn: Connection) -> None:
        self.by_user[conn.user_id].add(conn)
        self.by_workspace[conn.workspace_id].add(conn)
        if conn.conversation_id:
            self.by_conversation[conn.conversation_id].add(conn)

    def unregister(self, conn: Connection) -> None:
        for index, key in (
            (self.by_user, conn.user_id),
            (self.by_workspace, conn.workspace_id),
            (self.by_conversation, conn.conversation_id),
        ):
            if key and key in index:
                index[key].discard(conn)
                if not index[key]:
                    del index[key]

    def bind(self, conn: Connection, conversation: dict[str, Any]) -> None:
        """Point a connection at a conversation (its first, or a newer one), then catch up."""
        if conn.conversation_id == conversation["id"]:
            return  # already following it (the event and the handler that caused it both bind)
        if conn.conversation_id in self.by_conversation:
            self.by_conversation[conn.conversation_id].discard(conn)
        conn.conversation_id = conversation["id"]
        self.by_conversation[conversation["id"]].add(conn)
        conn.push("bind", conversation)

    async def close_all(self, code: int = CLOSE_RESTARTING) -> None:
        conns = [c for group in self.by_workspace.values() for c in group]
        await asyncio.gather(*(c.close(code, "server restarting") for c in conns))

    # -- events -----------------------------------------------------------------------------

    async def on_event(self, event: dict[str, Any]) -> None:
        type_ = event.get("type")
        data = event.get("data") or {}
        if type_ == "message.created":
            for conn in list(self.by_conversation.get(data["conversation"]["id"], ())):
                conn.push("message", data["message"])
        elif type_ == "conversation.created":
            conv = data["conversation"]
            for conn in list(self.by_user.get(conv["user_id"], ())):
                if conn.workspace_id == event.get("workspace_id"):
                    self.bind(conn, conv)
        elif type_ in ("conversation.assigned", "conversation.resolved", "conversation.reopened"):
            conv = data["conversation"]
            if type_ == "conversation.assigned" and data.get("assignee"):
                self._agents[data["assignee"]["id"]] = _agent_public(data["assignee"])
            for conn in list(self.by_conversation.get(conv["id"], ())):
                conn.push("conversation", conv)
        elif type_ == "conversation.typing":
            actor = data.get("actor") or {}
            if actor.get("type") == "user":
                return  # the customer's own typing is for agents, not echoed to the widget
            frame = {
                "type": "typing",
                "actor": {"type": actor.get("type"), "name": actor.get("name")},
                "on": bool(data.get("on")),
                "timeout": self.state.settings.typing_timeout_seconds,
            }
            for conn in list(self.by_conversation.get(data.get("conversation_id", ""), ())):
                conn.send_frame(frame)
        elif type_ == "conversation.read":
            frame = {"type": "read", "reader": data.get("reader"), "seq": data.get("seq")}
            for conn in list(self.by_conversation.get(data.get("conversation_id", ""), ())):
                conn.send_frame(frame)
        elif type_ == "widget.settings":
            for conn in list(self.by_workspace.get(event.get("workspace_id", ""), ())):
                conn.send_frame(settings_frame(data))
        elif type_ == "broker.resync":
            for group in list(self.by_conversation.values()):
                for conn in list(group):
                    conn.push("catch_up")

    # -- frames -----------------------------------------------------------------------------

    async def message_frame(self, workspace_id: str, message: dict[str, Any]) -> dict[str, Any]:
        """The message exactly as the API shows it, plus the sender's display name."""
        actor = message.get("actor") or {}
        sender = None
        if actor.get("type") in ("bot", "agent") and actor.get("id"):
            sender = await self.agent(actor["id"])
        return {"type": "message", "message": message, "sender": sender}

    async def conversation_frame(self, conversation: dict[str, Any]) -> dict[str, Any]:
        assignee = await self.agent(conversation["assignee_id"]) if conversation.get("assignee_id") else None
        return {
            "type": "conversation",
            "conversation": {"id": conversation["id"], "status": conversation["status"], "assignee": assignee},
        }

    async def agent(self, agent_id: str) -> dict[str, Any] | None:
        if agent_id not in self._agents:
            if len(self._agents) > 10_000:
                self._agents.clear()
            self._agents[agent_id] = await self.state.runner.read(_agent_by_id, agent_id)
        return self._agents[agent_id]


def _agent_public(agent: dict[str, Any]) -> dict[str, Any]:
    return {"id": agent["id"], "name": agent["name"], "kind": agent["kind"], "avatar_url": agent.get("avatar_url")}


def _agent_by_id(s: Session, agent_id: str) -> dict[str, Any] | None:
    agent = s.get(Agent, agent_id)
    if agent is None:
        return None
    return {"id": agent.id, "name": agent.name, "kind": agent.kind, "avatar_url": agent.avatar_url}


async def start(state: AppState, exit_stack: contextlib.AsyncExitStack) -> None:
    """Lifespan starter: build the hub, subscribe it to every event, close sockets on shutdown."""
    hub = Hub(state)
    state.services["hub"] = hub
    state.listeners.append(hub.on_event)
    exit_stack.push_async_callback(hub.close_all, CLOSE_RESTARTING)

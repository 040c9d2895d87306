"""The widget's real-time hub: which sockets follow which conversation, and delivery to each.

Every published event reaches ``Hub.on_event`` (through ``state.listeners``). The hub turns
it into a frame once, serialized once, and pushes the text onto each interested
connection's bounded queue. A connection drains its queue with a short-lived flusher task
that exists only while there is something to send, so frames leave in order, a slow reader
only ever slows itself, and an idle socket holds no task of its own. A reader that falls
too far behind is closed (``CloseCode.TRY_AGAIN``, 1013) and, like any reconnecting client, catches up from the
store by ``seq``.

One heartbeat task serves every socket: it walks the connections in slots, so each socket
is pinged once per interval and the pings of 10,000 sockets are spread over the interval,
and it closes (``CloseCode.DEAD_PEER``, 4408) a peer silent for 2.5 intervals.

The broker is only the fast path, the database is the truth: on connect, on a gap in
``seq``, and on ``broker.resync`` a connection reads what it lacks from the store, and
live messages it has already sent (by ``seq``) are dropped, so nothing is shown twice.
What it lacks is read in pages bounded in count and in size, one page at a time, each sent
before the next is read, until the client holds the newest message: however far behind it
is, it catches up without waiting for a newer message, and never holds more than a page.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

import orjson
from sqlmodel import Session
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from app import events
from app.files.links import links_for
from app.realtime.closecodes import CloseCode
from app.settings import Settings
from app.shapes import conversation_json
from app.store import sql as rows
from app.store.runner import Runner
from app.store.tables import Agent
from app.workspaces import widget_settings_json, workspace_by_widget_key

log = logging.getLogger("backchannel.realtime")

HISTORY_LIMIT = 200  # a fresh connection (no seq to resume from) gets this many past messages
CATCH_UP_PAGE = 200  # messages per store read on connect and catch-up ...
CATCH_UP_PAGE_CHARS = 256 * 1024  # ... and about this much stored JSON (docs/widget.md "Delivery")
SEND_TIMEOUT_SECONDS = 10.0
DEAD_AFTER_HEARTBEATS = 2.5  # the widget uses the same rule for a silent server
HEARTBEAT_SLOTS = 20  # the heartbeat visits 1/20 of the sockets every 1/20 of an interval
WORKSPACE_CACHE_SECONDS = 30.0  # handshakes look the widget key up here, not in the store
CACHE_SIZE = 10_000  # agents and workspaces held in memory, each

PING = '{"type":"ping"}'
# The ASGI extension of Backchannel's uvicorn protocol (app/realtime/uvicorn_protocol.py):
# ``{"send_text": f}``, ``f(text) -> bool`` writes a text frame now if it can.
SEND_NOWAIT = "backchannel.send_nowait"

# What a connection's queue holds: ready text, or work that needs the store or the seq.
_TEXT = 0  # (_TEXT, text)
_MESSAGE = 1  # (_MESSAGE, conversation_id, seq, text): sent unless a duplicate; a gap catches up
#               text None: a private note's seq (SPEC §11), passed over without a frame
_BIND = 2  # (_BIND, conversation): follow this conversation from now on, then catch up
_CATCH_UP = 3  # (_CATCH_UP,): read what the client lacks from the store
_RESYNC = 4  # (_RESYNC,): something happened during the handshake: check the newest conversation
_HISTORY = 5  # (_HISTORY, conversation_id, [(seq, text), ...], more): what the handshake read


def dumps(frame: dict[str, Any]) -> str:
    return orjson.dumps(frame).decode()


def settings_frame(data: dict[str, Any]) -> dict[str, Any]:
    """Only what the widget shows: never allowed_origins or identity settings."""
    keys = ("theme_color", "greeting", "locale", "away_message", "business_hours", "ratings_enabled")
    return {"type": "settings"} | {key: data.get(key) for key in keys}


class Connection:
    """One widget socket as the hub sees it: who it is, what it follows, what it still has to send.

    Slotted and lazy: an idle connection holds no queue and no task; only the socket's own
    receive loop (``app/realtime/widget_socket.py``) waits on it.
    """

    __slots__ = (
        "hub",
        "websocket",
        "workspace_id",
        "user_id",
        "session_key",
        "queue_size",
        "conversation_id",
        "sent_seq",
        "sending_conversation",
        "syncing",
        "stale",
        "last_received",
        "closed",
        "slot",
        "_close_args",
        "_pending",
        "_flusher",
        "_send_now",
    )

    def __init__(
        self, hub: Hub, websocket: WebSocket, workspace_id: str, user_id: str, queue_size: int, session_key: str = ""
    ) -> None:
        self.hub = hub
        self.websocket = websocket
        self.workspace_id = workspace_id
        self.user_id = user_id
        self.session_key = session_key  # the session token it authenticated with ("": none)
        self.queue_size = queue_size
        self.conversation_id: str | None = None  # what the hub routes to this connection
        self.sent_seq = 0  # highest message seq this client holds; owned by the flusher (or by
        # push_message's direct write, which only runs while there is no flusher)
        self.sending_conversation: str | None = None  # the conversation the flusher is on
        self.syncing = True  # registered, handshake read not yet applied
        self.stale = False  # an event for this user arrived while syncing
        self.last_received = time.monotonic()
        self.closed = False
        self.slot = -1
        self._close_args: tuple[int, str] = (CloseCode.GOING_AWAY, "")
        self._pending: deque[tuple[Any, ...]] | None = None
        self._flusher: asyncio.Task[None] | None = None
        # Under Backchannel's uvicorn protocol, a frame with nothing queued before it is written
        # at once (no flusher task, no send timer): most heartbeat pings and live frames.
        nowait = (websocket.scope.get("extensions") or {}).get(SEND_NOWAIT)
        self._send_now: Callable[[str], bool] | None = nowait["send_text"] if nowait else None

    # -- called by the hub and the socket handler ----------------------------------------

    def push_text(self, text: str) -> None:
        self._push((_TEXT, text))

    def send_frame(self, frame: dict[str, Any]) -> None:
        self._push((_TEXT, dumps(frame)))

    def push_message(self, conversation_id: str, seq: int, text: str | None) -> None:
        # The usual case, the next message of the conversation on screen with nothing queued:
        # written at once (as ``_deliver_message`` would, without a flusher task per message).
        if (
            self._idle()
            and conversation_id == self.sending_conversation
            and seq == self.sent_seq + 1
            and (text is None or self._write_now(text))
        ):
            self.sent_seq = seq
            return
        self._push((_MESSAGE, conversation_id, seq, text))

    def _push(self, item: tuple[Any, ...]) -> None:
        if self.closed:
            return
        if item[0] == _TEXT and self._idle() and self._write_now(item[1]):
            return
        pending = self._pending
        if pending is None:
            pending = self._pending = deque()
        elif len(pending) >= self.queue_size:
            log.info("closing a slow widget socket (queue full); it will catch up on reconnect")
            self.close_soon(CloseCode.TRY_AGAIN, "too far behind")
            return
        pending.append(item)
        if self._flusher is None:
            self._flusher = asyncio.get_running_loop().create_task(self._flush())

    def _idle(self) -> bool:
        """Nothing queued, no flusher, and the protocol writes at once: a frame may go now."""
        return self._pending is None and self._flusher is None and self._send_now is not None and not self.closed

    def _write_now(self, text: str) -> bool:
        """Write a frame through the protocol's ``send_nowait`` (nothing queued before it);
        False if it could not, and the caller queues it instead."""
        assert self._send_now is not None
        try:
            return self._send_now(text)
        except Exception:  # the queued path finds the same fault and closes the socket
            log.debug("widget socket: direct send failed, queueing", exc_info=True)
            return False

    def close_soon(self, code: int, reason: str = "") -> None:
        if self.closed:
            return
        self.closed = True
        self._close_args = (code, reason)
        self.hub.spawn(self._close_socket())

    async def close(self, code: int, reason: str = "", *, flush: float = 0.0) -> None:
        """Close now; a close already decided (``close_soon``) keeps its own code.

        ``flush`` > 0 first lets what is queued go out for up to that many seconds (a policy
        close sends its error frames before the close frame)."""
        flusher = self._flusher
        if flush > 0 and not self.closed and flusher is not None and flusher is not asyncio.current_task():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(flusher), flush)
        if not self.closed:
            self.closed = True
            self._close_args = (code, reason)
        await self._close_socket()

    async def _close_socket(self) -> None:
        code, reason = self._close_args
        if self.websocket.application_state == WebSocketState.CONNECTED:
            with contextlib.suppress(Exception):
                await self.websocket.close(code=code, reason=reason[:120])

    def discard(self) -> None:
        """The socket is gone: drop what was still to be sent."""
        self.closed = True
        self._pending = None
        if self._flusher is not None and self._flusher is not asyncio.current_task():
            self._flusher.cancel()

    # -- the flusher -----------------------------------------------------------------------

    async def _flush(self) -> None:
        """Send what is queued, in order, then end (the next push starts a new flusher)."""
        try:
            pending = self._pending
            while pending and not self.closed:
                item = pending.popleft()
                kind = item[0]
                if kind == _TEXT:
                    await self._send(item[1])
                elif kind == _MESSAGE:
                    await self._deliver_message(item[1], item[2], item[3])
                elif kind == _BIND:
                    await self._bind(item[1])
                elif kind == _CATCH_UP:
                    await self._catch_up()
                elif kind == _RESYNC:
                    await self._resync()
                elif kind == _HISTORY:  # the store's own rows: no gap to look for
                    for seq, text in item[2]:
                        if item[1] == self.sending_conversation and seq > self.sent_seq:
                            await self._send(text)
                            self.sent_seq = seq
                    if item[3]:  # the handshake read one page of several: the rest follows now
                        await self._catch_up()
        except (TimeoutError, RuntimeError, OSError, WebSocketDisconnect) as exc:
            log.info("widget socket send failed (%s); closing", type(exc).__name__)
            await self.close(CloseCode.GOING_AWAY)
        except Exception:  # delivery is the connection's heart: log, close, let it reconnect
            log.exception("widget socket delivery failed")
            await self.close(CloseCode.TRY_AGAIN)
        finally:
            if self._flusher is asyncio.current_task():
                self._flusher = None
            if not self._pending:
                self._pending = None  # an idle connection keeps no queue

    async def _send(self, text: str) -> None:
        if self.closed:
            return
        async with asyncio.timeout(SEND_TIMEOUT_SECONDS):
            await self.websocket.send_text(text)

    async def _deliver_message(self, conversation_id: str, seq: int, text: str | None) -> None:
        if conversation_id != self.sending_conversation or seq <= self.sent_seq:
            return  # another conversation's, or already sent (catch-up and live event overlap)
        if seq > self.sent_seq + 1:
            await self._catch_up()  # a gap: the store has what the broker dropped
            return
        if text is not None:  # a private note is never sent: only its seq is passed
            await self._send(text)
        self.sent_seq = seq

    async def _bind(self, conversation: dict[str, Any]) -> None:
        if conversation["id"] != self.sending_conversation:
            self.sending_conversation = conversation["id"]
            self.sent_seq = 0
        await self._send(dumps(await self.hub.conversation_frame(conversation)))
        await self._catch_up()

    async def _catch_up(self) -> None:
        """Page through the store until the client holds the conversation's newest message.

        One page is read, sent (the socket's own pace: a send waits while the peer does not
        read), then the next, so a connection holds one page at most. Live messages queued
        meanwhile follow, and those the pages already sent are dropped by ``seq``."""
        while not self.closed:
            conversation_id = self.sending_conversation
            if conversation_id is None:
                return
            rows, more = await self.hub.runner.read(_messages_after, conversation_id, self.sent_seq, None)
            await self._send_history(conversation_id, rows)
            if not more:
                return

    async def _send_history(self, conversation_id: str, rows: list[dict[str, Any]]) -> None:
        for message in rows:
            if conversation_id != self.sending_conversation:
                return
            if message["seq"] > self.sent_seq:
                await self._send(await self.hub.message_text(message))
                self.sent_seq = message["seq"]

    async def _resync(self) -> None:
        """After a handshake that raced with events: follow the newest conversation, fill any gap."""
        conv, rows, more = await self.hub.runner.read(
            sync_read, self.workspace_id, self.user_id, self.sending_conversation, self.sent_seq
        )
        if conv is None:
            return
        if conv["id"] != self.sending_conversation:
            self.hub.bind(self, conv)  # queues a _BIND: the conversation frame, then its history
            return
        await self._send_history(conv["id"], rows)
        if more:
            await self._catch_up()


# -- store reads (run in a worker thread through ``state.runner.read``) ----------------------


class Attached(NamedTuple):
    """What a handshake read: the conversation, its first page of message frames, more to come."""

    conversation: dict[str, Any] | None
    history: list[tuple[int, str]]
    more: bool


def _conversation_dict(row: Any) -> dict[str, Any]:
    # A Core row has the ORM instance's attributes, so the API's serializer fits it as is.
    return conversation_json(row) | {"user_read_seq": row.user_read_seq, "agent_read_seq": row.agent_read_seq}


def _messages_after(
    s: Session, conversation_id: str, after: int | None, last_seq: int | None
) -> tuple[list[dict[str, Any]], bool]:
    """One page of the messages after ``after`` and whether more follow it, as the API's
    message JSON (``rows.messages_json_page``: prepared SQL, parts not parsed).

    ``after=None`` is a client with nothing to resume from: it starts ``HISTORY_LIMIT``
    messages before the newest. ``last_seq`` is the conversation's newest seq when the
    caller already read it."""
    h = rows.db(s)
    if last_seq is None:
        last_seq = rows.conversation_seq(h, conversation_id) or 0
    if after is None:
        after = max(0, last_seq - HISTORY_LIMIT)
    if last_seq <= after:
        return [], False  # nothing new: no need to ask
    page = rows.messages_json_page(h, conversation_id, after, CATCH_UP_PAGE, CATCH_UP_PAGE_CHARS)
    return page, bool(page) and page[-1]["seq"] < last_seq


def sync_read(
    s: Session, workspace_id: str, user_id: str, held_conversation: str | None, held_seq: int
) -> tuple[dict[str, Any] | None, list[dict[str, Any]], bool]:
    """The visitor's newest conversation, the first page of what the client lacks of it, and
    whether more pages follow, in one store visit.

    A client resuming the newest conversation (``held_conversation``) gets everything after
    ``held_seq`` (0: from the first message); a client on another (or no) conversation has
    nothing to resume from and gets the newest one's last ``HISTORY_LIMIT`` messages.
    """
    conv = rows.newest_conversation(rows.db(s), workspace_id, user_id)
    if conv is None:
        return None, [], False
    after = held_seq if conv.id == held_conversation else None
    page, more = _messages_after(s, conv.id, after, conv.last_message_seq)
    return _conversation_dict(conv), page, more


def _agent_by_id(s: Session, agent_id: str) -> dict[str, Any] | None:
    agent = s.get(Agent, agent_id)
    if agent is None:
        return None
    return {"id": agent.id, "name": agent.name, "kind": agent.kind, "avatar_url": agent.avatar_url}


def _workspace_by_key(s: Session, widget_key: str) -> dict[str, Any] | None:
    workspace = workspace_by_widget_key(s, widget_key)
    return widget_settings_json(workspace) | {"id": workspace.id} if workspace else None


def _agent_public(agent: dict[str, Any]) -> dict[str, Any]:
    return {"id": agent["id"], "name": agent["name"], "kind": agent["kind"], "avatar_url": agent.get("avatar_url")}


def _add(index: dict[str, set[Connection]], key: str, conn: Connection) -> None:
    group = index.get(key)
    if group is None:
        index[key] = {conn}
    else:
        group.add(conn)


def _remove(index: dict[str, set[Connection]], key: str | None, conn: Connection) -> None:
    group = index.get(key) if key else None
    if group is not None:
        group.discard(conn)
        if not group:
            del index[key]  # type: ignore[arg-type]


class Hub:
    """Routes events to connections by conversation, by user and by workspace; runs the heartbeat."""

    def __init__(self, runner: Runner, settings: Settings) -> None:
        self.runner = runner
        self.settings = settings
        self.by_conversation: dict[str, set[Connection]] = {}
        self.by_user: dict[str, set[Connection]] = {}
        self.by_workspace: dict[str, set[Connection]] = {}
        self.by_session: dict[str, list[Connection]] = {}  # oldest first
        self._agents: dict[str, dict[str, Any] | None] = {}
        # The last conversation frame sent for a change, and its conversation: one commit can
        # fire two events the widget hears the same (an assignment and its handover).
        self._last_changed: tuple[str, str] | None = None
        self._workspaces: dict[str, tuple[float, dict[str, Any]]] = {}
        self._workspace_reads: dict[str, asyncio.Future[dict[str, Any] | None]] = {}
        self._workspace_generation = 0
        self._slots: list[set[Connection]] = [set() for _ in range(HEARTBEAT_SLOTS)]
        self._next_slot = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._heartbeat: asyncio.Task[None] | None = None

    # -- registration -----------------------------------------------------------------------

    def connected_users(self) -> list[str]:
        """The customers with a widget socket open on this instance (offline replies' presence)."""
        return list(self.by_user)

    def register(self, conn: Connection) -> None:
        """From now on events for this visitor reach the connection (or mark it stale while syncing)."""
        _add(self.by_user, conn.user_id, conn)
        _add(self.by_workspace, conn.workspace_id, conn)
        if conn.session_key:
            self._limit_session(conn)
        # Round robin spreads the heartbeat's pings evenly over the interval.
        conn.slot = self._next_slot
        self._next_slot = (self._next_slot + 1) % HEARTBEAT_SLOTS
        self._slots[conn.slot].add(conn)
        if self._heartbeat is None:
            self._heartbeat = asyncio.get_running_loop().create_task(self._run_heartbeat(), name="widget-heartbeat")

    def _limit_session(self, conn: Connection) -> None:
        """At most ``WS_SOCKETS_PER_SESSION`` sockets per session token: a newer one closes the
        oldest (4429). The newest wins because a reconnecting widget's old socket may be a
        half-open one the heartbeat has not caught yet; a copied token gains nothing."""
        sockets = self.by_session.setdefault(conn.session_key, [])
        sockets.append(conn)
        while len(sockets) > max(1, self.settings.ws_sockets_per_session):
            oldest = sockets.pop(0)
            oldest.close_soon(CloseCode.REPLACED, "too many sockets for this session")

    def unregister(self, conn: Connection) -> None:
        _remove(self.by_user, conn.user_id, conn)
        _remove(self.by_workspace, conn.workspace_id, conn)
        sockets = self.by_session.get(conn.session_key) if conn.session_key else None
        if sockets is not None:
            with contextlib.suppress(ValueError):
                sockets.remove(conn)
            if not sockets:
                del self.by_session[conn.session_key]
        _remove(self.by_conversation, conn.conversation_id, conn)
        if conn.slot >= 0:
            self._slots[conn.slot].discard(conn)
        conn.discard()

    async def attach(self, conn: Connection, held_conversation: str | None, held_seq: int) -> Attached:
        """The handshake's one store visit: the visitor's conversation and its first page of
        frames to replay (``Attached.more``: further pages follow once it is sent).

        The connection is registered first, so an event for this visitor that lands while
        the store is read marks it stale; ``start`` then has it check again.
        """
        self.register(conn)
        # A burst of handshakes shares the runner's few batched readers (and their threads).
        conv, rows, more = await self.runner.read(
            sync_read, conn.workspace_id, conn.user_id, held_conversation, held_seq
        )
        if conv is None:
            return Attached(None, [], False)
        held = held_seq if conv["id"] == held_conversation else 0
        conn.sending_conversation, conn.sent_seq = conv["id"], held
        return Attached(conv, [(m["seq"], await self.message_text(m)) for m in rows if m["seq"] > held], more)

    def start(self, conn: Connection, attached: Attached) -> None:
        """After ``ready`` is queued: route live events, queue the history, resync if it raced."""
        conv, history = attached.conversation, attached.history
        if conn.closed:
            return
        conn.syncing = False
        # The peer waited for ``ready``: its silence is counted from now, not from ``auth``.
        conn.last_received = time.monotonic()
        if conv is not None:
            conn.conversation_id = conv["id"]
            _add(self.by_conversation, conv["id"], conn)
            if history or attached.more:  # one queue entry: the flusher's first job after ready
                conn._push((_HISTORY, conv["id"], history, attached.more))
        if conn.stale:
            conn._push((_RESYNC,))

    def bind(self, conn: Connection, conversation: dict[str, Any]) -> None:
        """Point a connection at a conversation (its first, or a newer one), then catch up."""
        if conn.conversation_id == conversation["id"]:
            return  # already following it (the event and the handler that caused it both bind)
        _remove(self.by_conversation, conn.conversation_id, conn)
        conn.conversation_id = conversation["id"]
        _add(self.by_conversation, conversation["id"], conn)
        conn._push((_BIND, conversation))

    def spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close_all(self, code: int = CloseCode.RESTARTING) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
        conns = [c for group in self.by_workspace.values() for c in group]
        await asyncio.gather(*(c.close(code, "server restarting") for c in conns))

    # -- the heartbeat ----------------------------------------------------------------------

    async def _run_heartbeat(self) -> None:
        """Ping each socket once per interval; close a peer silent for 2.5 intervals."""
        interval = self.settings.ws_heartbeat_seconds
        tick = interval / HEARTBEAT_SLOTS
        loop = asyncio.get_running_loop()
        slot = 0
        next_at = loop.time() + tick
        while True:
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            # Late (a busy loop)? Carry on from now rather than rushing through missed ticks.
            next_at = max(next_at + tick, loop.time())
            try:
                self._beat(self._slots[slot], interval)
            except Exception:  # the heartbeat serves every socket: it must not die
                log.exception("widget heartbeat failed")
            slot = (slot + 1) % HEARTBEAT_SLOTS

    @staticmethod
    def _beat(conns: set[Connection], interval: float) -> None:
        silent_for = interval * DEAD_AFTER_HEARTBEATS
        now = time.monotonic()
        for conn in list(conns):
            if conn.closed or conn.syncing:
                continue
            if now - conn.last_received > silent_for:
                conn.close_soon(CloseCode.DEAD_PEER, "heartbeat timeout")
            else:
                conn.push_text(PING)

    # -- events -----------------------------------------------------------------------------

    def _mark_syncing(self, user_id: str | None) -> None:
        for conn in self.by_user.get(user_id or "", ()):
            if conn.syncing:
                conn.stale = True

    async def on_event(self, event: dict[str, Any]) -> None:
        """Act on one published event: the types ``app/events.py`` sends to the widget."""
        handler = _ON_EVENT.get(event.get("type") or "")
        if handler is not None:
            await handler(self, event, event.get("data") or {})

    async def _on_message_created(self, event: dict[str, Any], data: dict[str, Any]) -> None:
        conv = data["conversation"]
        self._mark_syncing(conv.get("user_id"))
        message = data["message"]
        if conv["id"] not in self.by_conversation:
            return
        # A private note is the team's alone: the widget never gets it, only its seq is passed.
        text = None if message.get("private") else await self.message_text(message)
        for conn in list(self.by_conversation.get(conv["id"], ())):
            conn.push_message(conv["id"], message["seq"], text)

    async def _on_conversation_created(self, event: dict[str, Any], data: dict[str, Any]) -> None:
        conv = data["conversation"]
        for conn in list(self.by_user.get(conv["user_id"], ())):
            if conn.workspace_id != event.get("workspace_id"):
                continue
            if conn.syncing:
                conn.stale = True
            else:
                self.bind(conn, conv)

    async def _on_conversation_changed(self, event: dict[str, Any], data: dict[str, Any]) -> None:
        """Assigned, handed over, resolved, reopened or rated: the widget's conversation frame changes."""
        conv = data["conversation"]
        self._mark_syncing(conv.get("user_id"))
        if event["type"] == events.CONVERSATION_ASSIGNED and data.get("assignee"):
            self._agents[data["assignee"]["id"]] = _agent_public(data["assignee"])
        if conv["id"] not in self.by_conversation:
            return
        text = dumps(await self.conversation_frame(conv))
        if self._last_changed == (conv["id"], text):
            return  # the widget already has exactly this: the same change, told twice
        self._last_changed = (conv["id"], text)
        for conn in list(self.by_conversation.get(conv["id"], ())):
            conn.push_text(text)

    async def _on_typing(self, event: dict[str, Any], data: dict[str, Any]) -> None:
        actor = data.get("actor") or {}
        if actor.get("type") == "user":
            return  # the customer's own typing is for agents, not echoed to the widget
        self._to_conversation(
            data.get("conversation_id"),
            {
                "type": "typing",
                "actor": {"type": actor.get("type"), "name": actor.get("name")},
                "on": bool(data.get("on")),
                "timeout": self.settings.typing_timeout_seconds,
            },
        )

    async def _on_read(self, event: dict[str, Any], data: dict[str, Any]) -> None:
        self._to_conversation(
            data.get("conversation_id"), {"type": "read", "reader": data.get("reader"), "seq": data.get("seq")}
        )

    async def _on_widget_settings(self, event: dict[str, Any], data: dict[str, Any]) -> None:
        self._forget_workspace(event.get("workspace_id"))
        conns = list(self.by_workspace.get(event.get("workspace_id") or "", ()))
        if conns:
            text = dumps(settings_frame(data))
            for conn in conns:
                conn.push_text(text)

    async def _on_agent_updated(self, event: dict[str, Any], data: dict[str, Any]) -> None:
        """A renamed agent (or a new avatar): the next frame that names it reads it again."""
        agent = data.get("agent") or {}
        self._agents.pop(agent.get("id") or "", None)

    async def _on_broker_resync(self, event: dict[str, Any], data: dict[str, Any]) -> None:
        self._agents.clear()  # a rename may be among what was lost
        self._workspace_generation += 1
        self._workspaces.clear()
        for group in list(self.by_conversation.values()):
            for conn in list(group):
                conn._push((_CATCH_UP,))

    def _to_conversation(self, conversation_id: str | None, frame: dict[str, Any]) -> None:
        conns = self.by_conversation.get(conversation_id or "")
        if conns:
            text = dumps(frame)
            for conn in list(conns):
                conn.push_text(text)

    # -- lookups and frames -----------------------------------------------------------------

    async def workspace(self, widget_key: str) -> dict[str, Any] | None:
        """The widget key's workspace (id and widget settings), cached briefly.

        ``widget.settings`` events (from any instance, through the broker) drop the entry,
        so an ``allowed_origins`` change applies to the next handshake; the time limit
        covers an event the broker lost.
        """
        cached = self._workspaces.get(widget_key)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        # A burst of handshakes for one widget key shares one read.
        reading = self._workspace_reads.get(widget_key)
        if reading is None:
            reading = asyncio.ensure_future(self._read_workspace(widget_key))
            self._workspace_reads[widget_key] = reading
            reading.add_done_callback(lambda _: self._workspace_reads.pop(widget_key, None))
        return await asyncio.shield(reading)

    async def _read_workspace(self, widget_key: str) -> dict[str, Any] | None:
        generation = self._workspace_generation
        workspace = await self.runner.read(_workspace_by_key, widget_key)
        # Not kept if a widget.settings event came while it was read: it may predate it.
        if workspace is not None and generation == self._workspace_generation:
            if len(self._workspaces) >= CACHE_SIZE:
                self._workspaces.clear()
            self._workspaces[widget_key] = (time.monotonic() + WORKSPACE_CACHE_SECONDS, workspace)
        return workspace

    def _forget_workspace(self, workspace_id: str | None) -> None:
        self._workspace_generation += 1
        for key in [k for k, (_, w) in self._workspaces.items() if w["id"] == workspace_id]:
            del self._workspaces[key]

    async def message_text(self, message: dict[str, Any]) -> str:
        """The message frame, serialized: exactly the API's message JSON plus the sender's name."""
        actor = message.get("actor") or {}
        sender = None
        if actor.get("type") in ("bot", "agent") and actor.get("id"):
            sender = await self.agent(actor["id"])
        if isinstance(message.get("message_parts"), list):  # stored text (a Fragment) names no file
            message = links_for(self.settings).present_message(message)  # fresh links for its files
        return dumps({"type": "message", "message": message, "sender": sender})

    async def conversation_frame(self, conversation: dict[str, Any]) -> dict[str, Any]:
        assignee = await self.agent(conversation["assignee_id"]) if conversation.get("assignee_id") else None
        return {
            "type": "conversation",
            "conversation": {
                "id": conversation["id"],
                "status": conversation["status"],
                "assignee": assignee,
                "rating": conversation.get("rating"),
                "handled_by": conversation.get("handled_by"),
            },
        }

    async def agent(self, agent_id: str) -> dict[str, Any] | None:
        if agent_id not in self._agents:
            if len(self._agents) >= CACHE_SIZE:
                self._agents.clear()
            self._agents[agent_id] = await self.runner.read(_agent_by_id, agent_id)
        return self._agents[agent_id]


# The hub's dispatch: one handler for each event type that ``app/events.py`` sends to the
# widget (``events.TO_WIDGET``; tests/test_events.py holds the two together).
_ON_EVENT: dict[str, Callable[[Hub, dict[str, Any], dict[str, Any]], Awaitable[None]]] = {
    events.MESSAGE_CREATED: Hub._on_message_created,
    events.CONVERSATION_CREATED: Hub._on_conversation_created,
    events.CONVERSATION_ASSIGNED: Hub._on_conversation_changed,
    events.CONVERSATION_HANDOVER: Hub._on_conversation_changed,
    events.CONVERSATION_RESOLVED: Hub._on_conversation_changed,
    events.CONVERSATION_REOPENED: Hub._on_conversation_changed,
    events.CONVERSATION_RATED: Hub._on_conversation_changed,
    events.CONVERSATION_TYPING: Hub._on_typing,
    events.CONVERSATION_READ: Hub._on_read,
    events.AGENT_UPDATED: Hub._on_agent_updated,
    events.WIDGET_SETTINGS: Hub._on_widget_settings,
    events.BROKER_RESYNC: Hub._on_broker_resync,
}

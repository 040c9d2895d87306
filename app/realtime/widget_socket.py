"""``/widget/v1/ws``: the widget's WebSocket, from handshake to close (protocol: docs/widget.md).

The handshake names the workspace (``?widget_key=``, not a secret) so that a foreign Origin
is refused before the socket is even accepted. Identity comes in the first frame
(``{"type": "auth", "token": <session token>}``), never in the URL. Everything the customer
does goes through the same actions as the REST API, inside ``state.runner.write``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Awaitable
from typing import Any

import orjson
from pydantic import ValidationError
from sqlmodel import Session, col, select
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect

from app import conversations, devices, errors
from app.api.framework import MAX_JSON_DEPTH, json_too_deep
from app.api.schemas import MessageIn
from app.files import records
from app.mail.replies import page_of, record_presence, save_customer_email
from app.realtime.closecodes import CloseCode
from app.realtime.hub import Connection, settings_frame
from app.realtime.identity import origin_allowed
from app.shapes import conversation_json
from app.state import AppState
from app.store.runner import Tx
from app.store.tables import Conversation, File, Message
from app.webviews import openings as webviews

log = logging.getLogger("backchannel.widget")

AUTH_TIMEOUT_SECONDS = 10.0
RATE_WINDOW_SECONDS = 10.0
WEBVIEW_STATUSES = ("closed", "submitted", "dismissed")
PONG = '{"type":"pong"}'
MAX_FILES_PER_MESSAGE = 10
HANDLERS = {
    "ping": "_on_ping",
    "open": "_on_open",
    "message": "_on_message",
    "typing": "_on_typing",
    "read": "_on_read",
    "webview.open": "_on_webview_open",
    "webview.close": "_on_webview_close",
    "rate": "_on_rate",
    "email": "_on_email",
}
EMAIL_SHAPE = re.compile(r"^[^@\s<>()\[\],;:\"]{1,64}@[^@\s<>()\[\],;:\"]+\.[^@\s<>()\[\],;:\"]{2,}$")
# Read receipts and typing say what the customer sees and does; they never spend the allowance
# of the frames that act (a brisk reader's message must not wait behind its own receipts).
SIGNALS = frozenset({"read", "typing"})
MAX_RATING_COMMENT = 1000


def asgi(scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
    """The endpoint as a bare ASGI app: ``app.edge`` serves the socket path with it, so an open
    socket keeps no router frames (a plain function: it keeps no frame of its own either)."""
    return endpoint(WebSocket(scope, receive=receive, send=send))


class Closed(Exception):
    """Raised to end the receive loop, with the close code to send."""

    def __init__(self, code: int, reason: str = "") -> None:
        self.code, self.reason = code, reason


async def endpoint(websocket: WebSocket) -> None:
    state: AppState = websocket.app.state.bc
    hub = state.hub
    workspace = await hub.workspace(websocket.query_params.get("widget_key", "")[:100])
    if workspace is None or not origin_allowed(workspace["allowed_origins"], websocket.headers.get("origin")):
        # Closing before accept refuses the handshake itself (HTTP 403).
        await websocket.close(code=CloseCode.FORBIDDEN)
        return
    await websocket.accept()
    await WidgetSocket(state, websocket, workspace).run()


class WidgetSocket:
    """One accepted socket: authenticate, then read frames and act on them.

    The receive loop runs in the socket's own ASGI task; delivery (``Connection``) and the
    heartbeat (``Hub``) need no task per socket, so an idle socket costs little.
    """

    __slots__ = (
        "state",
        "settings",
        "hub",
        "websocket",
        "workspace",
        "conn",
        "read_seq",
        "_window_start",
        "_window_count",
        "_signal_count",
    )

    def __init__(self, state: AppState, websocket: WebSocket, workspace: dict[str, Any]) -> None:
        self.state = state
        self.settings = state.settings
        self.hub = state.hub
        self.websocket = websocket
        self.workspace = workspace  # shared with every socket of the workspace (Hub.workspace)
        self.conn: Connection | None = None
        self.read_seq = 0
        self._window_start = time.monotonic()
        self._window_count = 0
        self._signal_count = 0

    async def run(self) -> None:
        try:
            try:
                async with asyncio.timeout(AUTH_TIMEOUT_SECONDS):
                    first = await self._receive()
            except TimeoutError:
                raise Closed(CloseCode.UNAUTHENTICATED, "no auth frame") from None
            conn = await self._authenticate(first)
            # Until the peer leaves or misbehaves, or the hub closes the socket (a failed
            # send, a slow reader, a silent peer): either way uvicorn then reports a disconnect.
            while not conn.closed:
                frame = await self._receive()
                conn.last_received = time.monotonic()
                if not self._over_rate(frame):
                    await self._dispatch(frame)
        except Closed as exc:
            await self._close(exc.code, exc.reason)
        except WebSocketDisconnect:
            pass
        finally:
            if self.conn is not None:
                self.hub.unregister(self.conn)
                await self.conn.close(CloseCode.GOING_AWAY)
                if self.state.mail is not None:  # gone from now: EMAIL_AFTER_SECONDS counts from here
                    with contextlib.suppress(Exception):
                        await self.state.runner.write(record_presence, self.conn.user_id)

    async def _close(self, code: int, reason: str) -> None:
        if self.conn is not None:
            await self.conn.close(code, reason, flush=1.0)  # the error frames that led here go first
        else:
            with contextlib.suppress(Exception):
                await self.websocket.close(code=code, reason=reason)

    # -- frames in --------------------------------------------------------------------------

    async def _receive(self) -> dict[str, Any]:
        message = await self.websocket.receive()
        if message["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(message.get("code", 1000))
        text = message.get("text")
        if text is None:
            try:
                text = (message.get("bytes") or b"").decode("utf-8")
            except UnicodeDecodeError:
                raise Closed(CloseCode.INVALID_DATA, "frames are UTF-8 JSON") from None
        if len(text.encode("utf-8")) > self.settings.ws_max_frame_bytes:
            raise Closed(CloseCode.TOO_BIG, "frame too big")
        try:
            frame = orjson.loads(text)
        except orjson.JSONDecodeError:
            raise Closed(CloseCode.INVALID_DATA, "frames are JSON objects") from None
        if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
            raise Closed(CloseCode.INVALID_DATA, "frames are JSON objects with a type")
        if json_too_deep(text, frame):
            raise Closed(CloseCode.INVALID_DATA, f"frames nest at most {MAX_JSON_DEPTH} levels")
        return frame

    def _over_rate(self, frame: dict[str, Any]) -> bool:
        """Throttle past the limit (the frame is dropped); close at twice it.

        Two counts per window: frames that act (an ``error`` ``rate_limited`` for each one
        dropped, so the widget retries a message later) and signals (read, typing), each with
        its own limit, dropped with one ``error`` a window: a newer signal supersedes them."""
        if frame["type"] == "pong":
            return False
        now = time.monotonic()
        if now - self._window_start >= RATE_WINDOW_SECONDS:
            self._window_start, self._window_count, self._signal_count = now, 0, 0
        signal = frame["type"] in SIGNALS
        if signal:
            self._signal_count += 1
            count, limit = self._signal_count, self.settings.ws_signals_per_10s
        else:
            self._window_count += 1
            count, limit = self._window_count, self.settings.ws_messages_per_10s
        if count > 2 * limit:
            raise Closed(CloseCode.POLICY, "rate limit")
        if count > limit:
            if not signal or count == limit + 1:  # a signal flood hears it once per window
                self._error(frame, errors.RateLimited(max(1, int(RATE_WINDOW_SECONDS - (now - self._window_start)))))
            return True
        return False

    async def _authenticate(self, frame: dict[str, Any]) -> Connection:
        signer = self.state.signer
        identity = signer.read_session(frame.get("token")) if frame["type"] == "auth" else None
        if identity is None or identity.workspace_id != self.workspace["id"]:
            raise Closed(CloseCode.UNAUTHENTICATED, "invalid session token")
        held, held_conversation = frame.get("last_seq"), frame.get("conversation_id")
        conn = Connection(
            self.hub,
            self.websocket,
            identity.workspace_id,
            identity.user_id,
            self.settings.ws_send_queue,
            session_key=frame["token"],
        )
        self.conn = conn
        # One store visit: the conversation and what the client lacks of it (``last_seq``
        # counts only for the visitor's current conversation).
        attached = await self.hub.attach(
            conn,
            held_conversation if isinstance(held_conversation, str) else None,
            held if isinstance(held, int) and not isinstance(held, bool) and held > 0 else 0,
        )
        conv = attached.conversation
        self.read_seq = conv["user_read_seq"] if conv else 0
        # Presence, the page and the device: offline replies by email need them (and whether
        # to ask for an email); the Inbox's customer panel shows them. Without mail, a write
        # only when the page or device changed: a reconnect costs a read, not a transaction.
        ask_email = False
        page = page_of(self.websocket.headers.get("origin"), frame.get("page"))
        device = devices.summary(self.websocket.headers.get("user-agent"))
        if self.state.mail is not None:
            ask_email = not await self.state.runner.write(record_presence, identity.user_id, page, device)
        elif page is not None or device is not None:
            changed: bool = await self.state.runner.read(devices.changed, identity.user_id, page, device)
            if changed:
                await self.state.runner.write(record_presence, identity.user_id, page, device)
        conn.send_frame(
            {
                "type": "ready",
                "user_id": identity.user_id,
                "conversation": (await self.hub.conversation_frame(conv))["conversation"] if conv else None,
                "user_read_seq": self.read_seq,
                "agent_read_seq": conv["agent_read_seq"] if conv else 0,
                "heartbeat": self.settings.ws_heartbeat_seconds,
                "settings": settings_frame(self.workspace),
                "ask_email": ask_email,
            }
        )
        self.hub.start(conn, attached)
        return conn

    # -- handlers ---------------------------------------------------------------------------

    async def _dispatch(self, frame: dict[str, Any]) -> None:
        if frame["type"] == "pong":
            return
        handler = getattr(self, HANDLERS.get(frame["type"], "_on_unknown"))
        try:
            await handler(frame)
        except errors.ApiError as exc:
            self._error(frame, exc)
        except Exception:
            log.exception("widget frame %s failed", frame["type"])
            self._error(frame, errors.ApiError("Something went wrong on our side.", code="internal"))

    def _error(self, frame: dict[str, Any], exc: errors.ApiError) -> None:
        assert self.conn is not None
        error: dict[str, Any] = {"type": "error", "ref": frame["type"], **exc.body()["error"]}
        for key in ("client_message_id", "message_id", "webview_id"):
            if isinstance(frame.get(key), str):
                error[key] = frame[key]
        self.conn.send_frame(error)

    async def _on_unknown(self, frame: dict[str, Any]) -> None:
        raise errors.BadRequest(f"Unknown frame type {frame['type'][:40]!r}.", code="unknown_type")

    async def _on_ping(self, frame: dict[str, Any]) -> None:
        assert self.conn is not None
        self.conn.push_text(PONG)

    async def _ensure_conversation(self) -> str:
        """The visitor's conversation, created on first need so a bot can greet first."""
        conn = self.conn
        assert conn is not None
        if conn.conversation_id is None:
            conv = await self.state.runner.write(conversations.open_conversation_for, conn.workspace_id, conn.user_id)
            self.hub.bind(conn, conversation_json(conv))
        assert conn.conversation_id is not None
        return conn.conversation_id

    async def _on_open(self, frame: dict[str, Any]) -> None:
        await self._ensure_conversation()

    async def _on_message(self, frame: dict[str, Any]) -> None:
        conn = self.conn
        assert conn is not None
        # A message is its text, its files (``file_ids`` from POST /widget/v1/files), or both.
        file_ids = frame.get("file_ids")
        parts: list[dict[str, Any]] = []
        if not file_ids or frame.get("text"):
            parts.append({"text": {"content": frame.get("text")}})
        if file_ids:
            if not isinstance(file_ids, list) or len(file_ids) > MAX_FILES_PER_MESSAGE:
                raise errors.Unprocessable(
                    "Invalid field: file_ids",
                    details=[{"field": "file_ids", "message": f"a list of at most {MAX_FILES_PER_MESSAGE} file ids"}],
                )
            parts.extend({"file": {"file_id": file_id}} for file_id in file_ids)
        try:
            body = MessageIn.model_validate(
                {
                    "actor": {"type": "user"},
                    "message_parts": parts,
                    "reply_to": frame.get("reply_to"),
                    "client_message_id": frame.get("client_message_id"),
                }
            )
        except ValidationError as exc:
            raise errors.from_validation_error(exc) from None
        await self.state.limiter.consume_or_raise(f"visitor:{conn.user_id}", self.settings.visitor_rate_per_minute, 60)
        if file_ids:
            body = await self.state.runner.read(typed_file_parts, conn.workspace_id, body)
        conversation_id = await self._ensure_conversation()
        message = await self.state.runner.write(
            post_customer_message,
            conn.workspace_id,
            conversation_id,
            conn.user_id,
            body,
            partition=conversation_id,
            quick=True,
        )
        conn.send_frame(
            {
                "type": "ack",
                "client_message_id": body.client_message_id,
                "message_id": message["id"],
                "seq": message["seq"],
            }
        )

    async def _on_typing(self, frame: dict[str, Any]) -> None:
        conn = self.conn
        assert conn is not None
        if conn.conversation_id is None:
            return
        # Typing is live-only and never stored, so it skips the write transaction.
        await self.state.broker.publish(
            conversations.typing_event(
                conn.workspace_id, conn.conversation_id, "user", bool(frame.get("on")), user_id=conn.user_id
            )
        )

    async def _on_read(self, frame: dict[str, Any]) -> None:
        conn = self.conn
        assert conn is not None
        seq = frame.get("seq")
        if conn.conversation_id is None or not isinstance(seq, int) or seq <= self.read_seq:
            return
        self.read_seq = seq
        conversation_id = conn.conversation_id
        await self.state.runner.write(
            conversations.mark_read,
            conn.workspace_id,
            conversation_id,
            "user",
            seq,
            partition=conversation_id,
            quick=True,
        )

    async def _on_rate(self, frame: dict[str, Any]) -> None:
        """The customer rates their resolved conversation: ``{type: "rate", score: 1-5, comment?}``.
        Rating again (adding the comment after the score) replaces the rating."""
        conn = self.conn
        assert conn is not None
        score, comment = frame.get("score"), frame.get("comment")
        if not isinstance(score, int) or isinstance(score, bool) or not 1 <= score <= 5:
            raise errors.Unprocessable("score is a whole number from 1 to 5.", code="invalid_rating")
        if comment is not None and (not isinstance(comment, str) or len(comment) > MAX_RATING_COMMENT):
            raise errors.Unprocessable(
                f"comment is text of at most {MAX_RATING_COMMENT} characters.", code="invalid_rating"
            )
        if conn.conversation_id is None:
            raise errors.Conflict("There is no conversation to rate.", code="not_resolved")
        conversation_id = conn.conversation_id
        await self.state.runner.write(
            conversations.rate_conversation,
            conn.workspace_id,
            conversation_id,
            score,
            (comment or "").strip() or None,
            partition=conversation_id,
        )

    async def _on_email(self, frame: dict[str, Any]) -> None:
        """The customer leaves an email for offline replies ("Notify me"): stored on the user when
        they have none yet (``user.updated``); an email on file is never replaced from the widget."""
        conn = self.conn
        assert conn is not None
        email = frame.get("email")
        if not isinstance(email, str) or len(email) > 320 or not EMAIL_SHAPE.match(email.strip()):
            raise errors.Unprocessable("That is not an email address.", code="invalid_email")
        stored = await self.state.runner.write(save_customer_email, conn.workspace_id, conn.user_id, email.strip())
        conn.send_frame({"type": "email.saved", "email": stored})

    def _webview_ids(self, frame: dict[str, Any]) -> tuple[str, str, str]:
        conn = self.conn
        assert conn is not None
        message_id, webview_id = frame.get("message_id"), frame.get("webview_id")
        if (
            not (isinstance(message_id, str) and isinstance(webview_id, str))
            or max(len(message_id), len(webview_id)) > 64
        ):
            raise errors.Unprocessable("message_id and webview_id are required strings.")
        if conn.conversation_id is None:
            raise errors.NotFound("No conversation yet.")
        return conn.conversation_id, message_id, webview_id

    async def _on_webview_open(self, frame: dict[str, Any]) -> None:
        conn = self.conn
        assert conn is not None
        conversation_id, message_id, webview_id = self._webview_ids(frame)
        opened = await self.state.runner.write(
            webviews.open_webview,
            conn.workspace_id,
            conversation_id,
            conn.user_id,
            message_id,
            webview_id,
            settings=self.settings,
            partition=conversation_id,
        )
        conn.send_frame(
            {
                "type": "webview.url",
                "message_id": message_id,
                "webview_id": webview_id,
                "url": opened["url"],
                "origin": opened["origin"],
                "label": opened.get("label"),
                "height": opened.get("height"),
                "kind": opened.get("kind"),
            }
        )

    async def _on_webview_close(self, frame: dict[str, Any]) -> None:
        conn = self.conn
        assert conn is not None
        conversation_id, message_id, webview_id = self._webview_ids(frame)
        status = frame.get("status")
        result = frame.get("result")
        if status not in WEBVIEW_STATUSES:
            raise errors.Unprocessable("status must be closed, submitted or dismissed.")
        if result is not None and (not isinstance(result, str) or len(result) > 1000):
            raise errors.Unprocessable("result is an optional string of at most 1000 characters.")
        await self.state.runner.write(
            webviews.close_webview,
            conn.workspace_id,
            conversation_id,
            message_id,
            webview_id,
            status,
            result,
            partition=conversation_id,
        )


def newest_conversation(s: Session, workspace_id: str, user_id: str) -> Conversation | None:
    """The conversation the widget shows (the same rule as ``conversations.open_conversation_for``)."""
    result: Conversation | None = s.exec(
        select(Conversation)
        .where(Conversation.workspace_id == workspace_id, Conversation.user_id == user_id)
        .order_by(col(Conversation.created_at).desc())
    ).first()
    return result


def _choices(message: Message) -> set[str]:
    """Every payload the customer could pick from this message."""
    payloads: set[str] = set()
    for part in message.reply_parts:
        for kind in ("quick_replies", "dropdown"):
            for option in (part.get(kind) or {}).get("options", []):
                payloads.add(option.get("payload"))
    for part in message.message_parts:
        for card in (part.get("carousel") or {}).get("cards", []):
            for button in card.get("buttons", []):
                if "postback" in button:
                    payloads.add(button["postback"].get("payload"))
    return payloads


def post_customer_message(
    tx: Tx, workspace_id: str, conversation_id: str, user_id: str, body: MessageIn
) -> dict[str, Any]:
    """The customer's message, through the API's own write path, authorised to their conversation."""
    conv = conversations.get_conversation(tx.session, workspace_id, conversation_id, lock=True)
    if conv.user_id != user_id:
        raise errors.NotFound("No such conversation.")
    if body.reply_to is not None:
        target = tx.session.get(Message, body.reply_to.message_id)
        if target is not None and target.conversation_id == conv.id and body.reply_to.payload not in _choices(target):
            raise errors.Unprocessable(
                "Invalid field: reply_to.payload",
                details=[{"field": "reply_to.payload", "message": "not one of the choices offered"}],
            )
    message, _ = conversations.post_message(tx, workspace_id, conv.id, body, customer_id=user_id, _conv=conv)
    return {"id": message.id, "seq": message.seq}


def typed_file_parts(s: Session, workspace_id: str, body: MessageIn) -> MessageIn:
    """The widget sends each file as a ``file`` part; it goes out as the part its type calls
    for (``records.part_for_file``): a picture as an image, video and audio with a player.
    A read before the write; whose file it is ``post_message`` checks (``customer_id``)."""
    parts = [p.model_dump(exclude_none=True) for p in body.message_parts]
    ids = [p["file"]["file_id"] for p in parts if "file_id" in p.get("file", {})]
    if not ids:
        return body
    found = {f.id: f for f in s.exec(select(File).where(File.workspace_id == workspace_id, col(File.id).in_(ids)))}
    typed = [
        records.part_for_file(found[p["file"]["file_id"]]) if p.get("file", {}).get("file_id") in found else p
        for p in parts
    ]
    try:
        return MessageIn.model_validate({**body.model_dump(exclude_none=True), "message_parts": typed})
    except ValidationError as exc:
        raise errors.from_validation_error(exc) from None

"""Every write goes through here: validate, store, record the outbox event, commit, then publish.

Routes (REST, widget socket, console) call these functions inside ``Runner.write``; nothing
else writes conversation state, and delivery (sockets, webhooks) only consumes events.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import anyio
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlmodel import Session, col, select

from app import errors
from app.broker import Broker
from app.db import get_in_workspace, session_scope
from app.ids import isoformat, new_id, utcnow
from app.models import Agent, Conversation, Event, Message, User, WebhookDelivery, WebhookEndpoint
from app.schemas import ConversationIn, ConversationPatch, MessageIn, UserIn, UserPatch
from app.serializers import agent_json, conversation_json, message_json, user_json

log = logging.getLogger("backchannel.actions")
T = TypeVar("T")


@dataclass
class Tx:
    """One open transaction, plus what to announce once it commits."""

    session: Session
    outgoing: list[dict[str, Any]] = field(default_factory=list)
    webhooks_enqueued: int = 0
    _endpoints: dict[str, list[WebhookEndpoint]] = field(default_factory=dict)

    def emit(
        self,
        workspace_id: str,
        type_: str,
        data: dict[str, Any],
        *,
        realtime: bool = True,
        only_endpoint: WebhookEndpoint | None = None,
    ) -> Event:
        """Record an event in the outbox (same transaction) and queue its live publish."""
        now = utcnow()
        event = Event(
            id=new_id("msg"),
            workspace_id=workspace_id,
            type=type_,
            payload={"type": type_, "timestamp": isoformat(now), "data": data},
            created_at=now,
        )
        self.session.add(event)
        targets = [only_endpoint] if only_endpoint else self._subscribers(workspace_id, type_)
        for endpoint in targets:
            self.session.add(
                WebhookDelivery(
                    id=new_id("dlv"),
                    workspace_id=workspace_id,
                    endpoint_id=endpoint.id,
                    event_id=event.id,
                    event_type=type_,
                    next_attempt_at=now,
                    created_at=now,
                    updated_at=now,
                )
            )
            self.webhooks_enqueued += 1
        if realtime:
            self.publish({"type": type_, "workspace_id": workspace_id, "data": data})
        return event

    def publish(self, event: dict[str, Any]) -> None:
        """Announce something live after commit (typing, read state, …): never stored."""
        self.outgoing.append(event)

    def _subscribers(self, workspace_id: str, type_: str) -> list[WebhookEndpoint]:
        if workspace_id not in self._endpoints:
            self._endpoints[workspace_id] = list(
                self.session.exec(
                    select(WebhookEndpoint).where(
                        WebhookEndpoint.workspace_id == workspace_id,
                        col(WebhookEndpoint.enabled).is_(True),
                    )
                )
            )
        return [e for e in self._endpoints[workspace_id] if "*" in e.events or type_ in e.events]


@dataclass
class _Write:
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    future: asyncio.Future[tuple[Any, Tx]]


class Runner:
    """Runs store work in a worker thread, one transaction each, then publishes.

    On SQLite, concurrent writes are group-committed: the one writer at a time takes every
    write queued behind it (up to ``WRITE_BATCH``) into one worker-thread call and one
    transaction, each write inside its own SAVEPOINT so a failing write rolls back alone
    and raises to its own caller. A write's caller resumes only after the commit, and its
    events are published only then, exactly as with one transaction per write.

    Why: SQLite has one writer at a time, and every hand-off to a worker thread waits for
    the GIL (up to ``sys.getswitchinterval()``, 5 ms, while the event loop is busy). One
    hand-off per write capped writes near 200/s whatever the CPU; one per batch does not.
    Queuing writers here also spares them SQLite's busy handler, which sleeps up to 100 ms
    between tries while the lock sits free. Other processes on the same file still wait
    through ``busy_timeout``, as before. PostgreSQL writes run side by side, one each.
    """

    WRITE_BATCH = 64

    def __init__(self, engine: Engine, read_engine: Engine, broker: Broker) -> None:
        self.engine = engine
        self.read_engine = read_engine
        self.broker = broker
        self.on_webhooks_enqueued: Callable[[], None] = lambda: None
        self._group_commit = engine.dialect.name == "sqlite"
        self._queued: list[_Write] = []
        self._writer: asyncio.Task[None] | None = None

    async def write(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        if self._group_commit:
            job = _Write(fn, args, kwargs, asyncio.get_running_loop().create_future())
            self._queued.append(job)
            if self._writer is None or self._writer.done():
                self._writer = asyncio.create_task(self._write_queued(), name="sqlite-writer")
            result, tx = await asyncio.shield(job.future)
        else:

            def work() -> tuple[T, Tx]:
                with session_scope(self.engine) as session:
                    tx = Tx(session)
                    result = fn(tx, *args, **kwargs)
                return result, tx

            result, tx = await self._in_thread(work)
        await self.announce(tx)
        return result  # type: ignore[no-any-return]

    async def _write_queued(self) -> None:
        """The one writer: commit what is queued, batch by batch, until nothing is."""
        while self._queued:
            batch, self._queued = self._queued[: self.WRITE_BATCH], self._queued[self.WRITE_BATCH :]
            try:
                outcomes = await self._in_thread(lambda batch=batch: self._commit_batch(batch))  # type: ignore[misc]
            except BaseException as exc:  # the transaction itself failed: every write in it did
                for job in batch:
                    if not job.future.done():
                        job.future.set_exception(exc if isinstance(exc, Exception) else errors.Unavailable())
                if not isinstance(exc, Exception):
                    raise
                continue
            for job, (ok, value) in zip(batch, outcomes, strict=True):
                if job.future.done():
                    continue
                if ok:
                    job.future.set_result(value)
                else:
                    job.future.set_exception(value)

    def _commit_batch(self, batch: list[_Write]) -> list[tuple[bool, Any]]:
        outcomes: list[tuple[bool, Any]] = []
        with session_scope(self.engine) as session:
            for job in batch:
                savepoint = session.begin_nested()
                try:
                    tx = Tx(session)
                    result = job.fn(tx, *job.args, **job.kwargs)
                    savepoint.commit()
                    outcomes.append((True, (result, tx)))
                except Exception as exc:
                    savepoint.rollback()
                    if isinstance(exc, OperationalError):
                        log.warning("database unavailable: %s: %s", exc.orig.__class__.__name__, exc.orig)
                        exc = errors.Unavailable(message="The database is busy or unavailable; retry soon.")
                    outcomes.append((False, exc))
                finally:
                    # Each write sees the others' rows (one transaction) but not their objects:
                    # what a write returns is its own, detached, as with a session of its own.
                    session.expunge_all()
        return outcomes

    async def read(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        def work() -> T:
            with Session(self.read_engine, expire_on_commit=False) as session:
                return fn(session, *args, **kwargs)

        return await self._in_thread(work)

    async def announce(self, tx: Tx) -> None:
        for event in tx.outgoing:
            await self.broker.publish(event)
        if tx.webhooks_enqueued:
            self.on_webhooks_enqueued()

    @staticmethod
    async def _in_thread(work: Callable[[], T]) -> T:
        try:
            return await anyio.to_thread.run_sync(work)
        except OperationalError as exc:
            log.warning("database unavailable: %s: %s", exc.orig.__class__.__name__, exc.orig)
            raise errors.Unavailable(message="The database is busy or unavailable; retry soon.") from None


# --- users and agents -------------------------------------------------------------------


def create_user(tx: Tx, workspace_id: str, body: UserIn) -> User:
    s = tx.session
    if body.external_id is not None:
        existing = s.exec(
            select(User).where(User.workspace_id == workspace_id, User.external_id == body.external_id)
        ).first()
        if existing:
            raise errors.Conflict(
                "A user with this external_id already exists.",
                code="duplicate_external_id",
                details={"user_id": existing.id},
            )
    now = utcnow()
    user = User(
        id=new_id("usr"),
        workspace_id=workspace_id,
        external_id=body.external_id,
        name=body.name,
        email=body.email,
        properties=body.properties,
        created_at=now,
        updated_at=now,
    )
    s.add(user)
    try:
        s.flush()
    except IntegrityError:
        raise errors.Conflict("A user with this external_id already exists.", code="duplicate_external_id") from None
    tx.emit(workspace_id, "user.created", {"user": user_json(user)}, realtime=False)
    return user


def update_user(tx: Tx, workspace_id: str, user_id: str, patch: UserPatch) -> User:
    user = get_user(tx.session, workspace_id, user_id)
    changes = patch.model_dump(exclude_unset=True)
    if changes.get("external_id") not in (None, user.external_id):
        clash = tx.session.exec(
            select(User).where(User.workspace_id == workspace_id, User.external_id == changes["external_id"])
        ).first()
        if clash:
            raise errors.Conflict("A user with this external_id already exists.", code="duplicate_external_id")
    for key, value in changes.items():
        if key == "properties":
            # ``null`` clears the properties (the column is never null: reads promise an object);
            # an object merges into them, within the same limit as a create.
            value = {} if value is None else {**(user.properties or {}), **value}
            if len(value) > 100:
                raise errors.Unprocessable(
                    "Invalid field: properties", details=[{"field": "properties", "message": "at most 100 properties"}]
                )
        setattr(user, key, value)
    user.updated_at = utcnow()
    tx.session.add(user)
    return user


def find_or_create_user(tx: Tx, workspace_id: str, external_id: str | None, **fields: Any) -> User:
    """Widget identity: the user with this external_id, or a new (possibly anonymous) one."""
    s = tx.session
    if external_id is not None:
        user = s.exec(select(User).where(User.workspace_id == workspace_id, User.external_id == external_id)).first()
        if user:
            changed = False
            for key, value in fields.items():
                if value and getattr(user, key) != value:
                    setattr(user, key, value)
                    changed = True
            if changed:
                user.updated_at = utcnow()
                s.add(user)
            return user
    return create_user(tx, workspace_id, UserIn(external_id=external_id, **{k: v for k, v in fields.items() if v}))


def get_user(s: Session, workspace_id: str, user_id: str) -> User:
    return get_in_workspace(s, User, user_id, workspace_id, "user")


def create_agent(tx: Tx, workspace_id: str, name: str, kind: str, avatar_url: str | None = None) -> Agent:
    agent = Agent(id=new_id("agt"), workspace_id=workspace_id, name=name, kind=kind, avatar_url=avatar_url)
    tx.session.add(agent)
    return agent


def default_bot(tx: Tx, workspace_id: str) -> Agent:
    s = tx.session
    bot = s.exec(select(Agent).where(Agent.workspace_id == workspace_id, col(Agent.is_default_bot).is_(True))).first()
    if bot is None:
        bot = Agent(id=new_id("agt"), workspace_id=workspace_id, name="Bot", kind="bot", is_default_bot=True)
        s.add(bot)
        s.flush()
    return bot


def get_agent(s: Session, workspace_id: str, agent_id: str) -> Agent:
    return get_in_workspace(s, Agent, agent_id, workspace_id, "agent")


# --- conversations ----------------------------------------------------------------------


def get_conversation(s: Session, workspace_id: str, conversation_id: str, *, lock: bool = False) -> Conversation:
    query = select(Conversation).where(Conversation.id == conversation_id)
    if lock:
        query = query.with_for_update().execution_options(populate_existing=True)
    conv = s.exec(query).first()
    if conv is None or conv.workspace_id != workspace_id:
        raise errors.NotFound("No such conversation.")
    return conv


def create_conversation(tx: Tx, workspace_id: str, body: ConversationIn) -> tuple[Conversation, list[Message]]:
    user = tx.session.get(User, body.user_id)
    if user is None or user.workspace_id != workspace_id:
        raise errors.Unprocessable("Invalid field: user_id", details=[{"field": "user_id", "message": "no such user"}])
    now = utcnow()
    conv = Conversation(id=new_id("cnv"), workspace_id=workspace_id, user_id=user.id, created_at=now, updated_at=now)
    tx.session.add(conv)
    tx.session.flush()
    tx.emit(workspace_id, "conversation.created", {"conversation": conversation_json(conv)})
    messages = [post_message(tx, workspace_id, conv.id, m, _conv=conv)[0] for m in body.messages]
    return conv, messages


def open_conversation_for(tx: Tx, workspace_id: str, user_id: str) -> Conversation:
    """The widget's conversation: the user's newest one, or a new one."""
    conv = tx.session.exec(
        select(Conversation)
        .where(Conversation.workspace_id == workspace_id, Conversation.user_id == user_id)
        .order_by(col(Conversation.created_at).desc())
    ).first()
    if conv is not None:
        return conv
    return create_conversation(tx, workspace_id, ConversationIn(user_id=user_id))[0]


def update_conversation(tx: Tx, workspace_id: str, conversation_id: str, patch: ConversationPatch) -> Conversation:
    conv = get_conversation(tx.session, workspace_id, conversation_id, lock=True)
    fields = patch.model_fields_set
    if "assignee_id" in fields and patch.assignee_id != conv.assignee_id:
        assignee = None
        if patch.assignee_id is not None:
            try:
                assignee = get_agent(tx.session, workspace_id, patch.assignee_id)
            except errors.NotFound:
                raise errors.Unprocessable(
                    "Invalid field: assignee_id",
                    details=[{"field": "assignee_id", "message": "no such agent"}],
                ) from None
        _assign(tx, conv, assignee)
    if patch.status is not None and patch.status != conv.status:
        _set_status(tx, conv, patch.status)
    return conv


def _assign(tx: Tx, conv: Conversation, assignee: Agent | None) -> None:
    conv.assignee_id = assignee.id if assignee else None
    conv.updated_at = utcnow()
    tx.session.add(conv)
    tx.session.flush()
    tx.emit(
        conv.workspace_id,
        "conversation.assigned",
        {"conversation": conversation_json(conv), "assignee": agent_json(assignee) if assignee else None},
    )


def _set_status(tx: Tx, conv: Conversation, status: str) -> None:
    conv.status = status
    conv.updated_at = utcnow()
    tx.session.add(conv)
    tx.session.flush()
    type_ = "conversation.resolved" if status == "resolved" else "conversation.reopened"
    tx.emit(conv.workspace_id, type_, {"conversation": conversation_json(conv)})


# --- messages ---------------------------------------------------------------------------


def post_message(
    tx: Tx,
    workspace_id: str,
    conversation_id: str,
    body: MessageIn,
    *,
    system_parts: list[dict[str, Any]] | None = None,
    _conv: Conversation | None = None,
) -> tuple[Message, bool]:
    """Store one message with the next ``seq``; returns ``(message, created)``.

    The conversation row is locked first, so ``seq`` is gap-free under concurrent writers
    and a repeated ``client_message_id`` finds the first message instead of a second.
    """
    s = tx.session
    conv = _conv or get_conversation(s, workspace_id, conversation_id, lock=True)
    if body.client_message_id:
        existing = s.exec(
            select(Message).where(
                Message.conversation_id == conv.id,
                Message.client_message_id == body.client_message_id,
            )
        ).first()
        if existing:
            return existing, False

    actor_type, actor_id = ("system", None) if system_parts is not None else _resolve_actor(tx, conv, body)
    reply_to = None
    if body.reply_to is not None:
        target = s.get(Message, body.reply_to.message_id)
        if target is None or target.conversation_id != conv.id:
            raise errors.Unprocessable(
                "Invalid field: reply_to.message_id",
                details=[{"field": "reply_to.message_id", "message": "no such message in this conversation"}],
            )
        reply_to = body.reply_to.model_dump()

    now = utcnow()
    conv.last_message_seq += 1
    conv.updated_at = now
    message = Message(
        id=new_id("msg"),
        workspace_id=workspace_id,
        conversation_id=conv.id,
        seq=conv.last_message_seq,
        actor_type=actor_type,
        actor_id=actor_id,
        message_parts=system_parts
        if system_parts is not None
        else [p.model_dump(exclude_none=True) for p in body.message_parts],
        reply_parts=[p.model_dump(exclude_none=True) for p in body.reply_parts],
        reply_to=reply_to,
        client_message_id=body.client_message_id,
        created_at=now,
    )
    s.add(conv)
    s.add(message)
    if actor_type == "user" and conv.status == "resolved":
        _set_status(tx, conv, "open")
    if actor_type == "agent" and conv.assignee_id != actor_id:
        human = s.get(Agent, actor_id)
        if conv.assignee_id is None or (assigned := s.get(Agent, conv.assignee_id)) is None or assigned.kind == "bot":
            _assign(tx, conv, human)
    s.flush()
    tx.emit(
        workspace_id,
        "message.created",
        {"message": message_json(message), "conversation": conversation_json(conv)},
    )
    return message, True


def _resolve_actor(tx: Tx, conv: Conversation, body: MessageIn) -> tuple[str, str | None]:
    actor = body.actor
    if actor.type == "user":
        if actor.id is not None and actor.id != conv.user_id:
            raise errors.Unprocessable(
                "Invalid field: actor.id",
                details=[{"field": "actor.id", "message": "a user message must come from the conversation's user"}],
            )
        return "user", conv.user_id
    if actor.id is None:
        if actor.type == "bot":
            return "bot", default_bot(tx, conv.workspace_id).id
        raise errors.Unprocessable(
            "Invalid field: actor.id", details=[{"field": "actor.id", "message": "an agent message names its agent"}]
        )
    agent = tx.session.get(Agent, actor.id)
    wanted = "bot" if actor.type == "bot" else "human"
    if agent is None or agent.workspace_id != conv.workspace_id or agent.kind != wanted:
        raise errors.Unprocessable(
            "Invalid field: actor.id",
            details=[{"field": "actor.id", "message": f"no such {wanted} agent in this workspace"}],
        )
    return actor.type, agent.id


def add_system_event(tx: Tx, workspace_id: str, conversation_id: str, text: str) -> Message:
    """A line in the transcript such as "Web view closed": never any customer data."""
    empty = MessageIn.model_construct(
        actor=None, message_parts=[], reply_parts=[], reply_to=None, client_message_id=None
    )
    message, _ = post_message(tx, workspace_id, conversation_id, empty, system_parts=[{"text": {"content": text}}])
    return message


def mark_read(tx: Tx, workspace_id: str, conversation_id: str, reader: str, seq: int) -> Conversation:
    conv = get_conversation(tx.session, workspace_id, conversation_id, lock=True)
    seq = max(0, min(seq, conv.last_message_seq))
    attr = "user_read_seq" if reader == "user" else "agent_read_seq"
    if seq > getattr(conv, attr):
        setattr(conv, attr, seq)
        tx.session.add(conv)
        tx.publish(
            {
                "type": "conversation.read",
                "workspace_id": workspace_id,
                "data": {"conversation_id": conv.id, "reader": reader, "seq": seq},
            }
        )
    return conv

"""Reads behind the Inbox: conversation lists and transcripts, always within one workspace."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, text
from sqlmodel import Session, col, select

from app import conversations, people
from app.console import timeline
from app.store import search
from app.store import sql as rows
from app.store.dialect import dialect_of
from app.store.tables import Agent, Conversation, Message, User, WebviewOpening

VIEWS = {"open": "Open", "mine": "Mine", "waiting": "Waiting", "resolved": "Resolved"}
LIST_LIMIT = 50  # a page of the list ("Load more" asks for the next)
TRANSCRIPT_LIMIT = 500


def customer_name(user: User | None) -> str:
    if user is None:
        return "Customer"
    return user.name or user.email or user.external_id or f"Visitor {user.id[-4:].upper()}"


def preview(message: Message | None) -> str:
    """One line describing a message, as the list shows it."""
    if message is None:
        return "No messages yet"
    for part in message.message_parts:
        if "text" in part:
            return str(part["text"].get("content", ""))[:140]
        if "image" in part:
            return "Image"
        if "carousel" in part:
            return "Carousel"
        if "web_view" in part:
            return f"Web view: {part['web_view'].get('label', '')}"
        if "url_button" in part:
            return f"Link: {part['url_button'].get('label', '')}"
    if message.reply_parts:
        return "Choices"
    return "Message"


@dataclass(frozen=True)
class Filters:
    """The Inbox's filters beside its tabs: who handles it (bot or human), the assignee
    ("me", "none" or an agent id) and a tag."""

    handled_by: str = ""
    assignee: str = ""
    tag: str = ""

    @classmethod
    def of(cls, handled_by: str | None, assignee: str | None, tag: str | None) -> Filters:
        tag = (tag or "").strip().lower()[:50]
        return cls(
            handled_by if handled_by in ("bot", "human") else "",
            (assignee or "").strip()[:64],
            tag if all(ch.isascii() and (ch.isalnum() or ch in "_-:") for ch in tag) else "",
        )

    def pairs(self) -> list[tuple[str, str]]:
        return [("handled_by", self.handled_by), ("assignee", self.assignee), ("tag", self.tag)]


@dataclass
class ConversationRow:
    conversation: Conversation
    customer: str
    preview: str
    last_actor: str
    assignee: str | None
    unread: bool
    note: bool = False  # the newest message is a private note


def list_conversations(
    s: Session,
    workspace_id: str,
    view: str,
    agent_id: str | None,
    limit: int = LIST_LIMIT,
    *,
    words: list[str] | None = None,
    before: tuple[datetime, str] | None = None,
    filters: Filters | None = None,
) -> list[ConversationRow]:
    """Newest activity first, ``limit`` of them from ``before`` (the last row's ``(updated_at,
    id)``) on. "mine" is open conversations assigned to this agent; "waiting" the open ones
    handed to humans that nobody has yet. A search (``words``) looks through every
    conversation, whatever the view (``app/store/search.py``)."""
    t = Conversation
    query = select(t).where(t.workspace_id == workspace_id)
    if words:
        query = query.where(search.conversation_match(dialect_of(s.connection()), workspace_id, words))
    else:
        query = query.where(t.status == ("resolved" if view == "resolved" else "open"))
        if view == "mine":
            query = query.where(t.assignee_id == (agent_id or ""))
        elif view == "waiting":
            query = query.where(t.handled_by == "human", col(t.assignee_id).is_(None))
    if filters is not None:
        if filters.handled_by:
            query = query.where(t.handled_by == filters.handled_by)
        if filters.assignee == "none":
            query = query.where(col(t.assignee_id).is_(None))
        elif filters.assignee:
            query = query.where(t.assignee_id == (agent_id or "" if filters.assignee == "me" else filters.assignee))
        if filters.tag:
            has_tag = dialect_of(s.connection()).json_array_has("conversation.tags", "filter_tag")
            query = query.where(text(has_tag).bindparams(filter_tag=filters.tag))
    if before is not None:
        at, last_id = before
        query = query.where(
            (col(t.updated_at) < at) | ((col(t.updated_at) == at) & (col(t.id) < last_id))
        )
    convs = list(s.exec(query.order_by(col(t.updated_at).desc(), col(t.id).desc()).limit(limit)))
    if not convs:
        return []
    users = {u.id: u for u in s.exec(select(User).where(col(User.id).in_({c.user_id for c in convs})))}
    agents = agents_by_id(s, workspace_id)
    # One query for every conversation's newest message, not one per row.
    newest = [
        and_(col(Message.conversation_id) == c.id, col(Message.seq) == c.last_message_seq)
        for c in convs
        if c.last_message_seq
    ]
    last: dict[str, Message] = {}
    if newest:
        last = {m.conversation_id: m for m in s.exec(select(Message).where(or_(*newest)))}
    rows = []
    for c in convs:
        message = last.get(c.id)
        assignee = agents.get(c.assignee_id or "")
        rows.append(
            ConversationRow(
                conversation=c,
                customer=customer_name(users.get(c.user_id)),
                preview=preview(message),
                last_actor=message.actor_type if message else "",
                assignee=assignee.name if assignee else None,
                unread=c.last_message_seq > c.agent_read_seq and (message is None or message.actor_type == "user"),
                note=bool(message and message.private),
            )
        )
    return rows


def agents_by_id(s: Session, workspace_id: str) -> dict[str, Agent]:
    return {a.id: a for a in s.exec(select(Agent).where(Agent.workspace_id == workspace_id))}


@dataclass
class Transcript:
    conversation: rows.ConversationRow
    user: User
    customer: str
    agents: dict[str, Agent]
    messages: list[Message]
    chosen: dict[str, str] = field(default_factory=dict)  # message id -> payload the customer picked
    # message id -> the times its web views were opened (and how they closed); never their data
    webviews: dict[str, list[WebviewOpening]] = field(default_factory=dict)
    # assignments, hand-overs, resolves and reopens, and "<name> joined" (app/console/timeline.py)
    lines: list[timeline.Line] = field(default_factory=list)
    joins: dict[str, timeline.Line] = field(default_factory=dict)
    # system rows that repeat what a web view's own line says ("Web view closed")
    folded: set[str] = field(default_factory=set)

    @property
    def items(self) -> list[Message | timeline.Line]:
        """The messages with the lines between them, in the order they happened."""
        return timeline.merge(self.messages, self.lines, self.joins)

    @property
    def humans(self) -> list[Agent]:
        return sorted((a for a in self.agents.values() if a.kind == "human"), key=lambda a: a.name.lower())

    @property
    def assignee(self) -> Agent | None:
        return self.agents.get(self.conversation.assignee_id or "")

    @property
    def last_seq(self) -> int:
        return self.messages[-1].seq if self.messages else 0


def load_transcript(
    s: Session, workspace_id: str, conversation_id: str, after: int = 0, *, lines: bool | None = None
) -> Transcript:
    """The conversation (404 outside this workspace) and its messages after ``after``; with
    ``lines`` (the default for a whole transcript, ``after=0``) the event lines between them."""
    conv = conversations.get_conversation(s, workspace_id, conversation_id)
    user = people.get_user(s, workspace_id, conv.user_id)
    query = select(Message).where(Message.conversation_id == conv.id, col(Message.seq) > after)
    # The newest TRANSCRIPT_LIMIT messages, shown oldest first.
    messages = list(s.exec(query.order_by(col(Message.seq).desc()).limit(TRANSCRIPT_LIMIT)))[::-1]
    chosen = {
        str(m.reply_to["message_id"]): str(m.reply_to.get("payload", ""))
        for m in messages
        if m.reply_to and m.reply_to.get("message_id")
    }
    webviews: dict[str, list[WebviewOpening]] = {}
    if messages:
        openings = s.exec(
            select(WebviewOpening)
            .where(
                WebviewOpening.conversation_id == conv.id,
                col(WebviewOpening.message_id).in_([m.id for m in messages]),
            )
            .order_by(col(WebviewOpening.opened_at))
        )
        for opening in openings:
            webviews.setdefault(opening.message_id, []).append(opening)
    agents = agents_by_id(s, workspace_id)
    transcript = Transcript(conv, user, customer_name(user), agents, messages, chosen, webviews)
    if not messages:
        return transcript
    first = messages[0]
    system = [m for m in messages if m.actor_type == "system"]
    if system:
        closed = s.exec(
            select(WebviewOpening.closed_at).where(
                WebviewOpening.conversation_id == conv.id,
                col(WebviewOpening.closed_at) >= first.created_at - timedelta(seconds=2),
            )
        )
        transcript.folded = timeline.closes_of([c for c in closed if c is not None], system)
    spoke_before: set[str] = set()
    if first.seq > 1:
        earlier = select(Message.actor_id).where(
            Message.conversation_id == conv.id, Message.actor_type == "agent", col(Message.seq) < first.seq,
            Message.private == False,  # noqa: E712 (SQL)
        ).distinct()
        spoke_before = {a for a in s.exec(earlier) if a}
    transcript.joins = timeline.joined(messages, agents, spoke_before)
    if lines if lines is not None else after == 0:
        since = first.created_at if first.seq > 1 else conv.created_at
        transcript.lines = timeline.event_lines(s, workspace_id, conv.id, since, conv.updated_at, agents)
    return transcript


def actor_label(message: Message, transcript: Transcript, me_agent_id: str | None) -> dict[str, Any]:
    """Who said it, for the bubble's caption and side."""
    if message.actor_type == "user":
        return {"name": transcript.customer, "side": "customer", "kind": "Customer"}
    if message.actor_type == "system":
        return {"name": "", "side": "system", "kind": "System"}
    agent = transcript.agents.get(message.actor_id or "")
    name = agent.name if agent else ("Bot" if message.actor_type == "bot" else "Agent")
    if message.actor_type == "agent" and message.actor_id and message.actor_id == me_agent_id:
        name = f"{name} (you)"
    return {"name": name, "side": "team", "kind": "Bot" if message.actor_type == "bot" else "Agent"}


def notice(s: Session, workspace_id: str, conversation_id: str) -> dict[str, Any]:
    """A notification's title and body: the customer's name, their newest message's text."""
    conv = conversations.get_conversation(s, workspace_id, conversation_id)
    user = s.get(User, conv.user_id)
    query = select(Message).where(Message.conversation_id == conv.id, Message.actor_type == "user")
    last = s.exec(query.order_by(col(Message.seq).desc()).limit(1)).first()
    return {"conversation_id": conv.id, "customer": customer_name(user), "text": preview(last) if last else ""}

"""The Inbox's customer panel: who the customer is, where they chatted from, their earlier
conversations and their properties, read within one workspace."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import and_, or_
from sqlmodel import Session, col, func, select

from app.console.conversations import preview
from app.store.tables import Conversation, Message, User

EARLIER_SHOWN = 5


@dataclass
class Earlier:
    id: str
    status: str
    updated_at: Any
    preview: str


@dataclass
class Panel:
    user: User
    page: str | None  # the page the widget was last open on, when it is a web address
    device: str | None = None  # the browser and system the widget last ran on, when known
    earlier: list[Earlier] = field(default_factory=list)
    earlier_total: int = 0
    properties: list[tuple[str, str]] = field(default_factory=list)  # the customer's
    conversation_properties: list[tuple[str, str]] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)


def _shown(value: Any) -> str:
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def _pairs(properties: dict[str, Any]) -> list[tuple[str, str]]:
    return [(str(k), _shown(v)[:500]) for k, v in sorted(properties.items())]


def load_panel(s: Session, user: User, conversation: Any) -> Panel:
    """``conversation`` is the open one (already read within the workspace, as ``user``)."""
    others = (
        select(Conversation)
        .where(Conversation.workspace_id == user.workspace_id, Conversation.user_id == user.id)
        .where(Conversation.id != conversation.id)
    )
    total = s.exec(select(func.count()).select_from(others.subquery())).one()
    shown = list(s.exec(others.order_by(col(Conversation.updated_at).desc()).limit(EARLIER_SHOWN)))
    last: dict[str, Message] = {}
    newest = [
        and_(col(Message.conversation_id) == c.id, col(Message.seq) == c.last_message_seq)
        for c in shown
        if c.last_message_seq
    ]
    if newest:
        last = {m.conversation_id: m for m in s.exec(select(Message).where(or_(*newest)))}
    page = user.widget_page if (user.widget_page or "").startswith(("https://", "http://")) else None
    return Panel(
        user=user,
        page=page,
        device=user.widget_device,
        earlier=[Earlier(c.id, c.status, c.updated_at, preview(last.get(c.id))) for c in shown],
        earlier_total=int(total),
        properties=_pairs(user.properties or {}),
        conversation_properties=_pairs(conversation.properties or {}),
        tags=list(conversation.tags or []),
    )

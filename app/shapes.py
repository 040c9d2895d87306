"""Table rows to the public JSON shapes (``schemas.*Out``), as the API and webhooks show them."""

from __future__ import annotations

from typing import Any

from app import availability
from app.ids import isoformat
from app.store.sql import AgentRow, ConversationRow, MessageRow
from app.store.tables import Agent, ApiToken, Conversation, Message, User

# The hot paths carry plain rows (``rows``), the rest ORM instances: both serialize alike.
MessageLike = Message | MessageRow
ConversationLike = Conversation | ConversationRow


def message_json(m: MessageLike) -> dict[str, Any]:
    actor: dict[str, Any] = {"type": m.actor_type}
    if m.actor_id is not None:
        actor["id"] = m.actor_id
    return {
        "id": m.id,
        "conversation_id": m.conversation_id,
        "seq": m.seq,
        "actor": actor,
        "message_parts": m.message_parts,
        "reply_parts": m.reply_parts,
        "reply_to": m.reply_to,
        "client_message_id": m.client_message_id,
        "private": bool(m.private),
        "created_at": isoformat(m.created_at),
    }


def conversation_json(c: ConversationLike) -> dict[str, Any]:
    return {
        "id": c.id,
        "user_id": c.user_id,
        "status": c.status,
        "assignee_id": c.assignee_id,
        "tags": c.tags,
        "properties": c.properties,
        "assignee_kind": c.assignee_kind,
        "handled_by": c.handled_by,
        "rating": rating_json(c),
        "created_at": isoformat(c.created_at),
        "updated_at": isoformat(c.updated_at),
        "last_message_seq": c.last_message_seq,
    }


def rating_json(c: ConversationLike) -> dict[str, Any] | None:
    if c.rating_score is None or c.rated_at is None:
        return None
    return {"score": c.rating_score, "comment": c.rating_comment, "rated_at": isoformat(c.rated_at)}


def user_json(u: User) -> dict[str, Any]:
    return {
        "id": u.id,
        "external_id": u.external_id,
        "name": u.name,
        "email": u.email,
        "properties": u.properties,
        "created_at": isoformat(u.created_at),
        "updated_at": isoformat(u.updated_at),
    }


def agent_json(a: Agent | AgentRow) -> dict[str, Any]:
    return {
        "id": a.id,
        "name": a.name,
        "kind": a.kind,
        "avatar_url": a.avatar_url,
        "status": availability.status_of(a),
        "is_default_bot": a.is_default_bot,
        "created_at": isoformat(a.created_at),
    }


def token_json(t: ApiToken) -> dict[str, Any]:
    return {
        "id": t.id,
        "name": t.name,
        "prefix": t.prefix,
        "scopes": t.scopes,
        "created_at": isoformat(t.created_at),
        "last_used_at": isoformat(t.last_used_at),
        "revoked_at": isoformat(t.revoked_at),
    }

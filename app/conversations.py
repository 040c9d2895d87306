"""Conversations and messages: every write to them, each inside the caller's ``Tx``.

Routes (REST, widget socket, console) call these inside ``Runner.write``; delivery (sockets,
webhooks) only consumes the events they record."""

from __future__ import annotations

from typing import Any

import orjson

from app import availability, errors, events
from app.api.schemas import ConversationIn, ConversationPatch, HandoverIn, MessageIn
from app.files import records as files
from app.ids import new_id, utcnow
from app.people import default_bot_id
from app.shapes import agent_json, conversation_json, message_json
from app.store import search
from app.store import sql as rows
from app.store.runner import Tx
from app.store.sql import ConversationRow, MessageRow
from app.store.tables import Agent, Workspace

# --- conversations ----------------------------------------------------------------------
# Conversations and messages are the hot path: Core statements on plain rows (``rows``).

get_conversation = rows.get_conversation


def _save(tx: Tx, conv: ConversationRow, **changes: Any) -> None:
    """Write changed columns of a conversation whose row this transaction has locked. A change
    that moves ``updated_at`` also takes this transaction's place in the change order."""
    if "updated_at" in changes:
        changes["sync_seq"] = rows.next_sync_seq(tx.db)
    for key, value in changes.items():
        setattr(conv, key, value)
    rows.update_conversation(tx.db, conv.id, changes)


def create_conversation(tx: Tx, workspace_id: str, body: ConversationIn) -> tuple[ConversationRow, list[MessageRow]]:
    if rows.user_workspace(tx.db, body.user_id) != workspace_id:
        raise errors.Unprocessable("Invalid field: user_id", details=[{"field": "user_id", "message": "no such user"}])
    now = utcnow()
    conv = ConversationRow(
        id=new_id("cnv"),
        workspace_id=workspace_id,
        user_id=body.user_id,
        status="open",
        assignee_id=None,
        last_message_seq=0,
        user_read_seq=0,
        agent_read_seq=0,
        tags=[],
        properties={},
        created_at=now,
        updated_at=now,
        sync_seq=rows.next_sync_seq(tx.db),
        assignee_kind=None,
        handled_by="bot",
    )
    rows.insert_conversation(tx.db, conv)
    tx.emit(workspace_id, events.CONVERSATION_CREATED, {"conversation": conversation_json(conv)})
    messages = [post_message(tx, workspace_id, conv.id, m, _conv=conv)[0] for m in body.messages]
    return conv, messages


def open_conversation_for(tx: Tx, workspace_id: str, user_id: str) -> ConversationRow:
    """The widget's conversation: the user's newest one, or a new one."""
    conv = rows.newest_conversation(tx.db, workspace_id, user_id)
    if conv is not None:
        return conv
    return create_conversation(tx, workspace_id, ConversationIn(user_id=user_id))[0]


def update_conversation(tx: Tx, workspace_id: str, conversation_id: str, patch: ConversationPatch) -> ConversationRow:
    """``PATCH``: assigning a human gives them control, assigning a bot gives it back to the bot
    (``conversation.handover``, reason ``assigned``); resolving gives a human's control back to
    the bot (reason ``resolved``)."""
    conv = get_conversation(tx.db, workspace_id, conversation_id, lock=True)
    fields = patch.model_fields_set
    if "assignee_id" in fields and patch.assignee_id != conv.assignee_id:
        assignee = None
        if patch.assignee_id is not None:
            assignee = _agent_in(tx, workspace_id, patch.assignee_id, "assignee_id")
        if assignee is not None and assignee.kind != conv.handled_by:
            _set_control(tx, conv, assignee.kind, "assigned", assignee)
        else:
            _assign(tx, conv, assignee)
    if patch.status is not None and patch.status != conv.status:
        _set_status(tx, conv, patch.status)
    attributes: dict[str, Any] = {}
    if patch.tags is not None and patch.tags != conv.tags:
        attributes["tags"] = patch.tags
    if "properties" in fields:
        # As a user's: ``null`` clears them, an object merges into them (a key set to null stays null).
        merged = {} if patch.properties is None else {**conv.properties, **patch.properties}
        if len(merged) > 100:
            raise errors.Unprocessable(
                "Invalid field: properties", details=[{"field": "properties", "message": "at most 100 properties"}]
            )
        if merged != conv.properties:
            attributes["properties"] = merged
    if attributes:
        _save(tx, conv, **attributes, updated_at=utcnow())
        tx.emit(workspace_id, events.CONVERSATION_UPDATED, {"conversation": conversation_json(conv)})
    return conv


def hand_over(tx: Tx, workspace_id: str, conversation_id: str, body: HandoverIn) -> ConversationRow:
    """``POST …/handover`` (SPEC §11). To a human: the named one, else the human who has it
    already, else the available human with the fewest open conversations, else nobody (it
    waits). To the bot: the human assignee is cleared."""
    conv = get_conversation(tx.db, workspace_id, conversation_id, lock=True)
    reason = body.reason or "api"
    if body.to == "bot":
        _set_control(tx, conv, "bot", reason, None)
        return conv
    if body.agent_id is not None:
        agent: Any = _agent_in(tx, workspace_id, body.agent_id, "agent_id", kind="human")
    elif conv.assignee_kind == "human":
        agent = rows.agent(tx.db, conv.assignee_id) if conv.assignee_id else None
    else:
        agent = availability.pick_agent(tx, workspace_id)
    _set_control(tx, conv, "human", reason, agent)
    return conv


def hand_over_if_bot_unavailable(tx: Tx, conversation_id: str, event_id: str) -> bool:
    """After a failed first delivery of a customer's message (``event_id``): when every enabled
    endpoint that was sent it has failed its first attempt and none has succeeded, a
    bot-handled conversation goes to a human (reason ``bot_unavailable``), if the workspace has
    one. Returns whether it did. Run by the webhook dispatcher in the conversation's lane."""
    h = tx.db
    found = h.run("SELECT workspace_id FROM conversation WHERE id = ?", (conversation_id,))
    if not found:
        return False
    workspace_id = found[0][0]
    conv = get_conversation(h, workspace_id, conversation_id, lock=True)
    if conv.handled_by != "bot" or conv.status != "open":
        return False
    deliveries = h.run(_DELIVERIES_OF_EVENT, (event_id, True))
    if not deliveries or any(status == "succeeded" or attempts == 0 for status, attempts in deliveries):
        return False
    if not availability.has_human(tx, workspace_id):
        return False
    _set_control(tx, conv, "human", "bot_unavailable", availability.pick_agent(tx, workspace_id))
    return True


def customer_message_to_a_bot(webhook_body: bytes) -> str | None:
    """The conversation id, when a stored webhook body is a customer's ``message.created`` in a
    bot-handled conversation (what ``hand_over_if_bot_unavailable`` is for); else None."""
    if events.MESSAGE_CREATED.encode() not in webhook_body[:64]:
        return None
    try:
        event = orjson.loads(webhook_body)
        data = event["data"]
        if event["type"] != events.MESSAGE_CREATED or data["message"]["actor"]["type"] != "user":
            return None
        conversation = data["conversation"]
        return str(conversation["id"]) if conversation.get("handled_by", "bot") == "bot" else None
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None


_DELIVERIES_OF_EVENT = (
    "SELECT d.status, d.attempts FROM webhook_delivery d JOIN webhook_endpoint e ON e.id = d.endpoint_id"
    " WHERE d.event_id = ? AND e.enabled = ?"
)


def _agent_in(tx: Tx, workspace_id: str, agent_id: str, field: str, kind: str | None = None) -> rows.AgentRow:
    agent = rows.agent(tx.db, agent_id)
    if agent is None or agent.workspace_id != workspace_id or (kind is not None and agent.kind != kind):
        wanted = f"no such {kind} agent" if kind else "no such agent"
        raise errors.Unprocessable(f"Invalid field: {field}", details=[{"field": field, "message": wanted}])
    return agent


def _set_control(tx: Tx, conv: ConversationRow, to: str, reason: str, agent: Any, *, keep: bool = False) -> None:
    """Give control to ``to`` ("bot" or "human"). To a human: assign ``agent`` (None keeps the
    conversation waiting, unassigned unless a human already has it); to the bot: clear a human
    assignee (``keep``: not when resolving, where the assignee stays as the record of who
    handled it, until the conversation reopens). ``conversation.assigned`` fires for a new
    assignee, and ``conversation.handover`` (``{conversation, from, to, reason}``) when control
    changes hands."""
    before = conv.handled_by
    if before != to:
        _save(tx, conv, handled_by=to, updated_at=utcnow())
    if agent is not None and agent.id != conv.assignee_id:
        _assign(tx, conv, agent)
    elif conv.assignee_kind is not None and conv.assignee_kind != to and (to == "bot" or agent is None) and not keep:
        _assign(tx, conv, None)  # a bot does not keep a conversation humans have, nor a human the bot's
    if before != to:
        tx.emit(
            conv.workspace_id,
            events.CONVERSATION_HANDOVER,
            {"conversation": conversation_json(conv), "from": before, "to": to, "reason": reason},
        )


def _assign(tx: Tx, conv: ConversationRow, assignee: Any) -> None:
    """``assignee``: an agent row (or ORM agent), or None to unassign."""
    _save(
        tx, conv,
        assignee_id=assignee.id if assignee else None,
        assignee_kind=assignee.kind if assignee else None,
        updated_at=utcnow(),
    )
    tx.emit(
        conv.workspace_id,
        events.CONVERSATION_ASSIGNED,
        {"conversation": conversation_json(conv), "assignee": agent_json(assignee) if assignee else None},
    )


def _set_status(tx: Tx, conv: ConversationRow, status: str) -> None:
    now = utcnow()
    _save(tx, conv, status=status, updated_at=now, resolved_at=now if status == "resolved" else None)
    if status == "resolved" and conv.handled_by == "human":
        _set_control(tx, conv, "bot", "resolved", None, keep=True)
    elif status == "open" and conv.handled_by == "bot" and conv.assignee_kind == "human":
        _assign(tx, conv, None)  # reopened with the bot in control: the last human lets go
    type_ = events.CONVERSATION_RESOLVED if status == "resolved" else events.CONVERSATION_REOPENED
    tx.emit(conv.workspace_id, type_, {"conversation": conversation_json(conv)})


def rate_conversation(
    tx: Tx, workspace_id: str, conversation_id: str, score: int, comment: str | None
) -> ConversationRow:
    """The customer's rating of a resolved conversation (SPEC §12); a new one replaces it."""
    conv = get_conversation(tx.db, workspace_id, conversation_id, lock=True)
    if conv.status != "resolved":
        raise errors.Conflict("Only a resolved conversation can be rated.", code="not_resolved")
    workspace = tx.session.get(Workspace, workspace_id)
    if workspace is None or not workspace.ratings_enabled:
        raise errors.Forbidden("Ratings are turned off for this workspace.", code="ratings_disabled")
    now = utcnow()
    _save(tx, conv, rating_score=score, rating_comment=comment, rated_at=now, updated_at=now)
    tx.emit(workspace_id, events.CONVERSATION_RATED, {"conversation": conversation_json(conv)})
    return conv


# --- messages ---------------------------------------------------------------------------


def post_message(
    tx: Tx,
    workspace_id: str,
    conversation_id: str,
    body: MessageIn,
    *,
    system_parts: list[dict[str, Any]] | None = None,
    customer_id: str | None = None,
    _conv: ConversationRow | None = None,
) -> tuple[MessageRow, bool]:
    """Store one message with the next ``seq``; returns ``(message, created)``.

    The conversation row is locked first, so ``seq`` is gap-free under concurrent writers
    and a repeated ``client_message_id`` finds the first message instead of a second.
    Without a ``client_message_id`` the lock and the ``seq`` bump are one statement
    (``UPDATE … RETURNING``); a refusal after it rolls back with the write's savepoint.
    A user's message reopens a resolved conversation; a human agent's message (not a private
    note) takes control (``conversation.handover``, reason ``agent_replied``) and assigns the
    conversation to them unless another human has it. While a human has control, a bot's
    message is refused ``409 handled_by_human`` (a private note excepted). ``customer_id`` (the widget) limits
    the files a message may name to that customer's own uploads.
    """
    now = utcnow()
    if _conv is None and not body.client_message_id:
        conv = rows.bump_conversation(tx.db, workspace_id, conversation_id, now)
        now = conv.updated_at  # the bump's time (a writer batch may have taken it ahead)
        seq = conv.last_message_seq
    else:
        conv = _conv or get_conversation(tx.db, workspace_id, conversation_id, lock=True)
        if body.client_message_id:
            existing = rows.message_by_client_id(tx.db, conv.id, body.client_message_id)
            if existing is not None:
                return existing, False
        seq = conv.last_message_seq + 1

    if system_parts is None and body.actor.type == "bot" and conv.handled_by == "human" and not body.private:
        raise errors.Conflict(
            "A human agent has this conversation: the bot may add private notes, or hand it back first "
            "(POST …/handover with to: bot).",
            code="handled_by_human",
        )
    actor_type: str
    actor_id: str | None
    agent: rows.AgentRow | None
    if system_parts is not None:
        actor_type, actor_id, agent = "system", None, None
    else:
        actor_type, actor_id, agent = _resolve_actor(tx, conv, body)
    reply_to = None
    if body.reply_to is not None:
        if rows.message_conversation_id(tx.db, body.reply_to.message_id) != conv.id:
            raise errors.Unprocessable(
                "Invalid field: reply_to.message_id",
                details=[{"field": "reply_to.message_id", "message": "no such message in this conversation"}],
            )
        reply_to = body.reply_to.model_dump()

    parts = system_parts if system_parts is not None else [p.model_dump(exclude_none=True) for p in body.message_parts]
    if system_parts is None and files.names_files(parts):
        # Each file_id is checked and its name, type and size stored beside it; the signed
        # url is added whenever the message leaves the server (app/files/links.py).
        parts = files.attach_files(tx.session, workspace_id, conv, parts, customer_id=customer_id)
    message = MessageRow(
        id=new_id("msg"),
        workspace_id=workspace_id,
        conversation_id=conv.id,
        seq=seq,
        actor_type=actor_type,
        actor_id=actor_id,
        message_parts=parts,
        reply_parts=[p.model_dump(exclude_none=True) for p in body.reply_parts],
        reply_to=reply_to,
        client_message_id=body.client_message_id,
        created_at=now,
        private=body.private if system_parts is None else False,
    )
    rows.insert_message(tx.db, message)
    if system_parts is None:
        search.index_message(tx.db, workspace_id, conv.user_id, conv.id, message.id, parts)
    if conv.last_message_seq != seq:
        _save(tx, conv, last_message_seq=seq, updated_at=now)
    if actor_type == "user" and conv.status == "resolved":
        _set_status(tx, conv, "open")
    if actor_type == "agent" and not message.private:
        # A human's reply takes control, and the conversation unless another human has it.
        if conv.handled_by != "human":
            _set_control(tx, conv, "human", "agent_replied", agent if conv.assignee_kind != "human" else None)
        elif conv.assignee_kind != "human":
            _assign(tx, conv, agent)
    tx.emit(
        workspace_id,
        events.MESSAGE_CREATED,
        {"message": message_json(message), "conversation": conversation_json(conv)},
    )
    return message, True


def _resolve_actor(tx: Tx, conv: ConversationRow, body: MessageIn) -> tuple[str, str | None, rows.AgentRow | None]:
    """``(actor type, actor id, the agent's row where it was read)``."""
    actor = body.actor
    if actor.type == "user":
        if actor.id is not None and actor.id != conv.user_id:
            raise errors.Unprocessable(
                "Invalid field: actor.id",
                details=[{"field": "actor.id", "message": "a user message must come from the conversation's user"}],
            )
        return "user", conv.user_id, None
    if actor.id is None:
        if actor.type == "bot":
            return "bot", default_bot_id(tx, conv.workspace_id), None
        raise errors.Unprocessable(
            "Invalid field: actor.id", details=[{"field": "actor.id", "message": "an agent message names its agent"}]
        )
    agent = rows.agent(tx.db, actor.id)
    wanted = "bot" if actor.type == "bot" else "human"
    if agent is None or agent.workspace_id != conv.workspace_id or agent.kind != wanted:
        raise errors.Unprocessable(
            "Invalid field: actor.id",
            details=[{"field": "actor.id", "message": f"no such {wanted} agent in this workspace"}],
        )
    return actor.type, agent.id, agent


def add_system_event(tx: Tx, workspace_id: str, conversation_id: str, text: str) -> MessageRow:
    """A line in the transcript such as "Web view closed": never any customer data."""
    empty = MessageIn.model_construct(
        actor=None, message_parts=[], reply_parts=[], reply_to=None, client_message_id=None
    )
    message, _ = post_message(tx, workspace_id, conversation_id, empty, system_parts=[{"text": {"content": text}}])
    return message


def mark_read(tx: Tx, workspace_id: str, conversation_id: str, reader: str, seq: int) -> ConversationRow:
    conv = get_conversation(tx.db, workspace_id, conversation_id, lock=True)
    seq = max(0, min(seq, conv.last_message_seq))
    attr = "user_read_seq" if reader == "user" else "agent_read_seq"
    if seq > getattr(conv, attr):
        _save(tx, conv, **{attr: seq})
        tx.publish(
            {
                "type": events.CONVERSATION_READ,
                "workspace_id": workspace_id,
                "data": {"conversation_id": conv.id, "reader": reader, "seq": seq},
            }
        )
    return conv


# --- typing -----------------------------------------------------------------------------


def typing_event(
    workspace_id: str,
    conversation_id: str,
    actor_type: str,
    on: bool,
    *,
    agent: Agent | None = None,
    user_id: str | None = None,
) -> dict[str, Any]:
    """The typing indicator, the same event whoever types: the REST endpoint (a bot, an agent
    or the customer), the widget socket (the customer) and the console (the signed-in agent).

    Live only (``events.CONVERSATION_TYPING``): published, never stored, never a webhook. The
    actor is ``{type}`` plus the ``agent``'s ``id`` and ``name``, or the customer's ``user_id``
    where the caller knows it; the caller has checked the conversation is the workspace's."""
    actor: dict[str, Any] = {"type": actor_type}
    if agent is not None:
        actor.update(id=agent.id, name=agent.name)
    elif user_id is not None:
        actor["id"] = user_id
    return {
        "type": events.CONVERSATION_TYPING,
        "workspace_id": workspace_id,
        "data": {"conversation_id": conversation_id, "actor": actor, "on": on},
    }

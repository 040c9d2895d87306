"""``/api/v1/conversations``: conversations, their messages, and typing indicators."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field
from sqlalchemy import select, text

from app import conversations, errors, people
from app.api.changes import ChangesQuery, change_page
from app.api.framework import Call, Endpoint, Result
from app.api.pagination import ListQuery, decode_cursor, page
from app.api.schemas import (
    CarouselPart,
    ConversationIn,
    ConversationOut,
    ConversationPatch,
    ConversationTag,
    HandoverIn,
    MessageIn,
    MessageOut,
    TypingIn,
    WebViewPart,
)
from app.files.links import links_for
from app.settings import Settings
from app.shapes import conversation_json, message_json
from app.store import search
from app.store import sql as rows
from app.webviews import forms as webview_forms


class ConversationCreated(ConversationOut):
    messages: list[MessageOut] = Field(default_factory=list)


class ConversationQuery(ListQuery, ChangesQuery):
    status: Literal["open", "resolved"] | None = None
    user_id: str | None = Field(default=None, max_length=64)
    assignee_id: str | None = Field(default=None, max_length=64)
    tag: ConversationTag | None = Field(default=None, description="Only conversations with this tag.")
    handled_by: Literal["bot", "human"] | None = None
    q: str | None = Field(
        default=None, min_length=1, max_length=500,
        description="Full-text search: conversations with a message containing every word (each as a prefix), "
        "or whose customer's name or email does.",
    )


class MessageQuery(ListQuery):
    after: int | None = Field(default=None, ge=0, description="Only messages with a greater seq.")


_FORM_PARTS = (WebViewPart, CarouselPart)  # a tuple: isinstance with a union costs more


def _parts(message: MessageIn) -> list[dict[str, Any]]:
    """The message's parts as dicts, or none when no part can hold a hosted form (most
    messages: then neither check costs a dump, on the event loop or in the writer)."""
    if not any(isinstance(p, _FORM_PARTS) for p in message.message_parts):
        return []
    return [p.model_dump(exclude_none=True) for p in message.message_parts]


def _check_form_urls(messages: list[MessageIn], settings: Settings, prefix: str = "") -> None:
    """Before the write is queued: every hosted form's callback is a URL it may post to (no database needed)."""
    for n, message in enumerate(messages):
        webview_forms.check_form_urls(_parts(message), settings.webhook_allow_private_networks, prefix.format(n=n))


def _check_form_signers(call: Call, messages: list[MessageIn], prefix: str = "") -> None:
    """In the write: every hosted form's callback has an enabled endpoint to sign its relay."""
    for n, message in enumerate(messages):
        webview_forms.check_form_signers(call.session, call.workspace_id, _parts(message), prefix.format(n=n))


def check_create(body: ConversationIn, settings: Settings) -> None:
    _check_form_urls(body.messages, settings, "messages.{n}.")


def check_message(body: MessageIn, settings: Settings) -> None:
    _check_form_urls([body], settings)


def _out(call: Call, message: dict[str, Any]) -> dict[str, Any]:
    """A message as the API answers it: each file part with a fresh signed url."""
    assert call.settings is not None
    return links_for(call.settings).present_message(message)


def create(call: Call) -> dict[str, Any]:
    _check_form_signers(call, call.body.messages, "messages.{n}.")
    conv, messages = conversations.create_conversation(call.write, call.workspace_id, call.body)
    return {**conversation_json(conv), "messages": [_out(call, message_json(m)) for m in messages]}


def list_(call: Call) -> dict[str, Any]:
    q: ConversationQuery = call.query
    c = rows.CONVERSATIONS.c
    query = select(rows.CONVERSATIONS).where(c.workspace_id == call.workspace_id)
    if q.status:
        query = query.where(c.status == q.status)
    if q.user_id:
        query = query.where(c.user_id == q.user_id)
    if q.assignee_id:
        query = query.where(c.assignee_id == q.assignee_id)
    if q.handled_by:
        query = query.where(c.handled_by == q.handled_by)
    if q.tag:
        has_tag = rows.db(call.session).dialect.json_array_has("conversation.tags", "tag")
        query = query.where(text(has_tag).bindparams(tag=q.tag))
    if q.q is not None:
        words = search.terms(q.q)
        if not words:
            raise errors.Unprocessable(
                "Invalid field: query.q", details=[{"field": "query.q", "message": "search for a word or a number"}]
            )
        query = query.where(search.conversation_match(rows.db(call.session).dialect, call.workspace_id, words))
    changes = change_page(
        call.session, rows.CONVERSATIONS, query, since=q.since, cursor=q.cursor, limit=q.limit,
        to_json=conversation_json,
    )  # fmt: skip
    if changes is not None:
        return changes
    if q.cursor:
        updated, last_id = decode_cursor(q.cursor, 2)
        try:
            at = datetime.fromisoformat(str(updated))
        except ValueError:
            raise errors.Unprocessable(
                "Invalid field: query.cursor",
                details=[{"field": "query.cursor", "message": "not a cursor from this API"}],
            ) from None
        query = query.where((c.updated_at < at) | ((c.updated_at == at) & (c.id < str(last_id))))
    query = query.order_by(c.updated_at.desc(), c.id.desc()).limit(q.limit + 1)
    found = list(call.session.connection().execute(query))
    return page(found, q.limit, conversation_json, lambda conv: (conv.updated_at.isoformat(), conv.id))


def read(call: Call) -> dict[str, Any]:
    conv = conversations.get_conversation(call.session, call.workspace_id, call.params["conversation_id"])
    return conversation_json(conv)


def patch(call: Call) -> dict[str, Any]:
    conv = conversations.update_conversation(call.write, call.workspace_id, call.params["conversation_id"], call.body)
    return conversation_json(conv)


def handover(call: Call) -> dict[str, Any]:
    conv = conversations.hand_over(call.write, call.workspace_id, call.params["conversation_id"], call.body)
    return conversation_json(conv)


def post_message(call: Call) -> Result:
    _check_form_signers(call, [call.body])
    conversation_id = call.params["conversation_id"]
    message, created = conversations.post_message(call.write, call.workspace_id, conversation_id, call.body)
    return Result(201 if created else 200, _out(call, message_json(message)))


def list_messages(call: Call) -> dict[str, Any]:
    q: MessageQuery = call.query
    h = rows.db(call.session)
    conv = conversations.get_conversation(h, call.workspace_id, call.params["conversation_id"])
    after = q.after or 0
    if q.cursor:
        (cursor_seq,) = decode_cursor(q.cursor, 1)
        after = max(after, int(cursor_seq) if isinstance(cursor_seq, int) else 0)
    found = rows.messages_json_after(h, conv.id, after, q.limit + 1)
    # Messages whose parts are still their stored text (no files) go out as they are.
    return page(
        found, q.limit, lambda m: _out(call, m) if isinstance(m["message_parts"], list) else m, lambda m: (m["seq"],)
    )


def typing(call: Call) -> None:
    body: TypingIn = call.body
    conv = conversations.get_conversation(call.session, call.workspace_id, call.params["conversation_id"])
    agent = None
    if body.actor.type in ("bot", "agent"):
        if body.actor.id:
            agent = people.get_agent(call.session, call.workspace_id, body.actor.id)
        else:
            agent = people.default_bot(call.write, call.workspace_id)
    call.write.publish(conversations.typing_event(call.workspace_id, conv.id, body.actor.type, body.on, agent=agent))
    return None


ENDPOINTS = [
    Endpoint(
        "POST",
        "/conversations",
        create,
        "Start a conversation (optionally with messages)",
        "Conversations",
        body=ConversationIn,
        response=ConversationCreated,
        status=201,
        scope="write",
        errors=(422,),
        check=check_create,
    ),
    Endpoint(
        "GET",
        "/conversations",
        list_,
        "List conversations, newest activity first, or list changes for a sync",
        "Conversations",
        query=ConversationQuery,
        response=("changes", ConversationOut),
    ),
    Endpoint(
        "GET",
        "/conversations/{conversation_id}",
        read,
        "Get a conversation",
        "Conversations",
        response=ConversationOut,
        errors=(404,),
    ),
    Endpoint(
        "PATCH",
        "/conversations/{conversation_id}",
        patch,
        "Resolve, reopen, assign, tag, or set properties",
        "Conversations",
        body=ConversationPatch,
        response=ConversationOut,
        scope="write",
        errors=(404, 422),
    ),
    Endpoint(
        "POST",
        "/conversations/{conversation_id}/handover",
        handover,
        "Hand the conversation to a human (the named one, or the available one with the fewest open "
        "conversations, or nobody: it waits) or back to the bot; fires conversation.handover",
        "Conversations",
        body=HandoverIn,
        response=ConversationOut,
        status=200,
        scope="write",
        errors=(404, 422),
    ),
    Endpoint(
        "POST",
        "/conversations/{conversation_id}/messages",
        post_message,
        "Post a message (201; 200 when client_message_id repeats an earlier one; 409 handled_by_human "
        "for a bot's message while a human has control)",
        "Messages",
        body=MessageIn,
        response=MessageOut,
        status=201,
        scope="write",
        errors=(404, 409, 422),
        check=check_message,
        # Without a client_message_id the write begins with the seq bump (conversations.post_message).
        bumps=lambda params, body: None if body.client_message_id else params["conversation_id"],
        quick=True,
    ),
    Endpoint(
        "GET",
        "/conversations/{conversation_id}/messages",
        list_messages,
        "List messages in seq order",
        "Messages",
        query=MessageQuery,
        response=("page", MessageOut),
        errors=(404,),
    ),
    Endpoint(
        "POST",
        "/conversations/{conversation_id}/typing",
        typing,
        "Show or hide a typing indicator in the widget (expires by itself)",
        "Messages",
        body=TypingIn,
        response=None,
        status=204,
        scope="write",
        errors=(404, 422),
    ),
]

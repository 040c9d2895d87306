"""The OpenAPI 3.1 ``webhooks`` section, derived from ``app/events.py``.

Each webhook event's ``data`` is declared there once as a short shape (``{message,
conversation}``, ``{conversation, from: "bot"|"human", to: …, reason}``); this module reads
that shape into a JSON schema: the API's own models for the nouns (``message``,
``conversation``, ``user``, an agent), enums for quoted alternatives, ``?`` for optional
fields, strings for ids. A new event declared there appears here with no other change.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from app import events
from app.api.examples import example
from app.api.schemas import AgentOut, ConversationOut, MessageOut, UserOut

WEBHOOK_MODELS: list[type[BaseModel]] = [MessageOut, ConversationOut, UserOut, AgentOut]
_NOUNS: dict[str, type[BaseModel]] = {
    "message": MessageOut, "conversation": ConversationOut, "user": UserOut, "agent": AgentOut, "assignee": AgentOut,
}  # fmt: skip
# Where a field's name means something else in one event.
_OVERRIDES: dict[tuple[str, str], dict[str, Any]] = {
    (events.WEBHOOK_TEST, "message"): {"type": "string", "description": "A line saying this is a test."},
}
_SIMPLE: dict[str, dict[str, Any]] = {
    "seq": {"type": "integer"},
    "on": {"type": "boolean"},
    "values": {"type": "object", "additionalProperties": {"type": "string"}},
    "external_id": {"anyOf": [{"type": "string"}, {"type": "null"}]},
}
DESCRIPTIONS = {
    events.MESSAGE_CREATED: "A message was stored: the customer's (answer it when `conversation.handled_by` is "
    "`bot` and `message.actor.type` is `user`), a bot's, an agent's or a private note (`private: true`). "
    "A quick reply, drop-down or postback choice arrives as the customer's message whose "
    "`reply_to.payload` is the option's payload.",
    events.CONVERSATION_CREATED: "A conversation began (the widget opens one when the customer first opens the "
    "chat): the bot's cue to greet.",
    events.WEBVIEW_CLOSED: "A web view closed: `submitted` (a hosted form's callback answered 2xx), `closed` (the "
    "page called `Backchannel.close`) or `dismissed` (the customer closed the sheet). The bot's cue to "
    "continue.",
    events.CONVERSATION_HANDOVER: "Control moved between the bot and humans: `from`, `to` and why.",
    events.CONVERSATION_UPDATED: "A conversation's `tags` or `properties` changed (a CRM's sync cue; "
    "`GET /conversations?updated_after=` lists every change).",
    events.CONVERSATION_RATED: "The customer rated a resolved conversation in the widget (five buttons, then an "
    "optional comment, which rates again): `conversation.rating` is `{score, comment, rated_at}`.",
    events.USER_UPDATED: "A user's fields changed: by `PATCH /users/{id}`, or a signed widget identity that brought "
    "a new name or email.",
    events.USER_DELETED: "A user was erased (`DELETE /users/{id}`): they, their conversations, messages and files "
    "are gone. Delete your copy.",
    events.WEBHOOK_TEST: "Sent by Send test (console) or `POST /webhook-endpoints/{id}/test`, to that endpoint only.",
}
HEADERS = [
    {"name": "webhook-id", "in": "header", "required": True, "schema": {"type": "string"},
     "description": "The event's id: the same on every retry. De-duplicate by it."},
    {"name": "webhook-timestamp", "in": "header", "required": True, "schema": {"type": "string"},
     "description": "Unix seconds of this attempt; refuse old ones (Standard Webhooks libraries do)."},
    {"name": "webhook-signature", "in": "header", "required": True, "schema": {"type": "string"},
     "description": '`v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`, space-separated during a '
     "secret rotation (and `v1a,…` with asymmetric signing)."},
]  # fmt: skip


def split_fields(shape: str) -> tuple[list[str], str]:
    """``"{a, b: "x"|"y", c?} (a note)"`` -> ``(["a", 'b: "x"|"y"', "c?"], "a note")``."""
    match = re.match(r"^\{(.*)\}\s*(?:\((.*)\))?$", shape.strip())
    if match is None:
        return [], shape
    fields, depth, current = [], 0, ""
    for ch in match.group(1):
        depth += ch == "{"
        depth -= ch == "}"
        if ch == "," and depth == 0:
            fields.append(current.strip())
            current = ""
        else:
            current += ch
    if current.strip():
        fields.append(current.strip())
    return fields, match.group(2) or ""


def data_schema(event: str, shape: str, ref: Callable[[type[BaseModel]], dict[str, Any]]) -> dict[str, Any]:
    fields, note = split_fields(shape)
    properties: dict[str, Any] = {}
    required = []
    for field in fields:
        name, _, spec = (part.strip() for part in field.partition(":"))
        optional = name.endswith("?")
        name = name.rstrip("?")
        properties[name] = _field_schema(event, name, spec, ref)
        if not optional:
            required.append(name)
    schema: dict[str, Any] = {"type": "object", "properties": properties, "required": required}
    if note:
        schema["description"] = note
    return schema


def _field_schema(event: str, name: str, spec: str, ref: Callable[[type[BaseModel]], dict[str, Any]]) -> dict[str, Any]:
    if (event, name) in _OVERRIDES:
        return _OVERRIDES[(event, name)]
    quoted = re.findall(r'"([^"]+)"', spec)
    if quoted and re.fullmatch(r'("[^"]+"\s*\|\s*)*"[^"]+"', spec):
        return {"type": "string", "enum": quoted}
    noun = _NOUNS.get(name) or (_NOUNS.get(spec.split()[0]) if spec else None)
    if noun is not None:
        return {"anyOf": [ref(noun), {"type": "null"}]} if spec.endswith("or null") else ref(noun)
    if name in _SIMPLE:
        return _SIMPLE[name]
    return {"type": "string"} if not spec else {"type": "string", "description": spec}


def webhooks_section(ref: Callable[[type[BaseModel]], dict[str, Any]], schemas: dict[str, Any]) -> dict[str, Any]:
    """``{event: {"post": operation}}`` for every webhook event; adds each envelope to ``schemas``."""
    out: dict[str, Any] = {}
    for name in events.WEBHOOK_EVENT_TYPES:
        kind = events.EVENTS[name]
        schema_name = "Event_" + name.replace(".", "_")
        schemas[schema_name] = {
            "title": f"{name} webhook",
            "type": "object",
            "required": ["type", "timestamp", "data"],
            "properties": {
                "type": {"const": name},
                "timestamp": {"type": "string", "format": "date-time"},
                "data": data_schema(name, kind.data, ref),
            },
        }
        envelope = {"$ref": f"#/components/schemas/{schema_name}"}
        out[name] = {"post": {
            "operationId": "webhook_" + name.replace(".", "_"),
            "summary": name,
            "description": DESCRIPTIONS.get(name, f"`data`: `{kind.data}`."),
            "tags": ["Webhook events"],
            "parameters": HEADERS,
            "requestBody": {"required": True, "content": {"application/json": {
                "schema": envelope, "example": example(envelope, schemas),
            }}},
            "responses": {
                "200": {"description": "Any 2xx within 15 s: delivered. Anything else (or a redirect) is retried."},
                "410": {"description": "Gone: the endpoint is disabled."},
            },
        }}  # fmt: skip
    return out

"""Examples for the OpenAPI document: one per request body and success response, and one per
webhook payload, built from the same JSON schemas that validate them.

A value is made from the schema (its enum, const, format, bounds) and the property's name
(``user_id`` looks like ``usr_…``, ``*_at`` like a timestamp), so an example always has the
right shape; a few bodies a bot developer reads first are written out by hand (``CURATED``).
``tests/api/test_openapi_docs.py`` validates every example against its schema.
"""

from __future__ import annotations

from typing import Any

from app import events

TIMESTAMP = "2026-11-30T12:00:00Z"
# The prefix of each kind of id, by the name of the property (or of the schema holding ``id``).
ID_PREFIXES = {
    "user": "usr", "conversation": "cnv", "message": "msg", "agent": "agt", "assignee": "agt",
    "endpoint": "whe", "delivery": "dlv", "event": "msg", "token": "tok", "file": "fil",
    "workspace": "wsp", "webview": "card", "console_user": "cu",
}  # fmt: skip
SCHEMA_ID_PREFIXES = {
    "UserOut": "usr", "ConversationOut": "cnv", "MessageOut": "msg", "AgentOut": "agt",
    "WebhookEndpointOut": "whe", "WebhookEndpointWithSecret": "whe", "WebhookDeliveryOut": "dlv",
    "WebhookDeliveryDetail": "dlv", "TokenOut": "tok", "TokenCreated": "tok", "FileOut": "fil",
    "WorkspaceOut": "wsp", "WebhookAttemptOut": "wha", "CannedResponseOut": "cr",
}  # fmt: skip
NAMED = {
    "name": "Ada Lovelace", "email": "ada@example.com", "external_id": "crm-42", "label": "Track my order",
    "payload": "TRACK_ORDER", "content": "Hi! Where is my pizza?", "title": "Margherita",
    "subtitle": "Tomato, mozzarella",
    "description": "My bot", "url": "https://bot.example.com/webhooks", "avatar_url": "https://bot.example.com/avatar.png",
    "image_url": "https://bot.example.com/pizza.jpg", "callback_url": "https://bot.example.com/forms/address",
    "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "token": "bch_3m5G0J8kQpY1pUuJ6n7jYw2ZpXxV4cB9aLk1dE0fHqI",
    "prefix": "bch_3m5G", "widget_key": "wk_3m5G0J8kQpY1pUuJ6n7jYw2Z", "reason": "customer asked for a human",
    "status": "open", "code": "not_found", "message": "Not found.", "placeholder": "Choose a size",
    "alt": "A margherita", "theme_color": "#1f6feb", "greeting": "Hi! How can we help?", "result": "saved",
    "content_type": "image/png", "shortcut": "hello", "text": "Hello! How can I help?",
}  # fmt: skip


def example(
    schema: dict[str, Any], components: dict[str, Any], name: str = "", holder: str = "", depth: int = 0
) -> Any:
    """A value that validates against ``schema`` (``$ref``s resolved in ``components``)."""
    if depth > 12:
        return None
    if "$ref" in schema:
        ref = str(schema["$ref"]).rsplit("/", 1)[-1]
        if ref in CURATED_SCHEMAS:
            return CURATED_SCHEMAS[ref]
        return example(components[ref], components, name, ref, depth + 1)
    if "example" in schema:
        return schema["example"]
    if "examples" in schema and schema["examples"]:
        return schema["examples"][0]
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        if key in schema:
            options = [o for o in schema[key] if o.get("type") != "null"] or schema[key]
            return example(options[0], components, name, holder, depth + 1)
    if "allOf" in schema:
        return example(schema["allOf"][0], components, name, holder, depth + 1)
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        props = schema.get("properties", {})
        out = {
            key: example(sub, components, key, holder if not sub.get("$ref") else "", depth + 1)
            for key, sub in props.items()
        }
        if not props and schema.get("additionalProperties") not in (None, False):
            out = {"plan": example(schema["additionalProperties"], components, "plan", "", depth + 1)} if isinstance(
                schema["additionalProperties"], dict) else {"plan": "pro"}
        return out
    if kind == "array":
        item = example(schema.get("items", {}), components, name.rstrip("s"), "", depth + 1)
        return [item] * max(1, int(schema.get("minItems", 1)))
    if kind == "integer" or kind == "number":
        low = schema.get("minimum", schema.get("exclusiveMinimum", 0) + 1 if "exclusiveMinimum" in schema else 1)
        high = schema.get("maximum")
        value = low if name not in ("seq", "size", "count") else max(low, 42)
        return min(value, high) if high is not None else value
    if kind == "boolean":
        return False
    if kind == "null":
        return None
    return _string(schema, name, holder)


def _string(schema: dict[str, Any], name: str, holder: str) -> str:
    if name.endswith("_at") or name in ("timestamp", "at") or schema.get("format") == "date-time":
        return TIMESTAMP
    if name == "id" and holder in SCHEMA_ID_PREFIXES:
        return f"{SCHEMA_ID_PREFIXES[holder]}_0mx3a4a9b7j16tjcal6za"
    if name.endswith("_id") and name.removesuffix("_id") in ID_PREFIXES:
        return f"{ID_PREFIXES[name.removesuffix('_id')]}_0mx3a4a9b7j16tjcal6za"
    value = NAMED.get(name)
    if value is None:
        value = "https://example.com/" if schema.get("format") == "uri" else name.replace("_", " ") or "text"
    low, high = int(schema.get("minLength", 0)), schema.get("maxLength")
    if high is not None:
        value = value[: int(high)]
    return value.ljust(low, "x")


# Request bodies a bot developer reads first, written out (by body model name).
CURATED: dict[str, Any] = {
    "MessageIn": {
        "message_parts": [{"text": {"content": "Hi Ada! What would you like?"}}],
        "reply_parts": [{"quick_replies": {"options": [
            {"label": "Order a pizza", "payload": "ORDER"}, {"label": "Talk to a human", "payload": "HUMAN"},
        ]}}],
    },
    "ConversationIn": {"user_id": "usr_0mx3a4a9b7j16tjcal6za"},
    "UserIn": {"external_id": "crm-42", "name": "Ada Lovelace", "email": "ada@example.com",
               "properties": {"plan": "pro"}},
    "WebhookEndpointIn": {"url": "https://bot.example.com/webhooks",
                          "events": [events.MESSAGE_CREATED, events.CONVERSATION_CREATED, events.WEBVIEW_CLOSED]},
    "AgentPatch": {"name": "Pizza Pete", "avatar_url": "https://bot.example.com/pete.png"},
    "ConversationPatch": {"status": "resolved"},
    "HandoverIn": {"to": "human", "reason": "customer asked for a human"},
    "TypingIn": {"on": True},
    "WebviewVerifyIn": {"token": "eyJ3cyI6IndzcF8…"},
}


# Schemas whose generated example would say little (a message's parts are objects of one key).
CURATED_SCHEMAS: dict[str, Any] = {
    "MessageOut": {
        "id": "msg_0mx3a4a9b7j16tjcal6za", "conversation_id": "cnv_0mx3a4a9b7j16tjcal6za", "seq": 3,
        "actor": {"type": "user", "id": "usr_0mx3a4a9b7j16tjcal6za"},
        "message_parts": [{"text": {"content": "Order a pizza"}}], "reply_parts": [],
        "reply_to": {"message_id": "msg_0mx3a4a9b7j16tjcal1ab", "payload": "ORDER"},
        "client_message_id": "c-7f3a", "private": False, "created_at": TIMESTAMP,
    },
}

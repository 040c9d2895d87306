"""Slice, a pizza shop bot for Backchannel, in Python (docs/bots.md walks through it).

Webhooks in (verified with the ``standardwebhooks`` package), REST API out (httpx).

    BACKCHANNEL_API_URL=https://chat.example.com BACKCHANNEL_TOKEN=bch_… \\
    WEBHOOK_SECRET=whsec_… PUBLIC_URL=https://bot.example.com PORT=3000 python bot.py
"""

from __future__ import annotations

import asyncio
import html
import os
import re
from typing import Any

import httpx
import uvicorn
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

API = os.environ["BACKCHANNEL_API_URL"].rstrip("/") + "/api/v1"
TOKEN = os.environ["BACKCHANNEL_TOKEN"]
PUBLIC_URL = os.environ.get("PUBLIC_URL", "http://localhost:3000").rstrip("/")
PORT = int(os.environ.get("PORT", "3000"))
webhook = Webhook(os.environ["WEBHOOK_SECRET"])

MENU = [
    {"label": "Order a pizza", "payload": "ORDER"},
    {"label": "Toppings", "payload": "TOPPINGS"},
    {"label": "Talk to a human", "payload": "HUMAN"},
]
orders: dict[str, dict[str, str]] = {}  # conversation id -> {pizza, size, street}


# [api]
# Every call to Backchannel: JSON in and out, the token as a bearer. A POST carries an
# Idempotency-Key, so retrying it after a timeout never does it twice.
client = httpx.AsyncClient(base_url=API, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)


async def api(method: str, path: str, body: Any = None, idempotency_key: str | None = None) -> Any:
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
    r = await client.request(method, path, json=body, headers=headers)
    r.raise_for_status()
    return None if r.status_code == 204 else r.json()


# `key` makes the message idempotent: the same webhook handled twice posts it once.
async def say(conversation_id: str, key: str, message_parts: list[Any], reply_parts: list[Any] | None = None) -> Any:
    return await api("POST", f"/conversations/{conversation_id}/messages", {
        "message_parts": message_parts, "reply_parts": reply_parts or [], "client_message_id": key})


async def typing(conversation_id: str) -> None:
    await api("POST", f"/conversations/{conversation_id}/typing", {"on": True})
# [/api]


# [events]
async def on_event(id: str, event: dict[str, Any]) -> None:
    data = event["data"]
    if event["type"] == "conversation.created":
        # [greet]
        await typing(data["conversation"]["id"])
        await say(data["conversation"]["id"], f"{id}:greet",
                  [{"text": {"content": "Hi! I'm Slice. Hungry?"}}],
                  [{"quick_replies": {"options": MENU}}])
        # [/greet]
    elif event["type"] == "message.created":
        message, conversation = data["message"], data["conversation"]
        # Answer only the customer, and only while the bot has the conversation.
        if message["actor"]["type"] != "user" or conversation["handled_by"] != "bot":
            return
        await typing(conversation["id"])
        await on_customer_message(id, conversation["id"], message)
    elif event["type"] == "webview.closed":
        await on_webview_closed(id, data)
# [/events]


# [answers]
async def on_customer_message(id: str, conversation_id: str, message: dict[str, Any]) -> None:
    # A quick reply, a drop-down choice or a carousel postback comes back as the customer's
    # message; its reply_to.payload is the payload you gave the option.
    payload = (message.get("reply_to") or {}).get("payload", "")
    if payload == "ORDER":
        await say(conversation_id, f"{id}:menu", [{"carousel": {"cards": [
            {"title": "Margherita", "subtitle": "Tomato, mozzarella, basil",
             "image_url": f"{PUBLIC_URL}/margherita.jpg",
             "buttons": [{"postback": {"label": "Margherita", "payload": "PIZZA:Margherita"}}]},
            {"title": "Diavola", "subtitle": "Spicy salami, chili", "image_url": f"{PUBLIC_URL}/diavola.jpg",
             "buttons": [{"postback": {"label": "Diavola", "payload": "PIZZA:Diavola"}}]},
        ]}}])
    elif payload.startswith("PIZZA:"):
        orders[conversation_id] = {"pizza": payload.removeprefix("PIZZA:")}
        await say(conversation_id, f"{id}:size", [{"text": {"content": "Which size?"}}],
                  [{"dropdown": {"placeholder": "Choose a size", "options": [
                      {"label": "Small (26 cm)", "payload": "SIZE:small"},
                      {"label": "Large (32 cm)", "payload": "SIZE:large"}]}}])
    elif payload.startswith("SIZE:"):
        orders.setdefault(conversation_id, {})["size"] = payload.removeprefix("SIZE:")
        await ask_for_address(id, conversation_id)
    elif payload == "TOPPINGS":
        await say(conversation_id, f"{id}:toppings", [{"web_view": {
            "id": "toppings", "label": "Pick toppings", "url": f"{PUBLIC_URL}/toppings", "height": "tall"}}])
    elif payload == "HUMAN":
        await hand_over(id, conversation_id)
    else:
        await say(conversation_id, f"{id}:help", [{"text": {"content": "I can help with these:"}}],
                  [{"quick_replies": {"options": MENU}}])
# [/answers]


# [form]
# A hosted form: Backchannel serves it and relays what the customer typed straight to
# callback_url (signed like a webhook), storing none of it. The callback's origin must be
# one of your webhook endpoints'.
async def ask_for_address(id: str, conversation_id: str) -> None:
    await say(conversation_id, f"{id}:address", [{"web_view": {
        "id": "address", "label": "Delivery address", "height": "compact", "form": {
            "title": "Where should we deliver?", "submit_label": "Order",
            "callback_url": f"{PUBLIC_URL}/forms/address",
            "fields": [
                {"name": "street", "label": "Street and number", "type": "text", "required": True,
                 "max_length": 100},
                {"name": "postcode", "label": "Postcode", "type": "text", "required": True,
                 "pattern": "[0-9]{5}", "pattern_message": "Five digits, e.g. 10115."},
            ]}}}])


# The callback: 2xx closes the form ("submitted"); 422 {"errors": {field: message}} shows
# the messages in the form, and the customer can correct them.
def address_callback(event: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    conversation_id, values = event["data"]["conversation_id"], event["data"]["values"]
    if not values["postcode"].startswith("1"):
        return 422, {"errors": {"postcode": "Sorry, we only deliver to postcodes starting with 1."}}
    orders.setdefault(conversation_id, {})["street"] = values["street"]
    return 200, {"ok": True}
# [/form]


# [closed]
async def on_webview_closed(id: str, data: dict[str, Any]) -> None:
    conversation_id = data["conversation_id"]
    if data["webview_id"] == "address" and data["status"] == "submitted":
        order = orders.get(conversation_id, {})
        await say(conversation_id, f"{id}:placed", [{"text": {"content":
            f"Order placed: a {order.get('size', '')} {order.get('pizza', 'pizza')} to {order.get('street')}. "
            "About 30 minutes!"}}])
    elif data["webview_id"] == "toppings" and data.get("result"):
        await say(conversation_id, f"{id}:topping", [{"text": {"content": f"Noted: {data['result']}."}}],
                  [{"quick_replies": {"options": MENU}}])
    else:
        await say(conversation_id, f"{id}:later", [{"text": {"content": "No problem. Anything else?"}}],
                  [{"quick_replies": {"options": MENU}}])
# [/closed]


# [handover]
async def hand_over(id: str, conversation_id: str) -> None:
    await say(conversation_id, f"{id}:handover", [{"text": {"content": "Let me get a colleague for you."}}])
    await api("POST", f"/conversations/{conversation_id}/handover", {"to": "human", "reason": "customer asked"})
# [/handover]


# [toppings]
# An external web view: your own page, opened in the widget with ?bc_ctx=<token>. Check the
# token with Backchannel (it names the conversation), then close the sheet with a result.
async def toppings_page(request: Request) -> Response:
    try:
        context = await api("POST", "/webview-contexts/verify", {"token": request.query_params.get("bc_ctx", "")})
    except httpx.HTTPStatusError:
        return JSONResponse({"error": "not a web view of ours"}, status_code=403)
    server = API.removesuffix("/api/v1")
    conversation = re.sub(r"[^\w]", "", context["conversation_id"])
    return HTMLResponse(f"""<!doctype html><meta charset="utf-8"><title>Toppings</title>
<script src="{html.escape(server)}/static/webview.js"></script>
<p>Toppings for conversation {conversation}</p>
<button onclick="Backchannel.close({{result: 'extra cheese'}})">Extra cheese</button>
<button onclick="Backchannel.close({{result: 'olives'}})">Olives</button>""")
# [/toppings]


# [server]
seen: set[str] = set()  # webhook-ids handled: a retried delivery is acknowledged, not redone
tasks: set[asyncio.Task[None]] = set()


async def receive(request: Request) -> Response:
    body = await request.body()  # verify the raw body, before parsing
    try:
        event = webhook.verify(body, dict(request.headers))
    except WebhookVerificationError:
        return JSONResponse({"error": "bad signature"}, status_code=400)
    if request.url.path == "/forms/address":
        status, answer = address_callback(event)
        return JSONResponse(answer, status_code=status)
    id = request.headers["webhook-id"]
    if id not in seen:  # answer at once (within 15 s); work after
        seen.add(id)
        task = asyncio.create_task(handle(id, event))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    return JSONResponse({"ok": True})


async def handle(id: str, event: dict[str, Any]) -> None:
    try:
        await on_event(id, event)
    except Exception as exc:
        seen.discard(id)
        print(f"{event['type']}: {exc}")


app = Starlette(routes=[
    Route("/webhooks", receive, methods=["POST"]),
    Route("/forms/address", receive, methods=["POST"]),
    Route("/toppings", toppings_page),
    Route("/health", lambda request: JSONResponse({"ok": True})),
])

if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=PORT, log_level="warning")
# [/server]

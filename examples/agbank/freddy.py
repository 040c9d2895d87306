"""Freddy, AG Bank's bot: a small ASGI app that uses only Backchannel's public API and webhooks.

It is written the way any bot owner's code would be — it imports nothing from Backchannel:

* every webhook is verified with the off-the-shelf ``standardwebhooks`` library;
* it answers through the REST API with its own API token (``httpx``);
* it serves its own hosted-form callback (card check) and external web-view page.

Run it with ``uvicorn examples.agbank.freddy:create_app --factory --port 8001`` and the
environment of README.md in this folder.
"""

from __future__ import annotations

import asyncio
import html
import json
import logging
import os
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

log = logging.getLogger("freddy")

GREETING_OPTIONS = [
    {"label": "Account statement", "payload": "STATEMENT"},
    {"label": "Card services", "payload": "CARDS"},
    {"label": "Talk to a human", "payload": "HUMAN"},
]
CARD_FORM_ID = "card-details"
TEST_CARD = "4111111111111111"
TRANSACTIONS = [
    ("Coffee Corner", "-€3.40", "Mon 18 Nov · Card •••• 1111"),
    ("Salary — Acme Ltd", "+€2,450.00", "Fri 15 Nov · Transfer"),
    ("City Grocers", "-€58.12", "Thu 14 Nov · Card •••• 1111"),
    ("Rail Pass", "-€89.00", "Tue 12 Nov · Card •••• 1111"),
]


@dataclass
class Config:
    api_url: str  # e.g. http://127.0.0.1:8000/api/v1
    token: str  # a Backchannel API token (bch_…)
    webhook_secret: str  # the endpoint's whsec_… secret
    public_url: str  # where Backchannel (and browsers) reach Freddy, e.g. http://127.0.0.1:8001

    @classmethod
    def from_env(cls) -> Config:
        return cls(
            api_url=os.environ["FREDDY_API_URL"].rstrip("/"),
            token=os.environ["FREDDY_API_TOKEN"],
            webhook_secret=os.environ["FREDDY_WEBHOOK_SECRET"],
            public_url=os.environ.get("FREDDY_PUBLIC_URL", "http://127.0.0.1:8001").rstrip("/"),
        )


@dataclass
class CardStore:
    """Freddy's own record of verified customers. Card numbers stay here, with the bank —
    Backchannel relays the form once and keeps nothing."""

    verified: dict[str, str] = field(default_factory=dict)  # conversation id -> last four digits

    def check(self, number: str, expiry: str, name: str) -> dict[str, str]:
        errors: dict[str, str] = {}
        digits = re.sub(r"[\s-]", "", number)
        if digits != TEST_CARD:
            errors["card_number"] = "We couldn't verify this card. Try the test card 4111 1111 1111 1111."
        match = re.fullmatch(r"(\d{2})\s*/\s*(\d{2}|\d{4})", expiry.strip())
        if not match:
            errors["expiry"] = "Use MM/YY."
        else:
            month, year = int(match[1]), int(match[2])
            year += 2000 if year < 100 else 0
            now = datetime.now(UTC)
            if not 1 <= month <= 12 or (year, month) < (now.year, now.month):
                errors["expiry"] = "This card has expired."
        if not name.strip():
            errors["name"] = "Enter the name on the card."
        return errors


class Freddy:
    def __init__(self, config: Config, client: httpx.AsyncClient | None = None) -> None:
        self.config = config
        self.webhook = Webhook(config.webhook_secret)
        self.cards = CardStore()
        self.api = client or httpx.AsyncClient(
            base_url=config.api_url, headers={"Authorization": f"Bearer {config.token}"}, timeout=15
        )
        self.tasks: set[asyncio.Task[None]] = set()

    # -- Backchannel calls -------------------------------------------------------------

    async def say(
        self, conversation_id: str, *parts: dict[str, Any], replies: list[dict[str, Any]] | None = None
    ) -> None:
        body: dict[str, Any] = {"message_parts": list(parts)}
        if replies:
            body["reply_parts"] = replies
        r = await self.api.post(f"/conversations/{conversation_id}/messages", json=body)
        r.raise_for_status()

    async def typing(self, conversation_id: str) -> None:
        await self.api.post(f"/conversations/{conversation_id}/typing", json={"on": True})
        await asyncio.sleep(0.4)  # a human-feeling pause before the answer

    # -- the conversation --------------------------------------------------------------

    async def on_event(self, event: dict[str, Any]) -> None:
        kind, data = event["type"], event["data"]
        if kind == "conversation.created":
            await self.greet(data["conversation"]["id"])
        elif kind == "message.created" and data["message"]["actor"]["type"] == "user":
            if data["conversation"]["handled_by"] != "bot":
                return  # a person has the conversation: Freddy stays quiet (Backchannel would refuse him anyway)
            await self.on_customer_message(data["conversation"]["id"], data["message"])
        elif kind == "webview.closed":
            await self.on_webview_closed(data)

    async def greet(self, conversation_id: str) -> None:
        await self.typing(conversation_id)
        await self.say(
            conversation_id,
            {"text": {"content": "Hi, I'm Freddy, AG Bank's assistant. How can I help you today?"}},
            replies=[{"quick_replies": {"options": GREETING_OPTIONS}}],
        )

    async def on_customer_message(self, conversation_id: str, message: dict[str, Any]) -> None:
        payload = (message.get("reply_to") or {}).get("payload") or _guess_intent(message)
        await self.typing(conversation_id)
        if payload == "STATEMENT":
            await self.ask_for_card(conversation_id)
        elif payload == "CARDS":
            await self.card_services(conversation_id)
        elif payload == "HUMAN":
            await self.hand_over(conversation_id)
        elif payload and payload.startswith("PERIOD:"):
            period = payload.split(":", 1)[1]
            await self.say(
                conversation_id,
                {"text": {"content": f"Done — your statement for {period} is on its way to your inbox."}},
                replies=[{"quick_replies": {"options": GREETING_OPTIONS}}],
            )
        elif payload and payload.startswith("TX:"):
            await self.say(
                conversation_id, {"text": {"content": "That payment was approved with your card ending 1111."}}
            )
        else:
            await self.say(
                conversation_id,
                {"text": {"content": "I can help with these — or type 'human' to talk to a person."}},
                replies=[{"quick_replies": {"options": GREETING_OPTIONS}}],
            )

    async def ask_for_card(self, conversation_id: str) -> None:
        form = {
            "title": "Verify your card",
            "fields": [
                {
                    "name": "card_number",
                    "label": "Card number",
                    "type": "text",
                    "required": True,
                    "pattern": "[0-9 \\-]{12,23}",
                    "max_length": 23,
                    "autocomplete": "cc-number",
                    "placeholder": "1234 5678 9012 3456",
                },
                {
                    "name": "expiry",
                    "label": "Expiry (MM/YY)",
                    "type": "text",
                    "required": True,
                    "pattern": "[0-9]{2} ?/ ?[0-9]{2}",
                    "max_length": 7,
                    "autocomplete": "cc-exp",
                    "placeholder": "MM/YY",
                },
                {
                    "name": "name",
                    "label": "Name on card",
                    "type": "text",
                    "required": True,
                    "max_length": 80,
                    "autocomplete": "cc-name",
                },
            ],
            "submit_label": "Verify card",
            "callback_url": f"{self.config.public_url}/webview/card",
        }
        await self.say(
            conversation_id,
            {
                "text": {
                    "content": "Sure. First I need to check it's you: please verify your card. "
                    "Your card details go straight to AG Bank — never into this chat."
                }
            },
            {"web_view": {"id": CARD_FORM_ID, "label": "Enter card details", "form": form, "height": "tall"}},
        )

    async def card_services(self, conversation_id: str) -> None:
        await self.say(
            conversation_id,
            {"text": {"content": "Here's what you can do with your card:"}},
            {"url_button": {"label": "Card help centre", "url": "https://example.com/agbank/cards"}},
            {
                "web_view": {
                    "id": "manage-card",
                    "label": "Freeze or unfreeze",
                    "url": f"{self.config.public_url}/cards/manage",
                    "height": "compact",
                }
            },
        )

    async def hand_over(self, conversation_id: str) -> None:
        """Backchannel routes the customer to an available human (the one with the fewest open
        conversations), or keeps them waiting for the next one; from then on the conversation
        is ``handled_by: "human"`` and Freddy's messages would be refused (409)."""
        await self.say(
            conversation_id,
            {"text": {"content": "Connecting you to a member of our team — they'll be with you shortly."}},
        )
        r = await self.api.post(
            f"/conversations/{conversation_id}/handover", json={"to": "human", "reason": "customer_asked"}
        )
        r.raise_for_status()
        if r.json()["assignee_id"] is None:  # waiting: a note for whoever picks it up
            await self.api.post(
                f"/conversations/{conversation_id}/messages",
                json={"message_parts": [{"text": {"content": "Freddy: the customer asked for a person "
                                                             "while nobody was available."}}],
                      "private": True},
            )

    async def on_webview_closed(self, data: dict[str, Any]) -> None:
        conversation_id = data["conversation_id"]
        if data["webview_id"] == CARD_FORM_ID:
            if data["status"] == "submitted" and conversation_id in self.cards.verified:
                await self.typing(conversation_id)
                await self.show_statement(conversation_id)
            else:
                await self.say(
                    conversation_id,
                    {"text": {"content": "No problem. Whenever you're ready, pick an option."}},
                    replies=[{"quick_replies": {"options": GREETING_OPTIONS}}],
                )
        elif data["webview_id"] == "manage-card" and data.get("result"):
            await self.say(
                conversation_id,
                {"text": {"content": f"Done: your card is now {data['result']}. Anything else?"}},
                replies=[{"quick_replies": {"options": GREETING_OPTIONS}}],
            )

    async def show_statement(self, conversation_id: str) -> None:
        last4 = self.cards.verified[conversation_id]
        cards = [
            {
                "title": f"{merchant}  {amount}",
                "subtitle": detail,
                "image_url": f"{self.config.public_url}/static/tx{i % 2}.svg",
                "buttons": [{"postback": {"label": "Details", "payload": f"TX:{i}"}}],
            }
            for i, (merchant, amount, detail) in enumerate(TRANSACTIONS)
        ]
        await self.say(
            conversation_id,
            {"text": {"content": f"Thanks, card ending {last4} verified. Here are your recent transactions:"}},
            {"carousel": {"cards": cards}},
            {
                "image": {
                    "url": f"{self.config.public_url}/static/all-set.gif",
                    "alt": "A celebratory animation: you're all set",
                    "content_type": "image/gif",
                }
            },
            {"text": {"content": "Which period should your statement cover?"}},
            replies=[
                {
                    "dropdown": {
                        "placeholder": "Statement period",
                        "options": [
                            {"label": "Last 30 days", "payload": "PERIOD:the last 30 days"},
                            {"label": "Last 3 months", "payload": "PERIOD:the last 3 months"},
                            {"label": "This year", "payload": "PERIOD:this year"},
                        ],
                    }
                }
            ],
        )

    # -- HTTP handlers -----------------------------------------------------------------

    def verify(self, request: Request, body: bytes) -> dict[str, Any]:
        return self.webhook.verify(body, dict(request.headers))  # type: ignore[no-any-return]

    async def webhooks(self, request: Request) -> Response:
        body = await request.body()
        try:
            event = self.verify(request, body)
        except WebhookVerificationError:
            return JSONResponse({"error": "bad signature"}, status_code=400)
        # Acknowledge at once; do the work after (Backchannel retries anything not 2xx).
        task = asyncio.create_task(self._safely(event))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return Response(status_code=204)

    async def _safely(self, event: dict[str, Any]) -> None:
        try:
            await self.on_event(event)
        except Exception:
            log.exception("handling %s failed", event.get("type"))

    async def card_callback(self, request: Request) -> Response:
        """The hosted form's callback: Backchannel relays the values here, signed, and drops them."""
        body = await request.body()
        try:
            payload = self.verify(request, body)
        except WebhookVerificationError:
            return JSONResponse({"error": "bad signature"}, status_code=400)
        values = payload.get("data", {}).get("values", {})
        errors = self.cards.check(values.get("card_number", ""), values.get("expiry", ""), values.get("name", ""))
        if errors:
            return JSONResponse({"errors": errors}, status_code=422)
        conversation_id = payload["data"]["conversation_id"]
        self.cards.verified[conversation_id] = re.sub(r"\D", "", values["card_number"])[-4:]
        return JSONResponse({"ok": True})

    async def manage_card_page(self, request: Request) -> Response:
        """An external web view: Freddy's own page, told who is asking by a verified ``bc_ctx``."""
        token = request.query_params.get("bc_ctx", "")
        r = await self.api.post("/webview-contexts/verify", json={"token": token})
        if r.status_code != 200:
            return HTMLResponse("<p>This link has expired. Close it and try again.</p>", status_code=403)
        ctx = r.json()
        base = self.config.api_url.rsplit("/api/v1", 1)[0]
        page = (STATIC / "manage.html").read_text().replace("{{BACKCHANNEL}}", html.escape(base)).replace(
            "{{CONVERSATION}}", html.escape(ctx["conversation_id"])
        )
        return HTMLResponse(page, headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"})

    async def health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})


STATIC = Path(__file__).parent / "static"


def _guess_intent(message: dict[str, Any]) -> str | None:
    text = " ".join(p["text"]["content"] for p in message["message_parts"] if "text" in p).lower()
    if "human" in text or "agent" in text or "person" in text:
        return "HUMAN"
    if "statement" in text:
        return "STATEMENT"
    if "card" in text:
        return "CARDS"
    return None


def create_app(config: Config | None = None) -> Starlette:
    freddy = Freddy(config or Config.from_env())
    app = Starlette(
        routes=[
            Route("/webhooks", freddy.webhooks, methods=["POST"]),
            Route("/webview/card", freddy.card_callback, methods=["POST"]),
            Route("/cards/manage", freddy.manage_card_page, methods=["GET"]),
            Mount("/static", StaticFiles(directory=STATIC)),
            Route("/healthz", freddy.health, methods=["GET"]),
        ]
    )
    app.state.freddy = freddy
    return app


if __name__ == "__main__":  # pragma: no cover
    print(json.dumps({"usage": "uvicorn examples.agbank.freddy:create_app --factory --port 8001"}))

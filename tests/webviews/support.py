"""Helpers for the web-view tests: a loopback callback receiver and a conversation with a form."""

from __future__ import annotations

import base64
import json
import secrets
import threading
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from app.ids import new_id, utcnow
from app.settings import Settings
from app.store.runner import Tx
from app.store.tables import WebhookEndpoint
from app.webviews import openings as webviews
from tests.conftest import TEST_ENV, StoreAccess, Tenant
from tests.factories import make_conversation

SENTINELS = {"card_number": "4111111111111111", "name": "Zyxwvut Sentinelname", "expiry": "09/39"}


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """A real HTTP server on 127.0.0.1 that records requests and answers as told per path."""

    answers: dict[str, tuple[int, bytes]] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)

    def __post_init__(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length)
                receiver.received.append(Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                status, payload = receiver.answers.get(self.path, (200, b'{"ok": true}'))
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def answer(self, path: str, status: int, body: Any = None) -> None:
        self.answers[path] = (status, json.dumps(body if body is not None else {}).encode())

    def at(self, path: str) -> list[Received]:
        return [r for r in self.received if r.path == path]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def settings_for(server: StoreAccess, **overrides: Any) -> Settings:
    """The settings the server runs with, for signing or opening from the test process."""
    return Settings(
        database_url=server.database_url,
        env="test",
        secret_key=TEST_ENV["BACKCHANNEL_SECRET_KEY"],
        public_url=server.url,
        **overrides,
    )


def add_endpoint(server: StoreAccess, workspace_id: str, url: str, *, enabled: bool = True, age_seconds: int = 0) -> WebhookEndpoint:
    """A webhook endpoint row, as the webhook API would store it (secret ``whsec_<base64>``)."""

    def make(tx: Tx) -> WebhookEndpoint:
        now = utcnow() - timedelta(seconds=age_seconds)
        endpoint = WebhookEndpoint(
            id=new_id("whe"),
            workspace_id=workspace_id,
            url=url,
            events=["*"],
            enabled=enabled,
            secret="whsec_" + base64.b64encode(secrets.token_bytes(24)).decode(),
            created_at=now,
            updated_at=now,
        )
        tx.session.add(endpoint)
        tx.session.flush()
        tx.session.expunge(endpoint)
        return endpoint

    return server.in_tx(make)  # type: ignore[no-any-return]


def card_form(callback_url: str, **extra: Any) -> dict[str, Any]:
    return {
        "title": "Card details",
        "fields": [
            {"name": "card_number", "label": "Card number", "type": "text", "required": True,
             "pattern": "[0-9 ]{12,23}"},
            {"name": "expiry", "label": "Expiry (MM/YY)", "type": "text", "required": True,
             "pattern": "(0[1-9]|1[0-2])/[0-9]{2}"},
            {"name": "name", "label": "Name on card", "type": "text", "required": True, "max_length": 60},
        ],
        "submit_label": "Verify card",
        "callback_url": callback_url,
        **extra,
    }


@dataclass
class Scene:
    conversation_id: str
    user_id: str
    message_id: str
    webview_id: str


def post_webview_message(api: httpx.Client, parts: list[dict[str, Any]], conversation: dict[str, Any] | None = None) -> Scene:
    conv = conversation or make_conversation(api)
    r = api.post(f"/api/v1/conversations/{conv['id']}/messages", json={"actor": {"type": "bot"}, "message_parts": parts})
    assert r.status_code == 201, r.text
    message = r.json()
    first = webviews.iter_webviews(message["message_parts"])[0][0]
    return Scene(conv["id"], conv["user_id"], message["id"], first)


def open_in_store(server: StoreAccess, tenant: Tenant, scene: Scene, webview_id: str | None = None, **settings: Any) -> dict[str, Any]:
    """What the widget's socket handler does when the customer clicks the web view button."""
    return server.in_tx(  # type: ignore[no-any-return]
        lambda tx: webviews.open_webview(
            tx, tenant.workspace_id, scene.conversation_id, scene.user_id, scene.message_id,
            webview_id or scene.webview_id, settings=settings_for(server, **settings),
        )
    )


def files_containing(directory: Path, needles: list[str]) -> dict[str, list[str]]:
    """Which files under ``directory`` contain which needles (bytes, any encoding we write)."""
    hits: dict[str, list[str]] = {}
    for path in directory.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            found = [n for n in needles if n.encode() in data or n.encode("utf-16-le") in data]
            if found:
                hits[str(path)] = found
    return hits

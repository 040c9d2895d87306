"""Get started: the first-login checklist checks each step off from what is stored; the login
page shows no command-line instructions."""

from __future__ import annotations

import re

import httpx

from tests.conftest import InProcessServer, Tenant
from tests.console.support import console_client, make_console_user


def _done(page: str) -> dict[str, bool]:
    items = re.findall(r'<li class="checklist-item( is-done)?" data-step="(\w+)"', page)
    return {step: bool(done) for done, step in items}


def test_the_checklist_follows_the_workspace(app_server: InProcessServer, app_tenant: Tenant, app_api: httpx.Client) -> None:
    c = console_client(app_server, make_console_user(app_server, app_tenant))
    page = c.get("/console/start").text
    assert _done(page) == {"snippet": False, "bot": False, "team": False, "origins": False}
    assert "0 of 4 done" in page and "/widget.js" in page and "data-workspace=" in page  # the snippet to copy

    app_api.post("/api/v1/webhook-endpoints", json={"url": "https://bot.example.com/hooks"})
    app_api.patch("/api/v1/widget-settings", json={"allowed_origins": ["https://shop.example.com"]})
    make_console_user(app_server, app_tenant, "alan@example.com", role="agent")
    user = app_api.post("/api/v1/users", json={"name": "Bea"}).json()
    app_api.post("/api/v1/conversations", json={"user_id": user["id"], "messages": [
        {"actor": {"type": "user"}, "message_parts": [{"text": {"content": "hi"}}]}]})
    page = c.get("/console/start").text
    assert _done(page) == {"snippet": True, "bot": True, "team": True, "origins": True}
    assert "4 of 4 done" in page


def test_agents_have_no_checklist_and_the_login_page_no_cli(app_server: InProcessServer, app_tenant: Tenant) -> None:
    agent = console_client(app_server, make_console_user(app_server, app_tenant, "alan@example.com", role="agent"))
    assert agent.get("/console/start").status_code == 403
    assert "Get started" not in agent.get("/console/inbox").text
    with app_server.client() as anonymous:
        login = anonymous.get("/console/login").text
    assert "backchannel " not in login and "Ask an admin" in login

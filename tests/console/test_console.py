"""Console security and tenancy over plain HTTP: sessions, CSRF, throttling, isolation, live sockets.

In process (``app_server``), but for the live socket, which needs uvicorn's WebSockets."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import websockets
from websockets.sync.client import connect

from tests.conftest import InProcessServer, LiveServer, Tenant
from tests.console.support import PASSWORD, console_client, csrf_from, make_console_user, page_csrf


def start_conversation(api: httpx.Client, name: str = "Bea", text: str = "hello") -> dict[str, Any]:
    user = api.post("/api/v1/users", json={"name": name}).json()
    r = api.post("/api/v1/conversations", json={
        "user_id": user["id"], "messages": [{"actor": {"type": "user"}, "message_parts": [{"text": {"content": text}}]}]})
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def test_pages_need_a_session(app_server: InProcessServer) -> None:
    with app_server.client() as c:
        r = c.get("/console/settings/tokens")
        assert r.status_code == 303
        assert r.headers["location"] == "/console/login?next=/console/settings/tokens"
        r = c.post("/console/settings/tokens", data={"name": "x"}, headers={"origin": app_server.url})
        assert r.status_code == 401


def test_session_cookie_is_httponly_lax_and_signed(app_server: InProcessServer, app_tenant: Tenant) -> None:
    email = make_console_user(app_server, app_tenant)
    with app_server.client() as c:
        page = c.get("/console/login")
        assert "default-src 'self'" in page.headers["content-security-policy"]
        r = c.post("/console/login", data={"email": email, "password": PASSWORD, "csrf_token": csrf_from(page.text)})
        assert r.status_code == 303
        cookie = next(h for h in r.headers.get_list("set-cookie") if h.startswith("bc_console="))
        assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/console" in cookie
        assert "Secure" not in cookie  # plain http here; https adds it
        c.cookies.set("bc_console", c.cookies["bc_console"][:-3] + "abc", path="/console")
        assert c.get("/console/inbox").status_code == 303  # a tampered cookie is no session


def test_forms_without_a_valid_csrf_token_are_refused(
    app_server: InProcessServer, app_tenant: Tenant, app_api: httpx.Client
) -> None:
    c = console_client(app_server, make_console_user(app_server, app_tenant))
    before = len(app_api.get("/api/v1/api-tokens").json()["data"])
    assert c.post("/console/settings/tokens", data={"name": "no csrf", "scopes": "read"}).status_code == 403
    r = c.post("/console/settings/tokens", data={"name": "bad", "scopes": "read", "csrf_token": "forged"})
    assert r.status_code == 403
    # The right token from another site (a foreign Origin) is refused too.
    csrf = page_csrf(c, "/console/settings/tokens")
    r = c.post("/console/settings/tokens", data={"name": "x", "scopes": "read", "csrf_token": csrf},
               headers={"origin": "https://evil.example"})
    assert r.status_code == 403
    assert len(app_api.get("/api/v1/api-tokens").json()["data"]) == before
    # The login form is protected as well (login CSRF).
    with app_server.client() as fresh:
        r = fresh.post("/console/login", data={"email": "ada@example.com", "password": PASSWORD})
        assert r.status_code == 403
    r = c.post("/console/settings/tokens", data={"name": "ok", "scopes": "read", "csrf_token": csrf})
    assert r.status_code == 200 and "bch_" in r.text


def test_another_workspace_is_invisible(app_server: InProcessServer, app_tenant: Tenant, app_api: httpx.Client) -> None:
    other = app_server.new_tenant("Other Co")
    with app_server.client(other) as other_api:
        theirs = start_conversation(other_api, "Their customer", "their secret")
        their_token = other_api.get("/api/v1/api-tokens").json()["data"][0]["id"]
        their_endpoint = other_api.post("/api/v1/webhook-endpoints", json={"url": "https://example.com/h"}).json()
    c = console_client(app_server, make_console_user(app_server, app_tenant))
    csrf = page_csrf(c, "/console/inbox")
    assert c.get(f"/console/inbox/{theirs['id']}").status_code == 404
    assert c.get(f"/console/inbox/{theirs['id']}/messages?after=0").status_code == 404
    for path in (f"/console/inbox/{theirs['id']}/reply", f"/console/inbox/{theirs['id']}/status",
                 f"/console/settings/tokens/{their_token}/revoke",
                 f"/console/settings/webhooks/{their_endpoint['id']}/reveal-secret",
                 f"/console/settings/webhooks/{their_endpoint['id']}/test"):
        r = c.post(path, data={"csrf_token": csrf, "text": "hi", "status": "resolved"})
        assert r.status_code == 404, path
        assert "whsec_" not in r.text
    assert "Their customer" not in c.get("/console/inbox").text
    with app_server.client(other) as other_api:
        assert other_api.get(f"/api/v1/conversations/{theirs['id']}").json()["status"] == "open"
        assert other_api.get(f"/api/v1/conversations/{theirs['id']}/messages").json()["data"][-1]["actor"]["type"] == "user"
        assert other_api.get("/api/v1/api-tokens").json()["data"][0]["revoked_at"] is None


def test_login_is_throttled(app_server: InProcessServer, app_tenant: Tenant) -> None:
    email = make_console_user(app_server, app_tenant)
    with app_server.client() as c:
        csrf = csrf_from(c.get("/console/login").text)
        statuses = [
            c.post("/console/login", data={"email": email, "password": f"guess {i}", "csrf_token": csrf}).status_code
            for i in range(10)
        ]
        assert statuses == [401] * 10
        r = c.post("/console/login", data={"email": email, "password": PASSWORD, "csrf_token": csrf})
        assert r.status_code == 429  # even the right password, until the window passes
        assert "Too many login attempts" in r.text and int(r.headers["retry-after"]) > 0


def test_agents_work_the_inbox_but_cannot_change_settings(
    app_server: InProcessServer, app_tenant: Tenant, app_api: httpx.Client
) -> None:
    admin = console_client(app_server, make_console_user(app_server, app_tenant))
    csrf = page_csrf(admin, "/console/settings/team")
    r = admin.post("/console/settings/team", data={
        "csrf_token": csrf, "name": "Alan Agent", "email": "alan@example.com", "password": "short", "role": "agent"})
    assert r.status_code == 422 and "at least 8 characters" in r.text
    r = admin.post("/console/settings/team", data={
        "csrf_token": csrf, "name": "Alan Agent", "email": "alan@example.com", "password": PASSWORD, "role": "agent"})
    assert r.status_code == 303
    agent = console_client(app_server, "alan@example.com")
    assert agent.get("/console/settings/tokens").status_code == 403
    assert 'href="/console/settings/tokens"' not in agent.get("/console/inbox").text
    conv = start_conversation(app_api)
    csrf = page_csrf(agent, f"/console/inbox/{conv['id']}")
    assert agent.post("/console/settings/tokens", data={"csrf_token": csrf, "name": "x", "scopes": "admin"}).status_code == 403
    r = agent.post(f"/console/inbox/{conv['id']}/reply", data={"csrf_token": csrf, "text": "Alan here"})
    assert r.status_code == 303
    stored = app_api.get(f"/api/v1/conversations/{conv['id']}").json()
    names = {a["id"]: a["name"] for a in app_api.get("/api/v1/agents").json()["data"]}
    assert names[stored["assignee_id"]] == "Alan Agent"


def test_assign_resolve_and_reopen_use_the_api_actions(
    app_server: InProcessServer, app_tenant: Tenant, app_api: httpx.Client
) -> None:
    c = console_client(app_server, make_console_user(app_server, app_tenant, name="Ada"))
    conv = start_conversation(app_api)
    csrf = page_csrf(c, f"/console/inbox/{conv['id']}")
    assert c.post(f"/console/inbox/{conv['id']}/assign", data={"csrf_token": csrf, "assignee_id": "me"}).status_code == 303
    stored = app_api.get(f"/api/v1/conversations/{conv['id']}").json()
    assert stored["assignee_id"] is not None
    assert "Ada" in c.get("/console/inbox?view=mine").text
    c.post(f"/console/inbox/{conv['id']}/status", data={"csrf_token": csrf, "status": "resolved"})
    assert app_api.get(f"/api/v1/conversations/{conv['id']}").json()["status"] == "resolved"
    assert "Bea" in c.get("/console/inbox?view=resolved").text
    assert "Bea" not in c.get("/console/inbox").text
    c.post(f"/console/inbox/{conv['id']}/status", data={"csrf_token": csrf, "status": "open"})
    assert app_api.get(f"/api/v1/conversations/{conv['id']}").json()["status"] == "open"
    r = c.post(f"/console/inbox/{conv['id']}/assign", data={"csrf_token": csrf, "assignee_id": ""})
    assert r.status_code == 303
    assert app_api.get(f"/api/v1/conversations/{conv['id']}").json()["assignee_id"] is None


def _next(ws: Any, timeout: float = 10) -> dict[str, Any]:
    return json.loads(ws.recv(timeout=timeout))  # type: ignore[no-any-return]


# Sync websockets on purpose: Playwright's sync API keeps an event loop running in this
# thread for the whole session, so an asyncio test run after the browser tests cannot start.
def test_live_socket_is_own_origin_own_workspace_and_ends_on_logout(server: LiveServer, tenant: Tenant) -> None:
    c = console_client(server, make_console_user(server, tenant))
    cookie = f"bc_console={c.cookies['bc_console']}"
    url = server.ws_url + "/console/live"
    # Another site cannot open the socket with the user's cookie.
    with pytest.raises(websockets.InvalidStatus) as refused:
        connect(url, origin="https://evil.example", additional_headers={"cookie": cookie}, proxy=None)
    assert refused.value.response.status_code == 403
    with connect(url, origin=server.url, proxy=None) as ws:  # no session: "log in again"
        with pytest.raises(websockets.ConnectionClosed) as closed:
            ws.recv(timeout=10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401

    other = server.new_tenant("Other Co")
    with connect(url, origin=server.url, additional_headers={"cookie": cookie}, proxy=None) as ws:
        assert _next(ws)["type"] == "hello"
        with server.client(other) as other_api:
            start_conversation(other_api, "Theirs")
        with server.client(tenant) as api:
            ours = start_conversation(api, "Ours")
        seen = [_next(ws), _next(ws)]
        # Only our workspace's events, in order; the other workspace's came first and never arrived.
        assert [e["type"] for e in seen] == ["conversation.created", "message.created"]
        assert all(e["conversation_id"] == ours["id"] for e in seen)

        csrf = page_csrf(c, "/console/inbox")
        assert c.post("/console/logout", data={"csrf_token": csrf}).status_code == 303
        with pytest.raises(websockets.ConnectionClosed) as closed:
            while True:
                _next(ws)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
    # Logging out ended the session everywhere: the old cookie no longer opens pages.
    with httpx.Client(base_url=server.url, headers={"cookie": cookie}) as stale:
        assert stale.get("/console/inbox").status_code == 303


def test_throttling_is_per_account_and_a_good_login_starts_it_over(
    app_server: InProcessServer, app_tenant: Tenant
) -> None:
    ada = make_console_user(app_server, app_tenant)
    bob = make_console_user(app_server, app_tenant, email="bob@example.com")
    with app_server.client() as c:

        def attempt(email: str, password: str) -> int:
            c.cookies.clear()  # a fresh visitor each time: no session, a new login form
            csrf = csrf_from(c.get("/console/login").text)
            return c.post("/console/login", data={"email": email, "password": password, "csrf_token": csrf}).status_code

        assert [attempt(ada, "typo") for _ in range(9)] == [401] * 9
        assert attempt(ada, PASSWORD) == 303  # the 10th attempt, and right: the count starts over
        assert [attempt(ada, "typo") for _ in range(10)] == [401] * 10
        assert attempt(ada, PASSWORD) == 429
        assert attempt(bob, PASSWORD) == 303  # another account from the same address is unaffected

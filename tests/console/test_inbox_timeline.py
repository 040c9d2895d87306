"""The Inbox transcript's lines between messages (assigned, joined, resolved, reopened,
returned to the bot), web views said once, and "Resolve and next", over plain HTTP."""

from __future__ import annotations

import re
from typing import Any

import httpx

from tests.conftest import OnDatabase
from tests.console.support import console_client, make_console_user, page_csrf

FETCH = {"x-requested-with": "fetch"}


def lines(html: str) -> list[str]:
    """The transcript's event lines, in order."""
    return re.findall(r'<div class="msg-system msg-line[^"]*" data-line>\s*<span>([^<]+)</span>', html)


def transcript(html: str) -> str:
    return html[html.index('id="transcript"'):]


def start(api: httpx.Client, name: str, text: str = "hello") -> str:
    user = api.post("/api/v1/users", json={"name": name}).json()
    r = api.post("/api/v1/conversations", json={
        "user_id": user["id"], "messages": [{"actor": {"type": "user"}, "message_parts": [{"text": {"content": text}}]}]})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def test_assign_reply_resolve_and_reopen_are_lines_in_the_transcript(on_each_database: OnDatabase) -> None:
    app_server, app_tenant, app_api = on_each_database.server, on_each_database.tenant, on_each_database.api
    email = make_console_user(app_server, app_tenant, name="Grace Hopper")
    sam = app_api.post("/api/v1/agents", json={"name": "Sam Rivera", "kind": "human"}).json()
    conv = start(app_api, "Bea")
    console = console_client(app_server, email)
    path = f"/console/inbox/{conv}"
    assert lines(console.get(path).text) == []

    # Assign in place (console.js): JSON, no redirect.
    csrf = page_csrf(console, path)
    r = console.post(f"{path}/assign", data={"csrf_token": csrf, "assignee_id": sam["id"]}, headers=FETCH)
    assert r.status_code == 200 and r.json() == {"notice": "Conversation assigned.", "ok": True, "next": None}
    assert lines(console.get(path).text) == ["Assigned to Sam Rivera"]

    # Grace replies: she joins (her reply does not re-assign: Sam, a human, has it).
    r = console.post(f"{path}/reply", data={"csrf_token": csrf, "text": "Grace here"}, headers=FETCH)
    assert r.status_code == 200, r.text
    html = transcript(console.get(path).text)
    assert lines(html) == ["Assigned to Sam Rivera", "Grace Hopper joined"]
    assert html.index("Grace Hopper joined") < html.index("Grace here")

    console.post(f"{path}/status", data={"csrf_token": csrf, "status": "resolved"}, headers=FETCH)
    app_api.post(f"/api/v1/conversations/{conv}/messages", json={
        "actor": {"type": "user"}, "message_parts": [{"text": {"content": "one more thing"}}]})
    # The customer's message reopened it, and the bot has it again: the last human let go.
    assert lines(console.get(path).text)[2:] == ["Resolved", "Reopened", "Unassigned"]
    assert lines(console.get(f"{path}/messages?after=0").text)[2:] == ["Resolved", "Reopened", "Unassigned"]

    # A bad assignee is a 422 with the reason, never a 500, and nothing changes.
    r = console.post(f"{path}/assign", data={"csrf_token": csrf, "assignee_id": "agt_nope"}, headers=FETCH)
    assert r.status_code == 422 and r.json()["ok"] is False and "agent" in r.json()["notice"]
    assert len(lines(console.get(path).text)) == 5


def test_a_reply_that_takes_over_is_one_joined_line(app_server: Any, app_tenant: Any, app_api: httpx.Client) -> None:
    email = make_console_user(app_server, app_tenant, name="Grace Hopper")
    conv = start(app_api, "Bea")
    console = console_client(app_server, email)
    path = f"/console/inbox/{conv}"
    csrf = page_csrf(console, path)
    console.post(f"{path}/reply", data={"csrf_token": csrf, "text": "Grace here"}, headers=FETCH)
    # The reply assigned Grace and took control from the bot: one line says it.
    assert lines(console.get(path).text) == ["Grace Hopper joined"]
    console.post(f"{path}/return-to-bot", data={"csrf_token": csrf}, headers=FETCH)
    assert lines(console.get(path).text) == ["Grace Hopper joined", "Returned to the bot", "Unassigned"]


def test_a_handover_to_a_human_names_the_reason_and_the_assignee(
    app_server: Any, app_tenant: Any, app_api: httpx.Client
) -> None:
    email = make_console_user(app_server, app_tenant, name="Grace Hopper")
    grace = next(a for a in app_api.get("/api/v1/agents").json()["data"] if a["name"] == "Grace Hopper")
    conv = start(app_api, "Bea")
    app_api.post(f"/api/v1/conversations/{conv}/handover", json={"to": "human", "agent_id": grace["id"], "reason": "customer_asked"})
    console = console_client(app_server, email)
    assert lines(console.get(f"/console/inbox/{conv}").text) == ["Handed to a human: customer asked", "Assigned to Grace Hopper"]


def test_a_closed_web_view_is_said_once(app_server: Any, app_tenant: Any, app_api: httpx.Client) -> None:
    from app.webviews.openings import _open_openings, close_opening, open_webview

    email = make_console_user(app_server, app_tenant)
    user = app_api.post("/api/v1/users", json={"name": "Carla"}).json()
    conv = app_api.post("/api/v1/conversations", json={"user_id": user["id"], "messages": [
        {"actor": {"type": "bot"}, "message_parts": [
            {"web_view": {"id": "card", "label": "Enter card details", "url": "https://bank.example/card"}}]}]}).json()
    bot = conv["messages"][0]["id"]
    app_server.in_tx(lambda tx: open_webview(tx, app_tenant.workspace_id, conv["id"], user["id"], bot, "card",
                                             settings=app_server.settings()))
    app_server.in_tx(lambda tx: close_opening(tx, _open_openings(tx.session, conv["id"], bot, "card")[-1], "submitted"))
    messages = app_api.get(f"/api/v1/conversations/{conv['id']}/messages").json()["data"]
    assert [m["actor"]["type"] for m in messages] == ["bot", "system"]  # the store keeps its system row
    console = console_client(app_server, email)
    html = transcript(console.get(f"/console/inbox/{conv['id']}").text)
    assert html.count("Web view opened") == 1
    assert len(re.findall(r"closed", html)) == 1, "the close is said once, under the web view"
    assert "after the form was submitted" in html
    # The folded row keeps its place in the seq order (console.js fetches after the last one).
    assert f'data-seq="{messages[1]["seq"]}" hidden' in html


def test_resolve_and_next_opens_the_next_conversation(app_server: Any, app_tenant: Any, app_api: httpx.Client) -> None:
    email = make_console_user(app_server, app_tenant)
    first, second, third = (start(app_api, n) for n in ("First", "Second", "Third"))  # newest last: Third on top
    console = console_client(app_server, email)
    csrf = page_csrf(console, f"/console/inbox/{second}")
    # Without script: a redirect to the conversation below it in the list.
    r = console.post(f"/console/inbox/{second}/status", data={"csrf_token": csrf, "status": "resolved", "then": "next"})
    assert r.status_code == 303 and r.headers["location"] == f"/console/inbox/{first}"
    assert app_api.get(f"/api/v1/conversations/{second}").json()["status"] == "resolved"
    # With script: JSON naming it. The last in the list goes up to the one above.
    r = console.post(f"/console/inbox/{first}/status", data={"csrf_token": csrf, "status": "resolved", "then": "next"},
                     headers=FETCH)
    assert r.json() == {"notice": "Conversation resolved.", "ok": True, "next": f"/console/inbox/{third}"}
    r = console.post(f"/console/inbox/{third}/status", data={"csrf_token": csrf, "status": "resolved", "then": "next", "view": "open"},
                     headers=FETCH)
    assert r.json()["next"] == "/console/inbox"  # none left: the list


def test_the_customer_panel_shows_what_customers_set_as_text(app_server: Any, app_tenant: Any, app_api: httpx.Client) -> None:
    from app.mail.replies import record_presence

    email = make_console_user(app_server, app_tenant)
    evil = '<img src=x onerror="alert(1)">'
    user = app_api.post("/api/v1/users", json={"name": evil, "properties": {evil: evil, "n": [1, "<b>"]}}).json()
    conv = app_api.post("/api/v1/conversations", json={"user_id": user["id"]}).json()["id"]
    other = app_api.post("/api/v1/users", json={"name": "Someone else"}).json()
    app_api.post("/api/v1/conversations", json={"user_id": other["id"]})  # another customer's: never listed
    console = console_client(app_server, email)
    for page in ("javascript:alert(1)", "data:text/html,hi"):
        app_server.in_tx(lambda tx, page=page: record_presence(tx, user["id"], page, "Chrome 1 on Linux"))
        html = console.get(f"/console/inbox/{conv}").text
        panel = html[html.index('id="customer-panel"'):]
        assert evil not in panel and "&lt;img src=x onerror=" in panel
        assert "javascript:" not in panel and "data:text" not in panel  # not a link, not shown
        assert "Chrome 1 on Linux" in panel and "None: this is their first." in panel
    # Another workspace's conversation is a 404, panel and all.
    stranger = app_server.new_tenant()
    with app_server.client(stranger) as api2:
        theirs = api2.post("/api/v1/users", json={"name": "Theirs"}).json()
        their_conv = api2.post("/api/v1/conversations", json={"user_id": theirs["id"]}).json()["id"]
    assert console.get(f"/console/inbox/{their_conv}").status_code == 404

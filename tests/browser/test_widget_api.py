"""The widget's page API (SPEC §12): identify, reset, and the types served beside widget.js."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import httpx
import jwt
import pytest
from playwright.sync_api import Page, expect

from app.assets import STATIC_DIR
from app.store.tables import Workspace
from tests.browser.widget_host import HostSite, bot_says, embed_page, serve_host_site, text, wait_for
from tests.conftest import LiveServer, Tenant


@pytest.fixture
def host() -> Iterator[HostSite]:
    yield from serve_host_site()


def identity_secret(api: httpx.Client, server: LiveServer, tenant: Tenant) -> str:
    return server.in_tx(lambda tx: tx.session.get(Workspace, tenant.workspace_id).identity_secret)  # type: ignore[no-any-return]


def log_text(page: Page) -> str:
    return page.get_by_role("log").inner_text()


def test_identify_switches_to_the_customer_and_reset_forgets_them(
    page: Page, server: LiveServer, tenant: Tenant, api: httpx.Client, host: HostSite
) -> None:
    page.goto(host.add("/", embed_page(server, tenant)))
    page.get_by_role("button", name="Open chat").click()
    page.get_by_role("textbox", name="Message").fill("Anonymous question")
    page.get_by_role("button", name="Send").click()
    expect(page.get_by_role("log")).to_contain_text("Anonymous question")
    # The customer signs in on the site: the page names them, signed by its server.
    ada = api.post("/api/v1/users", json={"external_id": "cust-ada", "name": "Ada"}).json()
    conv = api.post("/api/v1/conversations", json={"user_id": ada["id"]}).json()
    bot_says(api, conv["id"], text("Welcome back, Ada: your earlier conversation."))
    secret = identity_secret(api, server, tenant)
    token = jwt.encode({"sub": "cust-ada", "exp": int(time.time()) + 600}, secret, algorithm="HS256")
    page.evaluate("t => Backchannel.identify({user: {external_id: 'cust-ada', name: 'Ada'}, user_jwt: t})", token)
    expect(page.get_by_role("log")).to_contain_text("Welcome back, Ada")
    assert "Anonymous question" not in log_text(page)
    # Sign-out: forget them; the next open is a new anonymous visitor with an empty conversation.
    page.evaluate("Backchannel.reset()")
    expect(page.get_by_role("log")).not_to_contain_text("Welcome back, Ada")
    page.get_by_role("textbox", name="Message").fill("Who am I now?")
    page.get_by_role("button", name="Send").click()
    expect(page.get_by_role("log")).to_contain_text("Who am I now?")
    assert "Anonymous question" not in log_text(page)
    stored = page.evaluate("Object.keys(localStorage).filter(k => k.startsWith('backchannel:'))")
    users = wait_for(
        lambda: [u for u in api.get("/api/v1/users", params={"limit": 50}).json()["data"] if u["id"] != ada["id"]]
    )
    assert len(users) == 2 and len(stored) == 1  # two anonymous visitors; only the newest is remembered
    page.reload()
    page.get_by_role("button", name="Open chat").click()
    expect(page.get_by_role("log")).to_contain_text("Who am I now?")


def test_widget_d_ts_is_served_beside_widget_js_and_names_every_api_call(server: LiveServer) -> None:
    r = httpx.get(server.url + "/widget.d.ts")
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "*"
    types = r.text
    assert types == (STATIC_DIR / "widget.d.ts").read_text()
    source = (STATIC_DIR / "widget.js").read_text()
    api_block = source[source.index("var api = {") : source.index("window.Backchannel = api;")]
    calls = set(re.findall(r"^    (\w+): function", api_block, flags=re.M))
    assert calls >= {"open", "close", "toggle", "destroy", "identify", "reset", "setLocale", "on", "off"}
    for call in calls:
        assert re.search(rf"\b{call}[<(]", types), f"widget.d.ts lacks {call}()"
    for event in ("ready", "open", "close", "message", "unread"):
        assert re.search(rf"^\s+{event}: ", types, flags=re.M), f"widget.d.ts lacks the {event} event"


def test_identify_without_an_external_id_changes_nothing(
    page: Page, server: LiveServer, tenant: Tenant, host: HostSite
) -> None:
    messages: list[str] = []
    page.on("console", lambda m: messages.append(m.text))
    page.goto(host.add("/", embed_page(server, tenant)))
    page.evaluate("Backchannel.identify({user: {name: 'nobody'}})")
    assert any("identify needs" in m for m in messages)
    expect(page.get_by_role("button", name="Open chat")).to_be_visible()

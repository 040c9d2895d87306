"""An unsigned ``user`` claim in the browser (issue 15.3; SPEC §7).

With identity verification off, the host page may name its customer without a
``user_jwt``. The first visit creates the user and keeps the visitor token issued to them,
so a reload continues their conversation; another browser naming the same ``external_id``
(no token) cannot reach that user: the widget chats as an anonymous visitor instead, and
the customer's conversation and stored fields stay theirs.
"""

from __future__ import annotations

from typing import Any

import httpx
from playwright.sync_api import Page, expect

from tests.browser.widget_host import HostSite, embed_page, messages, wait_for
from tests.conftest import LiveServer, Tenant

CLAIM = "<script>window.BackchannelSettings = {user: {external_id: 'cust-7', name: 'Ada', email: 'ada@example.com'}};</script>"
FORGED = "<script>window.BackchannelSettings = {user: {external_id: 'cust-7', name: 'Mallory', email: 'm@evil.example'}};</script>"


def open_and_say(page: Page, words: str) -> None:
    page.get_by_role("button", name="Open chat").click()
    page.get_by_role("textbox", name="Message").fill(words)
    page.get_by_role("button", name="Send").click()


def conversations_of(api: httpx.Client, user_id: str) -> list[dict[str, Any]]:
    return api.get("/api/v1/conversations", params={"user_id": user_id}).json()["data"]  # type: ignore[no-any-return]


def test_an_unsigned_claim_continues_on_reload_and_cannot_be_taken_over_elsewhere(
    page: Page, browser: Any, server: LiveServer, tenant: Tenant, host: HostSite, api: httpx.Client
) -> None:
    page.goto(host.add("/account", embed_page(server, tenant, before=CLAIM)))
    open_and_say(page, "hello, it is Ada")
    ada = wait_for(lambda: api.get("/api/v1/users", params={"external_id": "cust-7"}).json()["data"], what="Ada")[0]
    assert (ada["name"], ada["email"]) == ("Ada", "ada@example.com")
    cid = wait_for(lambda: conversations_of(api, ada["id"]), what="Ada's conversation")[0]["id"]

    page.reload()  # the visitor token issued to Ada continues her conversation
    page.get_by_role("button", name="Open chat").click()
    expect(page.get_by_role("log")).to_contain_text("hello, it is Ada")

    # Another browser names the same customer, without her token: never her conversation.
    other = browser.new_context()
    try:
        intruder = other.new_page()
        intruder.goto(host.add("/forged", embed_page(server, tenant, before=FORGED)))
        open_and_say(intruder, "let me read Ada's chat")
        expect(intruder.get_by_role("log")).to_contain_text("let me read Ada's chat")
        expect(intruder.get_by_role("log")).not_to_contain_text("hello, it is Ada")
    finally:
        other.close()
    assert [m["message_parts"][0]["text"]["content"] for m in messages(api, cid)] == ["hello, it is Ada"]
    again = api.get(f"/api/v1/users/{ada['id']}").json()
    assert (again["name"], again["email"]) == ("Ada", "ada@example.com")

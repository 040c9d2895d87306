"""A handover told truthfully (issue 23, d14 and m10 of the walkthrough): "Waiting for a
teammate" from the handover until an agent's first reply, then "<name> joined" as a line in
the transcript; a reload shows the same, worked out from the history."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.browser.accessibility import assert_accessible
from tests.browser.conftest import screenshot_desktop_and_phone
from tests.browser.widget_host import HostSite, bot_says, embed_page, only_conversation, text
from tests.conftest import LiveServer, Tenant
from tests.console.support import make_console_user

pytestmark = pytest.mark.browser

PHONE = {"width": 390, "height": 844}


def _agent(api: httpx.Client, name: str) -> dict[str, Any]:
    return next(a for a in api.get("/api/v1/agents").json()["data"] if a["name"] == name)


def _agent_says(api: httpx.Client, conversation_id: str, agent_id: str, words: str) -> None:
    r = api.post(f"/api/v1/conversations/{conversation_id}/messages",
                 json={"actor": {"type": "agent", "id": agent_id}, "message_parts": [text(words)]})
    assert r.status_code == 201, r.text


def test_waiting_for_a_teammate_until_the_first_reply_then_a_joined_line(
    page: Any, server: LiveServer, tenant: Tenant, api: httpx.Client, host: HostSite
) -> None:
    from playwright.sync_api import expect

    make_console_user(server, tenant, email="alex@example.com", name="Alex Morgan")
    make_console_user(server, tenant, email="sam@example.com", name="Sam Lee")
    alex, sam = _agent(api, "Alex Morgan"), _agent(api, "Sam Lee")
    page.goto(host.add("/", embed_page(server, tenant)))
    page.get_by_role("button", name="Open chat").click()
    page.get_by_role("textbox", name="Message").fill("Talk to a human")
    page.get_by_role("button", name="Send").click()
    conv = only_conversation(api)
    bot_says(api, conv["id"], text("Connecting you to a member of our team — they'll be with you shortly."))
    log = page.get_by_role("log")
    expect(log).to_contain_text("Connecting you")

    # Assigned at once (Alex is online), but nobody has read the chat yet: no "talking to".
    r = api.post(f"/api/v1/conversations/{conv['id']}/handover", json={"to": "human", "agent_id": alex["id"]})
    assert r.json()["assignee_id"] == alex["id"]
    expect(page.get_by_text("Waiting for a teammate")).to_be_visible()
    expect(page.get_by_text("You're talking to", exact=False)).to_have_count(0)
    expect(log).not_to_contain_text("joined")
    screenshot_desktop_and_phone(page, "handover-waiting")
    assert_accessible(page, "widget waiting for a teammate")

    # The first reply: the line, then the message; the header names who is answering.
    _agent_says(api, conv["id"], alex["id"], "Hi, I'm Alex. Let me look at that for you.")
    joined = log.get_by_text("Alex Morgan joined", exact=True)
    expect(joined).to_be_visible()
    expect(page.get_by_text("You're talking to Alex Morgan")).to_be_visible()
    expect(page.get_by_text("Waiting for a teammate")).to_have_count(0)
    _agent_says(api, conv["id"], alex["id"], "Found it: the charge is from Rail Pass Ltd.")
    expect(log).to_contain_text("Rail Pass Ltd.")
    expect(log.get_by_text("Alex Morgan joined", exact=True)).to_have_count(1)  # once, not per message
    screenshot_desktop_and_phone(page, "handover-joined")
    assert_accessible(page, "widget after an agent joined")

    # A colleague takes over: their own line.
    _agent_says(api, conv["id"], sam["id"], "Sam here, I'll finish this for Alex.")
    expect(log.get_by_text("Sam Lee joined", exact=True)).to_be_visible()
    expect(page.get_by_text("You're talking to Sam Lee")).to_be_visible()

    def lines() -> list[str]:
        return page.locator(".msgs > *").evaluate_all(
            "nodes => nodes.map(n => n.classList.contains('joined') ? '+' + n.textContent"
            " : (n.querySelector('.bubble') || n).textContent)")

    expected = ["Talk to a human", "Connecting you to a member of our team — they'll be with you shortly.",
                "+Alex Morgan joined", "Hi, I'm Alex. Let me look at that for you.",
                "Found it: the charge is from Rail Pass Ltd.", "+Sam Lee joined", "Sam here, I'll finish this for Alex."]
    assert lines() == expected

    # A reload rebuilds the same story from the history.
    page.reload()
    page.get_by_role("button", name="Open chat").click()
    expect(page.get_by_role("log")).to_contain_text("Sam here")
    assert lines() == expected
    expect(page.get_by_text("You're talking to Sam Lee")).to_be_visible()

    # In the customer's language.
    page.evaluate("Backchannel.setLocale('de')")
    expect(page.get_by_role("log").get_by_text("Alex Morgan ist dem Chat beigetreten")).to_be_visible()


def test_back_to_the_bot_and_a_fresh_handover_waits_again(
    page: Any, server: LiveServer, tenant: Tenant, api: httpx.Client, host: HostSite
) -> None:
    from playwright.sync_api import expect

    make_console_user(server, tenant, email="alex@example.com", name="Alex Morgan")
    alex = _agent(api, "Alex Morgan")
    page.goto(host.add("/", embed_page(server, tenant)))
    page.get_by_role("button", name="Open chat").click()
    page.get_by_role("textbox", name="Message").fill("A person, please")
    page.get_by_role("button", name="Send").click()
    conv = only_conversation(api)
    _agent_says(api, conv["id"], alex["id"], "Alex here.")
    expect(page.get_by_text("You're talking to Alex Morgan")).to_be_visible()

    api.post(f"/api/v1/conversations/{conv['id']}/handover", json={"to": "bot"})
    bot_says(api, conv["id"], text("Freddy again. Anything else?"))
    expect(page.get_by_text("You're talking to Alex Morgan")).to_have_count(0)
    api.post(f"/api/v1/conversations/{conv['id']}/handover", json={"to": "human", "agent_id": alex["id"]})
    expect(page.get_by_text("Waiting for a teammate")).to_be_visible()
    _agent_says(api, conv["id"], alex["id"], "Back again.")
    # Alex joins a second time: after the bot had the conversation.
    expect(page.get_by_role("log").get_by_text("Alex Morgan joined", exact=True)).to_have_count(2)
    expect(page.get_by_text("You're talking to Alex Morgan")).to_be_visible()

"""Past actions tell the truth (issue 23, d17 and d20 of the walkthrough): a web view already
sent shows as completed and opens no fresh form; how each web view closed is said in plain
words, different for sent and dismissed (the stored event stays "Web view closed"); while a
person has the chat, the bot's postbacks, web views and quick replies are spent, with the
reason as their description. Also after a reload, from the history."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.browser.accessibility import assert_accessible
from tests.browser.conftest import screenshot_desktop_and_phone
from tests.browser.widget_host import HostSite, bot_says, embed_page, only_conversation, text
from tests.conftest import LiveServer, Tenant
from tests.console.support import make_console_user
from tests.webviews.support import SENTINELS, Receiver, card_form

pytestmark = pytest.mark.browser

PHONE = {"width": 390, "height": 844}
SPENT_DONE = "Completed: you already sent this."
SPENT_HUMAN = "No longer available: a teammate has taken over this chat."


def _statement_chat(page: Any, server: LiveServer, tenant: Tenant, host: HostSite, api: httpx.Client,
                    receiver: Receiver) -> tuple[str, dict[str, Any]]:
    """Freddy's statement story up to the carousel: a card form, then transactions to pick from."""
    from playwright.sync_api import expect

    assert api.post("/api/v1/webhook-endpoints", json={"url": receiver.url + "/hooks"}).status_code == 201
    shop = host.add("/", embed_page(server, tenant))
    page.goto(shop)
    page.get_by_role("button", name="Open chat").click()
    page.get_by_role("textbox", name="Message").fill("Account statement")
    page.get_by_role("button", name="Send").click()
    conv = only_conversation(api)
    bot_says(api, conv["id"], text("First, please verify your card."),
             {"web_view": {"label": "Enter card details", "form": card_form(receiver.url + "/hooks/card")}},
             {"web_view": {"label": "Use another card", "form": card_form(receiver.url + "/hooks/card")}})
    page.get_by_role("button", name="Enter card details").click()
    form = page.frame_locator("iframe[title='Enter card details']")
    form.get_by_label("Card number").fill(SENTINELS["card_number"])
    form.get_by_label("Expiry (MM/YY)").fill(SENTINELS["expiry"])
    form.get_by_label("Name on card").fill(SENTINELS["name"])
    form.get_by_role("button", name="Verify card").click()
    expect(page.locator("iframe[title='Enter card details']")).to_have_count(0)
    page.get_by_role("button", name="Use another card").click()
    page.get_by_role("dialog", name="Use another card").get_by_role("button", name="Close").click()
    bot_says(api, conv["id"], text("Thanks, card verified. Your recent transactions:"),
             {"carousel": {"cards": [
                 {"title": "Coffee Corner -€3.40", "buttons": [{"postback": {"label": "Details", "payload": "t1"}}]},
                 {"title": "Rail Pass -€89.00", "buttons": [{"postback": {"label": "Dispute", "payload": "t2"}}]},
             ]}},
             replies=[{"quick_replies": {"options": [{"label": "Talk to a human", "payload": "human"}]}}])
    expect(page.get_by_role("button", name="Talk to a human")).to_be_visible()
    return shop, conv


def test_a_sent_web_view_is_completed_and_outcomes_are_in_plain_words(
    page: Any, server: LiveServer, tenant: Tenant, api: httpx.Client, host: HostSite, receiver: Receiver
) -> None:
    from playwright.sync_api import expect

    shop, conv = _statement_chat(page, server, tenant, host, api, receiver)
    log = page.get_by_role("log")
    sent, dismissed = log.get_by_text("Sent: Enter card details", exact=True), \
        log.get_by_text("Closed without sending: Use another card", exact=True)
    expect(sent).to_be_visible()
    expect(dismissed).to_be_visible()
    expect(log.get_by_text("Web view closed")).to_have_count(0)  # the stored words, not the customer's
    done = page.get_by_role("button", name="Enter card details")
    expect(done).to_have_attribute("aria-disabled", "true")
    expect(done).to_have_accessible_description(SPENT_DONE)
    again = page.get_by_role("button", name="Use another card")  # dismissed: still there to use
    expect(again).not_to_have_attribute("aria-disabled", "true")
    expect(page.get_by_role("group", name="Coffee Corner -€3.40").get_by_role("button", name="Details")).to_be_enabled()
    done.scroll_into_view_if_needed()
    screenshot_desktop_and_phone(page, "webview-completed")
    assert_accessible(page, "widget with a completed web view")

    # The same story from the history, in another language too.
    page.goto(shop)
    page.get_by_role("button", name="Open chat").click()
    expect(page.get_by_role("log").get_by_text("Sent: Enter card details", exact=True)).to_be_visible()
    expect(page.get_by_role("button", name="Enter card details")).to_have_attribute("aria-disabled", "true")
    expect(page.get_by_role("log").get_by_text("Closed without sending: Use another card", exact=True)).to_be_visible()
    page.evaluate("Backchannel.setLocale('de')")
    expect(page.get_by_role("log").get_by_text("Gesendet: Enter card details", exact=True)).to_be_visible()
    expect(page.get_by_role("button", name="Enter card details")).to_have_accessible_description(
        "Erledigt: Sie haben das bereits gesendet.")
    # The API and the console keep the stored event.
    system = [m["message_parts"] for m in api.get(f"/api/v1/conversations/{conv['id']}/messages").json()["data"]
              if m["actor"]["type"] == "system"]
    assert system == [[{"text": {"content": "Web view closed"}}]] * 2


def test_while_a_person_has_the_chat_the_bots_actions_are_spent(
    page: Any, server: LiveServer, tenant: Tenant, api: httpx.Client, host: HostSite, receiver: Receiver
) -> None:
    from playwright.sync_api import expect

    make_console_user(server, tenant, email="alex@example.com", name="Alex Morgan")
    alex = next(a for a in api.get("/api/v1/agents").json()["data"] if a["name"] == "Alex Morgan")
    shop, conv = _statement_chat(page, server, tenant, host, api, receiver)
    page.get_by_role("button", name="Talk to a human").click()
    expect(page.get_by_role("log")).to_contain_text("Talk to a human")
    r = api.post(f"/api/v1/conversations/{conv['id']}/handover", json={"to": "human", "agent_id": alex["id"]})
    assert r.status_code == 200
    r = api.post(f"/api/v1/conversations/{conv['id']}/messages", json={
        "actor": {"type": "agent", "id": alex["id"]}, "message_parts": [text("Hi, Alex here. Which charge?")]})
    assert r.status_code == 201

    another = page.get_by_role("button", name="Use another card")
    expect(another).to_have_attribute("aria-disabled", "true")
    expect(another).to_have_accessible_description(SPENT_HUMAN)
    details = page.get_by_role("group", name="Coffee Corner -€3.40").get_by_role("button", name="Details")
    expect(details).to_have_attribute("aria-disabled", "true")
    expect(details).to_have_accessible_description(SPENT_HUMAN)
    expect(page.get_by_role("button", name="Enter card details")).to_have_accessible_description(SPENT_DONE)
    another.click(force=True)  # d20: no card form mid-chat with a person
    details.click(force=True)  # nor a postback the bot cannot answer
    page.get_by_role("textbox", name="Message").fill("The Rail Pass one")
    page.get_by_role("button", name="Send").click()
    # Sent after the clicks on one socket: once it is stored, anything they sent would be too.
    expect(page.locator(".msg.user[data-seq]").last).to_contain_text("The Rail Pass one")
    expect(page.get_by_role("dialog", name="Use another card")).to_have_count(0)
    users = [m["message_parts"][0]["text"]["content"]
             for m in api.get(f"/api/v1/conversations/{conv['id']}/messages").json()["data"]
             if m["actor"]["type"] == "user"]
    assert users == ["Account statement", "Talk to a human", "The Rail Pass one"]
    screenshot_desktop_and_phone(page, "spent-actions-human")
    assert_accessible(page, "widget with spent actions")

    # A reload shows the same; handed back to the bot, its actions work again.
    page.goto(shop)
    page.get_by_role("button", name="Open chat").click()
    expect(page.get_by_role("button", name="Use another card")).to_have_attribute("aria-disabled", "true")
    api.post(f"/api/v1/conversations/{conv['id']}/handover", json={"to": "bot"})
    expect(page.get_by_role("button", name="Use another card")).not_to_have_attribute("aria-disabled", "true")
    expect(page.get_by_role("group", name="Coffee Corner -€3.40").get_by_role("button", name="Details")).to_be_enabled()
    expect(page.get_by_role("button", name="Enter card details")).to_have_attribute("aria-disabled", "true")


def test_the_bots_quick_replies_go_while_a_person_has_the_chat(
    page: Any, server: LiveServer, tenant: Tenant, api: httpx.Client, host: HostSite
) -> None:
    from playwright.sync_api import expect

    page.goto(host.add("/", embed_page(server, tenant)))
    page.get_by_role("button", name="Open chat").click()
    page.get_by_role("textbox", name="Message").fill("Hello")
    page.get_by_role("button", name="Send").click()
    conv = only_conversation(api)
    bot_says(api, conv["id"], text("Connecting you to our team."),
             replies=[{"quick_replies": {"options": [{"label": "Account statement", "payload": "statement"}]}}])
    expect(page.get_by_role("button", name="Account statement")).to_be_visible()
    r = api.post(f"/api/v1/conversations/{conv['id']}/handover", json={"to": "human"})
    assert r.status_code == 200, r.text
    expect(page.get_by_text("Waiting for a teammate")).to_be_visible()
    expect(page.get_by_role("button", name="Account statement")).to_have_count(0)

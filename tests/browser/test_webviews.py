"""Web views in a real Chromium: the widget on a host page of another origin opens them.

The hosted-form story is AG Bank's: the bot asks for card details, the customer types them
into a Backchannel page in the widget's sheet, the values reach the bot's callback signed,
the sheet closes, ``webview.closed`` fires, the bot carries on — and the card number is in
no database file, no log line and no other webhook.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from tests.browser.conftest import screenshot
from tests.browser.widget_host import HostSite, bot_says, embed_page, only_conversation, serve_host_site, text, wait_for
from tests.conftest import LiveServer, Tenant
from tests.webviews.support import SENTINELS, Receiver, card_form, files_containing

pytestmark = pytest.mark.browser


@pytest.fixture
def owner_site() -> Iterator[HostSite]:
    """The bot owner's own web server (a third origin) for external web views."""
    yield from serve_host_site()


def start_chat(page: Any, server: LiveServer, tenant: Tenant, host: HostSite, api: httpx.Client, **embed: str) -> dict[str, Any]:
    from playwright.sync_api import expect

    page.goto(host.add("/shop", embed_page(server, tenant, **embed)))
    page.get_by_role("button", name="Open chat").click()
    page.get_by_role("textbox", name="Message").fill("I'd like my account statement")
    page.get_by_role("button", name="Send").click()
    conv = only_conversation(api)
    expect(page.get_by_role("log")).to_contain_text("I'd like my account statement")
    return conv


def webhook_endpoint(api: httpx.Client, url: str) -> dict[str, Any]:
    r = api.post("/api/v1/webhook-endpoints", json={"url": url})
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def hooks_of(receiver: Receiver, type_: str) -> list[dict[str, Any]]:
    return [x.json()["data"] for x in receiver.at("/hooks") if x.json()["type"] == type_]


def test_hosted_card_form_submits_to_the_bot_and_leaves_no_trace(
    page: Any, server: LiveServer, tenant: Tenant, api: httpx.Client, host: HostSite, receiver: Receiver, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    endpoint = webhook_endpoint(api, receiver.url + "/hooks")
    conv = start_chat(page, server, tenant, host, api)
    bot_says(api, conv["id"], text("I need to check your card first."),
             {"web_view": {"label": "Card details", "form": card_form(receiver.url + "/hooks/card"), "height": "tall"}})

    page.get_by_role("button", name="Card details").click()
    sheet = page.get_by_role("dialog", name="Card details")
    expect(sheet).to_be_visible()
    expect(page.locator("iframe[title='Card details']")).to_be_visible()
    form = page.frame_locator("iframe[title='Card details']")
    card = form.get_by_label("Card number")
    expect(card).to_have_attribute("autocomplete", "cc-number")
    expect(form.get_by_label("Expiry (MM/YY)")).to_have_attribute("autocomplete", "cc-exp")
    expect(form.get_by_label("Name on card")).to_have_attribute("autocomplete", "cc-name")
    wait_for(lambda: hooks_of(receiver, "webview.opened"), what="webview.opened")

    # Client-side validation first: nothing leaves the page until the fields are right.
    form.get_by_role("button", name="Verify card").click()
    expect(form.get_by_text("This field is required.").first).to_be_visible()
    assert receiver.at("/hooks/card") == []

    card.fill(SENTINELS["card_number"])
    form.get_by_label("Expiry (MM/YY)").fill(SENTINELS["expiry"])
    form.get_by_label("Name on card").fill(SENTINELS["name"])
    screenshot(page, "webview-hosted-form")
    form.get_by_role("button", name="Verify card").click()

    expect(page.locator("iframe[title='Card details']")).to_have_count(0)
    (call,) = receiver.at("/hooks/card")
    payload = Webhook(endpoint["secret"]).verify(call.body, call.headers)
    assert payload["data"]["values"] == SENTINELS
    assert payload["data"]["conversation_id"] == conv["id"]

    closed = wait_for(lambda: hooks_of(receiver, "webview.closed"), what="webview.closed")
    assert closed == [{"conversation_id": conv["id"], "message_id": payload["data"]["message_id"],
                       "webview_id": "wv_1", "status": "submitted"}], "one close, though page and server both closed"
    log = page.get_by_role("log")
    # The stored event keeps its words (API, console); the customer reads what happened.
    expect(log.get_by_text("Sent: Card details", exact=True)).to_be_visible()
    system = [m for m in api.get(f"/api/v1/conversations/{conv['id']}/messages").json()["data"]
              if m["actor"]["type"] == "system"]
    assert [m["message_parts"] for m in system] == [[{"text": {"content": "Web view closed"}}]]
    # Sent once: the button is spent (completed), and pressing it opens no fresh form.
    used = page.get_by_role("button", name="Card details")
    expect(used).to_have_attribute("aria-disabled", "true")
    expect(used).to_have_accessible_description("Completed: you already sent this.")
    expect(used).to_be_disabled()  # aria-disabled: Playwright, like assistive tech, reads it as disabled
    used.click(force=True)
    # A message sent after the click comes back after any answer to it (one socket, in order).
    page.get_by_role("textbox", name="Message").fill("Done, thanks")
    page.get_by_role("button", name="Send").click()
    expect(log.locator(".msg.user[data-seq]").last).to_contain_text("Done, thanks")
    expect(page.get_by_role("dialog", name="Card details")).to_have_count(0)

    # The bot resumes on webview.closed; its next message shows up in the transcript.
    bot_says(api, conv["id"], text("Thanks, your card is verified. Here are your transactions."))
    expect(log).to_contain_text("Thanks, your card is verified.")
    screenshot(page, "webview-after-submit")

    needles = list(SENTINELS.values())
    wait_for(lambda: len(hooks_of(receiver, "message.created")) >= 4, what="the bot's webhooks")
    assert files_containing(tmp_path, needles) == {}, "database, WAL or server log"
    others = [x.body.decode() for x in receiver.received if x.path != "/hooks/card"]
    assert not [body for body in others if any(n in body for n in needles)]
    transcript = json.dumps(api.get(f"/api/v1/conversations/{conv['id']}/messages").json())
    assert not any(n in transcript for n in needles)
    server.stop()
    assert files_containing(tmp_path, needles) == {}


def test_callback_field_errors_show_in_the_form(
    page: Any, server: LiveServer, tenant: Tenant, api: httpx.Client, host: HostSite, receiver: Receiver
) -> None:
    from playwright.sync_api import expect

    webhook_endpoint(api, receiver.url + "/hooks")
    receiver.answer("/hooks/card", 422, {"errors": {"card_number": "This card was declined."}})
    conv = start_chat(page, server, tenant, host, api)
    bot_says(api, conv["id"], {"web_view": {"label": "Card details", "form": card_form(receiver.url + "/hooks/card")}})
    page.get_by_role("button", name="Card details").click()
    form = page.frame_locator("iframe[title='Card details']")
    form.get_by_label("Card number").fill("4000 0000 0000 0002")
    form.get_by_label("Expiry (MM/YY)").fill("01/30")
    form.get_by_label("Name on card").fill("Ada Lovelace")
    form.get_by_role("button", name="Verify card").click()

    expect(form.get_by_text("This card was declined.")).to_be_visible()
    expect(form.get_by_label("Card number")).to_have_attribute("aria-invalid", "true")
    expect(form.get_by_label("Card number")).to_have_value("4000 0000 0000 0002")
    screenshot(page, "webview-callback-errors")
    assert hooks_of(receiver, "webview.closed") == []

    # A failing callback is a retryable error; the next try goes through and closes the sheet.
    receiver.answer("/hooks/card", 500)
    form.get_by_role("button", name="Verify card").click()
    expect(form.get_by_role("alert")).to_contain_text("try again")
    receiver.answer("/hooks/card", 200)
    form.get_by_role("button", name="Verify card").click()
    expect(page.locator("iframe[title='Card details']")).to_have_count(0)
    assert [c["status"] for c in wait_for(lambda: hooks_of(receiver, "webview.closed"))] == ["submitted"]


OWNER_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Apply</title>
<script src="{server}/static/webview.js"></script></head>
<body><h1>Apply for a card</h1><p id="ctx"></p>
<button id="done" type="button">Finish</button>
<script>
  document.getElementById("ctx").textContent = new URLSearchParams(location.search).get("bc_ctx") ? "has context" : "no context";
  Backchannel.setTitle("Gold card application");
  document.getElementById("done").onclick = function () {{ Backchannel.close({{result: "application received"}}); }};
</script></body></html>"""


def test_external_page_gets_a_verifiable_context_and_closes_itself_with_a_result(
    page: Any, server: LiveServer, tenant: Tenant, api: httpx.Client, host: HostSite, owner_site: HostSite, receiver: Receiver
) -> None:
    from playwright.sync_api import expect

    webhook_endpoint(api, receiver.url + "/hooks")
    owner_url = owner_site.add("/apply", OWNER_PAGE.format(server=server.url)) + "?product=gold"
    conv = start_chat(page, server, tenant, host, api)
    message = bot_says(api, conv["id"], {"carousel": {"cards": [
        {"title": "Gold card", "buttons": [{"web_view": {"label": "Apply", "url": owner_url, "height": "full"}}]}]}})

    page.get_by_role("group", name="Gold card").get_by_role("button", name="Apply").click()
    frame_el = page.locator("iframe[title='Apply']")
    expect(frame_el).to_be_visible()
    inner = page.frame_locator("iframe[title='Apply']")
    expect(inner.locator("#ctx")).to_have_text("has context")
    expect(page.get_by_role("dialog", name="Apply")).to_contain_text("Gold card application")  # setTitle

    src = frame_el.get_attribute("src")
    assert src.startswith(owner_site.origin + "/apply?") and parse_qs(urlsplit(src).query)["product"] == ["gold"]
    token = parse_qs(urlsplit(src).query)["bc_ctx"][0]
    verified = api.post("/api/v1/webview-contexts/verify", json={"token": token}).json()
    assert verified["conversation_id"] == conv["id"] and verified["message_id"] == message["id"]
    assert verified["webview_id"] == "wv_0_0_0" and verified["user_id"] == conv["user_id"]

    inner.get_by_role("button", name="Finish").click()
    expect(frame_el).to_have_count(0)
    closed = wait_for(lambda: hooks_of(receiver, "webview.closed"), what="webview.closed")
    assert closed == [{"conversation_id": conv["id"], "message_id": message["id"], "webview_id": "wv_0_0_0",
                       "status": "closed", "result": "application received"}]
    expect(page.get_by_role("log").get_by_text("Closed: Apply", exact=True)).to_be_visible()


def test_close_button_dismisses_and_a_forged_close_from_the_host_page_is_ignored(
    page: Any, server: LiveServer, tenant: Tenant, api: httpx.Client, host: HostSite, owner_site: HostSite, receiver: Receiver
) -> None:
    from playwright.sync_api import expect

    webhook_endpoint(api, receiver.url + "/hooks")
    owner_url = owner_site.add("/apply", OWNER_PAGE.format(server=server.url))
    conv = start_chat(page, server, tenant, host, api)
    bot_says(api, conv["id"], {"web_view": {"label": "Apply", "url": owner_url, "height": "compact"}})
    page.get_by_role("button", name="Apply").click()
    frame_el = page.locator("iframe[title='Apply']")
    expect(page.frame_locator("iframe[title='Apply']").locator("#ctx")).to_have_text("has context")

    # A script on the host page posts what a closing web view would post: nothing happens.
    # Messages arrive in order: once a marker posted after the forgery is seen, the widget has
    # already handled (and should have ignored) the forgery.
    page.evaluate("""(origin) => new Promise((resolve) => {
        const forged = {backchannel: "webview.close", status: "submitted", result: "forged"};
        window.dispatchEvent(new MessageEvent("message", {data: forged, origin: origin}));
        window.postMessage(forged, "*");
        window.addEventListener("message", (e) => { if (e.data === "marker") resolve(true); });
        window.postMessage("marker", "*");
    })""", owner_site.origin)
    expect(frame_el).to_be_visible()
    assert hooks_of(receiver, "webview.closed") == []

    page.get_by_role("dialog", name="Apply").get_by_role("button", name="Close").click()
    expect(frame_el).to_have_count(0)
    closed = wait_for(lambda: hooks_of(receiver, "webview.closed"), what="webview.closed")
    assert [(c["status"], c.get("result")) for c in closed] == [("dismissed", None)]
    expect(page.get_by_role("log").get_by_text("Closed without sending: Apply", exact=True)).to_be_visible()
    expect(page.get_by_role("button", name="Apply")).not_to_have_attribute("aria-disabled", "true")  # may try again


def test_a_page_that_refuses_framing_opens_in_a_new_tab_and_still_resumes(
    page: Any, server: LiveServer, tenant: Tenant, api: httpx.Client, host: HostSite, owner_site: HostSite, receiver: Receiver
) -> None:
    from playwright.sync_api import expect

    webhook_endpoint(api, receiver.url + "/hooks")
    owner_url = owner_site.add("/apply", OWNER_PAGE.format(server=server.url))
    owner_site.headers["/apply"] = {"X-Frame-Options": "DENY", "Content-Security-Policy": "frame-ancestors 'none'"}
    conv = start_chat(page, server, tenant, host, api)
    message = bot_says(api, conv["id"], {"web_view": {"label": "Apply", "url": owner_url, "height": "tall"}})
    page.get_by_role("button", name="Apply").click()
    dialog = page.get_by_role("dialog", name="Apply")
    expect(dialog).to_be_visible()

    with page.context.expect_page() as opened:
        dialog.get_by_role("button", name="Open in new tab").click()
    tab = opened.value
    expect(tab.locator("#ctx")).to_have_text("has context")
    expect(dialog).to_contain_text("Continue in the new tab")
    screenshot(page, "webview-new-tab-fallback")

    tab.get_by_role("button", name="Finish").click()
    expect(dialog).to_have_count(0)
    closed = wait_for(lambda: hooks_of(receiver, "webview.closed"), what="webview.closed")
    assert closed == [{"conversation_id": conv["id"], "message_id": message["id"], "webview_id": "wv_0",
                       "status": "closed", "result": "application received"}]
    # Playwright's sync API only learns of the close while it waits on something: wait for it.
    if not tab.is_closed():
        tab.wait_for_event("close", timeout=10_000)

    # a tab the customer simply closes also gives the chat back
    page.get_by_role("button", name="Apply").click()
    with page.context.expect_page() as opened:
        page.get_by_role("dialog", name="Apply").get_by_role("button", name="Open in new tab").click()
    opened.value.close()
    expect(page.get_by_role("dialog", name="Apply")).to_have_count(0)
    wait_for(lambda: len(hooks_of(receiver, "webview.closed")) == 2, what="second webview.closed")

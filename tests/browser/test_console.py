"""The console in Chromium: log in, manage API tokens and widget settings, work the Inbox live."""

from __future__ import annotations

import re
from typing import Any

import httpx
from playwright.sync_api import expect

from tests.browser.conftest import screenshot
from tests.conftest import LiveServer, Tenant
from tests.console.support import PASSWORD, make_console_user
from tests.receivers import eventually


def log_in(page: Any, server: LiveServer, email: str, password: str = PASSWORD) -> None:
    page.goto(server.url + "/console")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("link", name="Inbox", exact=True)).to_be_visible()


def test_login_then_generate_use_and_revoke_a_token(page: Any, server: LiveServer, tenant: Tenant) -> None:
    email = make_console_user(server, tenant)
    page.goto(server.url + "/console")
    expect(page.get_by_role("button", name="Log in")).to_be_visible()
    screenshot(page, "console-login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill("wrong password")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_contain_text("do not match")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()

    page.get_by_role("link", name="API Tokens").click()
    page.get_by_label("Name").fill("Freddy bot")
    page.get_by_role("button", name="Generate token").click()
    token = page.get_by_text(re.compile(r"^bch_")).inner_text().strip()
    screenshot(page, "console-tokens-generated")

    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"}) as api:
        assert api.post("/api/v1/users", json={"name": "Via console token"}).status_code == 201
        row = page.get_by_role("row", name=re.compile("Freddy bot"))
        # Revoke asks first: dismissed, nothing happens; accepted, the token is revoked.
        asked: list[str] = []
        page.once("dialog", lambda d: (asked.append(d.message), d.dismiss()))
        row.get_by_role("button", name="Revoke").click()
        assert api.post("/api/v1/users", json={"name": "Still works"}).status_code == 201
        assert asked and "Freddy bot" in asked[0]
        page.once("dialog", lambda d: d.accept())
        row.get_by_role("button", name="Revoke").click()
        expect(page.get_by_role("status")).to_contain_text("revoked")
        refused = api.post("/api/v1/users", json={"name": "After revoke"})
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "invalid_token"
    expect(page.get_by_role("row", name=re.compile("Freddy bot")).get_by_role("button", name="Revoke")).to_have_count(0)
    screenshot(page, "console-tokens")


def test_widget_settings_save_through_the_same_action_as_the_api(
    page: Any, server: LiveServer, tenant: Tenant, api: httpx.Client
) -> None:
    log_in(page, server, make_console_user(server, tenant))
    page.get_by_role("link", name="Widget").click()
    page.get_by_label("Colour").fill("#cc3366")
    page.get_by_label("Greeting").fill("Hello from AG Bank")
    page.get_by_label("Allowed origins").fill("https://shop.example.com\nnot an origin")
    page.get_by_role("button", name="Save").click()
    # The bad origin is reported next to its field, and nothing was saved.
    expect(page.locator("#f-allowed_origins-error")).to_contain_text("origin")
    assert api.get("/api/v1/widget-settings").json()["greeting"] != "Hello from AG Bank"
    page.get_by_label("Allowed origins").fill("https://shop.example.com")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status")).to_contain_text("saved")
    settings = api.get("/api/v1/widget-settings").json()
    assert settings["theme_color"] == "#cc3366"
    assert settings["greeting"] == "Hello from AG Bank"
    assert settings["allowed_origins"] == ["https://shop.example.com"]
    assert tenant.widget_key in page.locator("#embed-snippet").inner_text()
    page.get_by_role("button", name="Reveal secret").click()
    expect(page.get_by_text(re.compile(r"^ids_"))).to_be_visible()
    screenshot(page, "console-widget")


def test_customer_message_appears_live_and_agent_reply_takes_over(
    page: Any, server: LiveServer, tenant: Tenant, api: httpx.Client
) -> None:
    log_in(page, server, make_console_user(server, tenant, name="Grace Hopper"))
    user = api.post("/api/v1/users", json={"name": "Bea Customer", "email": "bea@example.com"}).json()
    conv = api.post("/api/v1/conversations", json={
        "user_id": user["id"],
        "messages": [
            {"actor": {"type": "user"}, "message_parts": [{"text": {"content": "Hi, I lost my card"}}]},
            {"actor": {"type": "bot"}, "message_parts": [{"text": {"content": "Sorry to hear that! What next?"}}],
             "reply_parts": [{"quick_replies": {"options": [{"label": "Block card", "payload": "block"},
                                                           {"label": "Talk to a human", "payload": "human"}]}}]},
        ],
    }).json()
    expect(page.locator("#live-status")).to_have_text("Live")
    page.reload()  # the conversation was created before the page loaded
    expect(page.locator("#live-status")).to_have_text("Live")
    page.get_by_role("link", name=re.compile("Bea Customer")).click()
    log = page.get_by_role("log")
    expect(log).to_contain_text("Hi, I lost my card")
    expect(log.get_by_text("Talk to a human")).to_be_visible()
    expect(page.locator("#live-status")).to_have_text("Live")

    # The customer picks a quick reply and writes again: both appear without a reload.
    bot_message = conv["messages"][1]["id"]
    api.post(f"/api/v1/conversations/{conv['id']}/messages", json={
        "actor": {"type": "user"}, "message_parts": [{"text": {"content": "Talk to a human"}}],
        "reply_to": {"message_id": bot_message, "payload": "human"}})
    api.post(f"/api/v1/conversations/{conv['id']}/messages", json={
        "actor": {"type": "user"}, "message_parts": [{"text": {"content": "Anyone there?"}}]})
    expect(log).to_contain_text("Anyone there?")
    api.post(f"/api/v1/conversations/{conv['id']}/typing", json={"actor": {"type": "user"}, "on": True})
    expect(page.locator("#typing")).to_contain_text("typing")

    page.get_by_role("textbox", name="Reply").fill("Hello Bea, Grace here. I can help.")
    page.get_by_role("button", name="Send reply").click()
    expect(log.get_by_text("Hello Bea, Grace here. I can help.")).to_have_count(1)
    expect(page.get_by_role("textbox", name="Reply")).to_have_value("")
    # Replying as a human took the conversation over from the bot.
    expect(page.locator("#assignee-label")).to_contain_text("Grace Hopper")
    stored = api.get(f"/api/v1/conversations/{conv['id']}").json()
    agents = {a["id"]: a for a in api.get("/api/v1/agents").json()["data"]}
    assert agents[stored["assignee_id"]]["name"] == "Grace Hopper"
    assert agents[stored["assignee_id"]]["kind"] == "human"
    last = api.get(f"/api/v1/conversations/{conv['id']}/messages").json()["data"][-1]
    assert last["actor"] == {"type": "agent", "id": stored["assignee_id"]}
    # The conversation list follows live too: the new assignee and the newest message.
    row = page.locator("#conversation-list")
    expect(row).to_contain_text("Grace Hopper")
    expect(row).to_contain_text("Hello Bea, Grace here.")
    screenshot(page, "console-inbox-conversation")

    # On a phone the open conversation takes the screen, with a way back to the list.
    page.set_viewport_size({"width": 390, "height": 844})
    expect(page.get_by_role("textbox", name="Reply")).to_be_visible()
    expect(page.get_by_role("link", name="All conversations")).to_be_visible()
    screenshot(page, "console-inbox-mobile")
    page.set_viewport_size({"width": 1280, "height": 800})

    page.get_by_role("button", name="Resolve").click()
    expect(page.get_by_role("button", name="Reopen")).to_be_visible()
    assert api.get(f"/api/v1/conversations/{conv['id']}").json()["status"] == "resolved"
    page.get_by_role("link", name="Resolved").click()
    expect(page.get_by_role("link", name=re.compile("Bea Customer"))).to_be_visible()


def test_new_conversation_appears_live_in_the_list(
    page: Any, server: LiveServer, tenant: Tenant, api: httpx.Client
) -> None:
    log_in(page, server, make_console_user(server, tenant))
    expect(page.locator("#live-status")).to_have_text("Live")
    expect(page.get_by_text("No open conversations")).to_be_visible()
    user = api.post("/api/v1/users", json={"name": "Live Larry"}).json()
    api.post("/api/v1/conversations", json={"user_id": user["id"], "messages": [
        {"actor": {"type": "user"}, "message_parts": [{"text": {"content": "Is anyone there?"}}]}]})
    link = page.get_by_role("link", name=re.compile("Live Larry"))
    expect(link).to_contain_text("Is anyone there?")
    screenshot(page, "console-inbox")


def test_webhook_endpoint_test_event_delivery_log_and_retry(page: Any, server: LiveServer, tenant: Tenant) -> None:
    from standardwebhooks.webhooks import Webhook

    from tests.receivers import Receiver, eventually

    failing = {"on": True}

    def respond(req: Any) -> tuple[int, dict[str, str], bytes]:
        if failing["on"]:
            return 500, {}, b"receiver is down for maintenance"
        return 200, {}, b"thanks"

    with Receiver(respond) as receiver:
        log_in(page, server, make_console_user(server, tenant))
        page.get_by_role("link", name="Webhooks").click()
        page.get_by_role("button", name="Add endpoint").click()
        page.get_by_label("URL").fill("not a url")
        page.get_by_role("button", name="Save").click()
        expect(page.locator("#f-url-error")).to_be_visible()  # the error sits under its field
        page.get_by_label("URL").fill(receiver.url)
        page.get_by_label("Description").fill("Freddy")
        page.get_by_role("button", name="Save").click()
        # Back on the list, with the new endpoint's secret shown at once.
        expect(page.get_by_role("heading", name=receiver.url)).to_be_visible()
        secret = page.get_by_text(re.compile(r"^whsec_")).inner_text().strip()
        screenshot(page, "console-webhook-added")
        with page.expect_navigation():  # a form POST: wait for its page before reading it
            page.get_by_role("button", name="Reveal secret").click()  # and again whenever asked
        expect(page.get_by_text(re.compile(r"^whsec_"))).to_have_text(secret)
        page.get_by_role("button", name="Send test").click()
        expect(page.get_by_role("status")).to_contain_text("Test event sent")

        first = receiver.wait_count(1)[0]
        # Signed as Standard Webhooks: the reference library verifies it with the revealed secret.
        payload = Webhook(secret).verify(first.body, first.headers)
        assert payload["type"] == "webhook.test"

        # The failure is in the log with its status, duration and response excerpt.
        def logged_failure() -> bool:
            page.reload()
            return page.get_by_text("HTTP 500").count() > 0
        eventually(logged_failure)
        expect(page.get_by_text("receiver is down for maintenance").first).to_be_visible()
        # Under load a scheduled retry may already sit in the collapsed "All attempts" group: look at the shown one.
        expect(page.get_by_text(re.compile(r"\d+ ms")).filter(visible=True).first).to_be_visible()
        screenshot(page, "console-webhooks")

        # Let the retries run out, then retry by hand once the receiver is back.
        def failed_for_good() -> bool:
            page.reload()
            return page.get_by_text("Failed", exact=True).count() > 0
        eventually(failed_for_good, timeout=30)
        failing["on"] = False
        page.get_by_role("button", name="Retry").click()
        expect(page.get_by_role("status")).to_contain_text("queued again")
        eventually(lambda: receiver.succeeded())
        ok = receiver.succeeded()[0]
        assert ok.webhook_id == first.webhook_id  # the same event, deduplicable
        Webhook(secret).verify(ok.body, ok.headers)

        def logged_success() -> bool:
            page.reload()
            return page.get_by_text("Succeeded", exact=True).count() > 0
        eventually(logged_success)

        page.get_by_role("link", name=re.compile("full log")).click()
        expect(page.get_by_role("heading", name="Delivery log")).to_be_visible()
        expect(page.get_by_text("HTTP 200").first).to_be_visible()
        expect(page.get_by_test_id("endpoint-health")).to_contain_text("last delivered")
        page.get_by_text("Payload sent").first.click()
        expect(page.get_by_text('"webhook.test"').first).to_be_visible()
        screenshot(page, "console-webhook-endpoint")
        page.get_by_role("link", name="← Webhooks").click()
        expect(page.get_by_role("link", name=re.compile("full log"))).to_be_visible()
        screenshot(page, "console-webhooks-list")


def test_webhook_events_are_one_choice_and_delete_asks_first(page: Any, server: LiveServer, tenant: Tenant) -> None:
    log_in(page, server, make_console_user(server, tenant))
    page.get_by_role("link", name="Webhooks").click()
    page.get_by_role("button", name="Add endpoint").click()
    page.get_by_label("URL").fill("https://hooks.example.com/one")
    all_events = page.get_by_role("radio", name=re.compile("All events"))
    only = page.get_by_role("radio", name="Only the events I tick")
    expect(all_events).to_be_checked()
    # Ticking a single event switches the choice; choosing "All events" again unticks it.
    page.get_by_role("checkbox", name="message.created").check()
    expect(only).to_be_checked()
    all_events.check()
    expect(page.get_by_role("checkbox", name="message.created")).not_to_be_checked()
    page.get_by_role("checkbox", name="conversation.resolved").check()
    screenshot(page, "console-webhook-events-choice")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("heading", name="https://hooks.example.com/one")).to_be_visible()
    page.get_by_role("link", name=re.compile("full log")).click()
    with httpx.Client(base_url=server.url, headers=tenant.headers) as api:
        (endpoint,) = api.get("/api/v1/webhook-endpoints").json()["data"]
        assert endpoint["events"] == ["conversation.resolved"]

        page.once("dialog", lambda d: d.dismiss())
        page.get_by_role("button", name="Delete endpoint").click()
        expect(page.get_by_role("heading", name="https://hooks.example.com/one")).to_be_visible()
        assert len(api.get("/api/v1/webhook-endpoints").json()["data"]) == 1
        page.once("dialog", lambda d: d.accept())
        page.get_by_role("button", name="Delete endpoint").click()
        expect(page.get_by_role("status")).to_contain_text("deleted")
        assert api.get("/api/v1/webhook-endpoints").json()["data"] == []


def test_widget_and_inbox_talk_live_and_the_widget_follows_settings(
    browser: Any, page: Any, server: LiveServer, tenant: Tenant
) -> None:
    from tests.browser.widget_host import embed_page, serve_host_site

    sites = serve_host_site()
    site = next(sites)
    customer = browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        shop = site.add("/", embed_page(server, tenant))
        log_in(page, server, make_console_user(server, tenant, name="Grace Hopper"))
        expect(page.locator("#live-status")).to_have_text("Live")

        widget = customer.new_page()
        widget.goto(shop)
        widget.get_by_role("button", name="Open chat").click()
        widget.get_by_role("textbox", name="Message").fill("Hello from the widget")
        widget.get_by_role("button", name="Send", exact=True).click()

        # The customer's message arrives in the Inbox list, live, and opens as a transcript.
        page.get_by_role("link", name=re.compile("Hello from the widget")).click()
        expect(page.get_by_role("log")).to_contain_text("Hello from the widget")
        widget.get_by_role("textbox", name="Message").fill("Are you a robot?")
        widget.get_by_role("button", name="Send", exact=True).click()
        expect(page.get_by_role("log")).to_contain_text("Are you a robot?")

        # The agent's typing shows in the widget while they write.
        page.get_by_role("textbox", name="Reply").press_sequentially("No, I'm Grace")
        expect(widget.get_by_text("Grace Hopper is typing…")).to_be_visible()
        page.get_by_role("textbox", name="Reply").fill("No, I'm Grace, a human. How can I help?")
        page.get_by_role("button", name="Send reply").click()
        customer_log = widget.get_by_role("log")
        expect(customer_log).to_contain_text("No, I'm Grace, a human. How can I help?")
        expect(widget.get_by_text("You're talking to Grace Hopper")).to_be_visible()
        screenshot(widget, "console-reply-in-widget")

        # Settings saved in the console reach the widget.
        page.get_by_role("link", name="Widget", exact=True).click()
        page.get_by_label("Colour").fill("#cc3366")
        page.get_by_label("Greeting").fill("Welcome to Northwind, we're here to help")
        page.get_by_role("button", name="Save").click()
        expect(page.get_by_role("status")).to_contain_text("saved")
        fresh = customer.new_page()
        fresh.goto(shop)
        fresh.get_by_role("button", name="Open chat").click()
        expect(fresh.get_by_text("Welcome to Northwind, we're here to help")).to_be_visible()
        launcher_colour = fresh.evaluate(
            "() => { const h = [...document.querySelectorAll('*')].find(e => e.shadowRoot);"
            " return getComputedStyle(h.shadowRoot.querySelector('.launcher')).backgroundColor; }"
        )
        assert launcher_colour == "rgb(204, 51, 102)"
    finally:
        customer.close()
        sites.close()


def test_transcript_shows_every_part_and_web_views_without_their_data(
    page: Any, server: LiveServer, tenant: Tenant, api: httpx.Client
) -> None:
    from app.webviews.openings import _open_openings, close_opening, open_webview

    log_in(page, server, make_console_user(server, tenant))
    user = api.post("/api/v1/users", json={"name": "Carla Cardholder"}).json()
    conv = api.post("/api/v1/conversations", json={"user_id": user["id"], "messages": [
        {"actor": {"type": "user"}, "message_parts": [{"text": {"content": "Statement please, see https://example.com/help"}}]},
        {"actor": {"type": "bot"}, "message_parts": [
            {"text": {"content": "<b>not bold</b> Please confirm your card"}},
            {"web_view": {"id": "card", "label": "Enter card details", "url": "https://bank.example/card"}},
            {"image": {"url": "https://example.com/ok.gif", "alt": "Thumbs up"}},
            {"carousel": {"cards": [{"title": "Coffee shop", "subtitle": "-3.20 EUR",
                                     "buttons": [{"url_button": {"label": "Details", "url": "https://example.com/t1"}}]}]}},
        ], "reply_parts": [{"dropdown": {"placeholder": "Statement period",
                                         "options": [{"label": "Last month", "payload": "1m"}]}}]},
    ]}).json()
    bot = conv["messages"][1]["id"]
    page.goto(f"{server.url}/console/inbox/{conv['id']}")
    log = page.get_by_role("log")
    expect(log.get_by_role("link", name="https://example.com/help")).to_be_visible()  # linkified
    expect(log).to_contain_text("<b>not bold</b>")  # text is never HTML
    expect(log.get_by_role("img", name="Thumbs up")).to_be_visible()
    expect(log.get_by_role("group", name="Coffee shop").get_by_role("link", name="Details")).to_be_visible()
    expect(log).to_contain_text("Statement period")
    expect(page.locator("#live-status")).to_have_text("Live")

    # The customer opens the web view and submits it: the Inbox shows that, and nothing else.
    # (Done straight in the store, which publishes nothing, so the page is reloaded.)
    server.in_tx(lambda tx: open_webview(tx, tenant.workspace_id, conv["id"], user["id"], bot, "card",
                                         settings=server.settings()))
    page.reload()
    expect(log).to_contain_text("Web view opened")
    expect(log).to_contain_text("still open")
    # Only the server says "submitted" (a browser's close never does): close the opening its way.
    server.in_tx(lambda tx: close_opening(tx, _open_openings(tx.session, conv["id"], bot, "card")[-1],
                                          "submitted", "card-4111-ok"))
    page.reload()
    # Said once, under the web view's message (the store's "Web view closed" row is not repeated).
    expect(log).to_contain_text("closed after the form was submitted")
    expect(log.get_by_text("Web view closed", exact=True)).to_be_hidden()
    assert "card-4111-ok" not in page.content()
    screenshot(page, "console-inbox-rich-transcript")


def test_admin_invites_an_agent_who_works_only_the_inbox(browser: Any, page: Any, server: LiveServer, tenant: Tenant) -> None:
    log_in(page, server, make_console_user(server, tenant))
    page.get_by_role("link", name="Team").click()
    page.get_by_label("Full name").fill("Alan Agent")
    page.get_by_label("Email address").fill("alan@example.com")
    page.get_by_label("Temporary password").fill("short")
    page.get_by_role("button", name="Invite").click()
    expect(page.locator("#invite-password-error")).to_contain_text("at least 8 characters")
    expect(page.get_by_label("Full name")).to_have_value("Alan Agent")  # nothing typed is lost
    page.get_by_label("Temporary password").fill("a much longer password")
    page.get_by_role("button", name="Invite").click()
    row = page.get_by_role("row", name=re.compile("Alan Agent"))
    expect(row.get_by_role("combobox", name="Role of Alan Agent")).to_have_value("agent")
    screenshot(page, "console-team")

    agent = browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        other = agent.new_page()
        log_in(other, server, "alan@example.com", "a much longer password")
        expect(other.get_by_role("link", name="API Tokens")).to_have_count(0)
        other.goto(server.url + "/console/settings/webhooks")
        expect(other.get_by_role("heading", name="Not allowed")).to_be_visible()
        # Logging out ends the session: the Inbox asks for a login again.
        other.goto(server.url + "/console/inbox")
        other.get_by_role("button", name="Log out").click()
        expect(other.get_by_role("button", name="Log in")).to_be_visible()
        other.goto(server.url + "/console/inbox")
        expect(other.get_by_role("button", name="Log in")).to_be_visible()

        # Alan changes his own name; the admin then removes him (after saying yes).
        log_in(other, server, "alan@example.com", "a much longer password")
        other.get_by_role("link", name=re.compile("Alan Agent")).click()
        other.get_by_label("Your name").fill("Alan Turing")
        other.get_by_role("button", name="Save name").click()
        expect(other.get_by_role("status")).to_contain_text("Your name is saved")
        screenshot(other, "console-account")
        page.reload()
        row = page.get_by_role("row", name=re.compile("Alan Turing"))
        page.once("dialog", lambda d: d.dismiss())
        row.get_by_role("button", name=re.compile("^Remove")).click()
        expect(page.get_by_role("row", name=re.compile("Alan Turing"))).to_be_visible()
        page.once("dialog", lambda d: d.accept())
        row.get_by_role("button", name=re.compile("^Remove")).click()
        expect(page.get_by_role("status")).to_contain_text("can no longer log in")
        expect(page.get_by_role("row", name=re.compile("Alan Turing"))).to_have_count(0)
        other.reload()
        expect(other.get_by_role("button", name="Log in")).to_be_visible()
    finally:
        agent.close()


def test_handover_waiting_queue_and_return_to_bot(page: Any, server: LiveServer, tenant: Tenant, api: httpx.Client) -> None:
    """A conversation handed to humans waits when nobody is available, shows who has control,
    and "Return to bot" gives it back (SPEC §11)."""
    log_in(page, server, make_console_user(server, tenant, name="Grace Hopper"))
    grace = next(a for a in api.get("/api/v1/agents").json()["data"] if a["name"] == "Grace Hopper")
    server.in_tx(lambda tx: tx.db.run("UPDATE agent SET status = ? WHERE id = ?", ("away", grace["id"])))
    user = api.post("/api/v1/users", json={"name": "Wes Waiting"}).json()
    conv = api.post("/api/v1/conversations", json={"user_id": user["id"], "messages": [
        {"actor": {"type": "user"}, "message_parts": [{"text": {"content": "I want a person please"}}]}]}).json()
    r = api.post(f"/api/v1/conversations/{conv['id']}/handover", json={"to": "human", "reason": "customer_asked"})
    assert (r.json()["handled_by"], r.json()["assignee_id"]) == ("human", None)

    bea = api.post("/api/v1/users", json={"name": "Bea Bot"}).json()
    api.post("/api/v1/conversations", json={"user_id": bea["id"], "messages": [
        {"actor": {"type": "user"}, "message_parts": [{"text": {"content": "The bot is fine"}}]}]})
    # The filters beside the tabs: handled by a human, then by the bot.
    page.reload()
    rows = page.locator("#conversation-list .conv-list > li")
    expect(rows).to_have_count(2)
    page.get_by_label("Handled by").select_option("human")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("Wes Waiting")
    page.get_by_label("Handled by").select_option("bot")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("Bea Bot")
    page.get_by_label("Handled by").select_option("")
    expect(rows).to_have_count(2)

    page.get_by_role("link", name="Waiting", exact=True).click()
    link = page.get_by_role("link", name=re.compile("Wes Waiting"))
    expect(link).to_contain_text("Waiting")
    link.click()
    expect(page.locator("#control-label")).to_have_text("Waiting for a human")
    expect(page.locator("#reply-hint")).not_to_contain_text("takes over from the bot")
    # The bot may not talk over the humans meanwhile.
    refused = api.post(f"/api/v1/conversations/{conv['id']}/messages",
                       json={"message_parts": [{"text": {"content": "Bot here!"}}]})
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "handled_by_human"
    screenshot(page, "console-inbox-waiting")

    page.get_by_role("textbox", name="Reply").fill("Grace here, I've got you.")
    page.get_by_role("button", name="Send reply").click()
    expect(page.locator("#assignee-label")).to_contain_text("Grace Hopper")
    expect(page.locator("#control-label")).to_have_text("Human")
    # Taken: it leaves the waiting queue.
    expect(page.locator("#conversation-list")).to_contain_text("Nobody is waiting")
    page.get_by_role("link", name="Open", exact=True).click()
    page.get_by_role("link", name=re.compile("Wes Waiting")).click()
    page.get_by_role("button", name="Return to bot").click()
    expect(page.locator("#control-label")).to_have_text("Bot")
    expect(page.get_by_role("button", name="Return to bot")).to_have_count(0)
    stored = api.get(f"/api/v1/conversations/{conv['id']}").json()
    assert (stored["handled_by"], stored["assignee_id"]) == ("bot", None)
    expect(page.get_by_role("link", name=re.compile("Wes Waiting"))).to_contain_text("Bot")
    assert api.post(f"/api/v1/conversations/{conv['id']}/messages",
                    json={"message_parts": [{"text": {"content": "Bot here!"}}]}).status_code == 201
    screenshot(page, "console-inbox-returned-to-bot")


def test_add_note_is_for_the_team_alone(page: Any, server: LiveServer, tenant: Tenant, api: httpx.Client) -> None:
    """"Add note" turns the Reply box's text into a private note: shown in the console, carried by
    the API marked private, never in the customer's widget (SPEC §11)."""
    log_in(page, server, make_console_user(server, tenant, name="Grace Hopper"))
    user = api.post("/api/v1/users", json={"name": "Nora Note"}).json()
    conv = api.post("/api/v1/conversations", json={"user_id": user["id"], "messages": [
        {"actor": {"type": "user"}, "message_parts": [{"text": {"content": "My card was charged twice"}}]}]}).json()
    page.reload()
    page.get_by_role("link", name=re.compile("Nora Note")).click()
    page.get_by_role("textbox", name="Reply").fill("Checked: the second charge is a pre-authorisation.")
    page.get_by_role("button", name="Add note").click()
    note = page.get_by_role("article", name=re.compile("Private note by Grace Hopper"))
    expect(note).to_contain_text("pre-authorisation")
    expect(page.get_by_role("textbox", name="Reply")).to_have_value("")
    # A note takes nothing over: the bot still has the conversation.
    expect(page.locator("#control-label")).to_have_text("Bot")
    listed = api.get(f"/api/v1/conversations/{conv['id']}/messages").json()["data"]
    assert [m["private"] for m in listed] == [False, True]
    assert api.get(f"/api/v1/conversations/{conv['id']}").json()["handled_by"] == "bot"
    expect(page.get_by_role("link", name=re.compile("Nora Note"))).to_contain_text("Note: Checked")
    screenshot(page, "console-inbox-note")
    # Without text there is nothing to add.
    page.get_by_role("button", name="Add note").click()
    expect(page.locator("#reply-error")).to_have_text("Write a note first.")


def test_search_conversations_and_load_more(page: Any, server: LiveServer, tenant: Tenant, api: httpx.Client) -> None:
    """The Inbox lists 50 at a time with "Load more", and "Search conversations" looks through
    the message text and the customers' names and emails (SPEC §11)."""
    for i in range(54):
        user = api.post("/api/v1/users", json={"name": f"Customer {i:02d}"}).json()
        api.post("/api/v1/conversations", json={"user_id": user["id"], "messages": [
            {"actor": {"type": "user"}, "message_parts": [{"text": {"content": f"Question number {i}"}}]}]})
    kim = api.post("/api/v1/users", json={"name": "Kim Kangaroo", "email": "kim@outback.example"}).json()
    api.post("/api/v1/conversations", json={"user_id": kim["id"], "messages": [
        {"actor": {"type": "user"}, "message_parts": [{"text": {"content": "My wallaby-shaped card is stuck"}}]}]})
    log_in(page, server, make_console_user(server, tenant))
    rows = page.locator("#conversation-list .conv-list > li")
    expect(rows).to_have_count(50)
    page.get_by_role("button", name="Load more").click()
    expect(rows).to_have_count(55)
    expect(page.get_by_role("button", name="Load more")).to_have_count(0)
    expect(page.get_by_role("link", name=re.compile("Customer 00"))).to_be_visible()

    box = page.get_by_role("searchbox", name="Search conversations")
    box.fill("wallaby")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("Kim Kangaroo")
    expect(page.locator(".search-note")).to_contain_text("wallaby")
    screenshot(page, "console-inbox-search")
    box.fill("outback")  # the customer's email
    expect(rows).to_have_count(1)
    box.fill("number 17")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("Customer 17")
    box.fill("platypus")
    expect(page.locator("#conversation-list")).to_contain_text("No conversation matches “platypus”")
    # Without script the search is a plain GET: the same results, the box filled in.
    page.goto(server.url + "/console/inbox?q=kangaroo")
    expect(rows).to_have_count(1)
    expect(box).to_have_value("kangaroo")
    rows.first.get_by_role("link").click()
    expect(page.get_by_role("log")).to_contain_text("wallaby-shaped")
    expect(rows).to_have_count(1)  # the search stays while a result is open


def test_the_available_toggle_decides_who_is_handed_conversations(
    page: Any, server: LiveServer, tenant: Tenant, api: httpx.Client
) -> None:
    log_in(page, server, make_console_user(server, tenant, name="Grace Hopper"))
    grace = next(a for a in api.get("/api/v1/agents").json()["data"] if a["name"] == "Grace Hopper")
    toggle = page.get_by_role("button", name="Available")
    expect(toggle).to_have_attribute("aria-pressed", "true")
    toggle.click()
    expect(toggle).to_have_attribute("aria-pressed", "false")
    assert api.get(f"/api/v1/agents/{grace['id']}").json()["status"] == "away"
    user = api.post("/api/v1/users", json={"name": "Una Unrouted"}).json()
    conv = api.post("/api/v1/conversations", json={"user_id": user["id"]}).json()
    r = api.post(f"/api/v1/conversations/{conv['id']}/handover", json={"to": "human"})
    assert r.json()["assignee_id"] is None  # nobody available: it waits
    screenshot(page, "console-away")
    page.reload()  # the choice is stored, not only shown
    expect(toggle).to_have_attribute("aria-pressed", "false")
    toggle.click()
    expect(toggle).to_have_attribute("aria-pressed", "true")
    assert api.get(f"/api/v1/agents/{grace['id']}").json()["status"] == "online"
    conv = api.post("/api/v1/conversations", json={"user_id": user["id"]}).json()
    assert api.post(f"/api/v1/conversations/{conv['id']}/handover", json={"to": "human"}).json()["assignee_id"] == grace["id"]
    # The API says the same: PATCH /agents/{id} status.
    assert api.patch(f"/api/v1/agents/{grace['id']}", json={"status": "away"}).json()["status"] == "away"
    page.reload()
    expect(toggle).to_have_attribute("aria-pressed", "false")


def test_canned_responses_page_and_the_slash_listbox(page: Any, server: LiveServer, tenant: Tenant, api: httpx.Client) -> None:
    log_in(page, server, make_console_user(server, tenant, name="Grace Hopper"))
    page.get_by_role("link", name="Canned responses").click()
    page.get_by_label("Shortcut").fill("refund")
    page.get_by_label("Text").fill("Your refund is on its way: 3–5 working days.")
    page.get_by_role("button", name="Add response").click()
    expect(page.get_by_role("status")).to_contain_text("Added /refund")
    page.get_by_label("Shortcut").fill("reset")
    page.get_by_label("Text").fill("Here is how to reset your PIN.")
    page.get_by_role("button", name="Add response").click()
    page.get_by_label("Shortcut").fill("hours")
    page.get_by_label("Text").fill("We are open 9–5, Monday to Friday.")
    page.get_by_role("button", name="Add response").click()
    page.get_by_label("Shortcut").fill("refund")
    page.get_by_label("Text").fill("A second one")
    page.get_by_role("button", name="Add response").click()
    expect(page.locator("#canned-shortcut-error")).to_contain_text("/refund is taken")
    screenshot(page, "console-canned-responses")
    page.get_by_role("row", name=re.compile(r"hours We are open")).get_by_role("button", name="Delete").click()
    expect(page.get_by_role("row", name=re.compile(r"hours We are open"))).to_have_count(0)
    assert [c["shortcut"] for c in api.get("/api/v1/canned-responses").json()["data"]] == ["refund", "reset"]

    user = api.post("/api/v1/users", json={"name": "Rita Refund"}).json()
    api.post("/api/v1/conversations", json={"user_id": user["id"], "messages": [
        {"actor": {"type": "user"}, "message_parts": [{"text": {"content": "Where is my money?"}}]}]})
    page.get_by_role("link", name="Inbox", exact=True).click()
    page.get_by_role("link", name=re.compile("Rita Refund")).click()
    reply = page.get_by_role("textbox", name="Reply")
    reply.press_sequentially("Hi Rita! /re")
    listbox = page.get_by_role("listbox", name="Canned responses")
    expect(listbox.get_by_role("option")).to_have_count(2)
    expect(listbox.get_by_role("option", name="/refund", exact=True)).to_be_visible()
    screenshot(page, "console-canned-listbox")
    reply.press_sequentially("f")
    expect(listbox.get_by_role("option")).to_have_count(1)
    listbox.get_by_role("option", name="/refund", exact=True).click()
    expect(reply).to_have_value("Hi Rita! Your refund is on its way: 3–5 working days.")
    expect(listbox).to_be_hidden()
    # By keyboard: arrows and Enter choose; Enter does not send meanwhile.
    reply.fill("")
    reply.press_sequentially("/re")
    expect(listbox.get_by_role("option")).to_have_count(2)
    reply.press("ArrowDown")
    reply.press("Enter")
    expect(reply).to_have_value("Here is how to reset your PIN.")
    reply.press("Enter")  # now it sends
    expect(page.get_by_role("log")).to_contain_text("Here is how to reset your PIN.")


# Records what the page asks of the browser: notifications shown, and sounds started.
NOTIFICATION_SPY = """
(() => {
  window.__notices = []; window.__sounds = 0;
  class Spy {
    constructor(title, options) { window.__notices.push({title, body: (options || {}).body}); }
    static get permission() { return sessionStorage.getItem("spy-permission") || "default"; }
    static requestPermission() { sessionStorage.setItem("spy-permission", "granted"); return Promise.resolve("granted"); }
  }
  window.Notification = Spy;
  const start = OscillatorNode.prototype.start;
  OscillatorNode.prototype.start = function (...a) { window.__sounds += 1; return start.apply(this, a); };
})();
"""


def test_notifications_for_waiting_conversations_and_my_customers(
    page: Any, server: LiveServer, tenant: Tenant, api: httpx.Client
) -> None:
    page.add_init_script(NOTIFICATION_SPY)
    log_in(page, server, make_console_user(server, tenant, name="Grace Hopper"))
    grace = next(a for a in api.get("/api/v1/agents").json()["data"] if a["name"] == "Grace Hopper")
    page.get_by_role("button", name="Enable notifications").click()
    expect(page.get_by_text("Notifications on")).to_be_visible()
    expect(page.get_by_role("button", name="Enable notifications")).to_be_hidden()
    expect(page.locator("#live-status")).to_have_text("Live")

    # Handed to humans while Grace is away: it waits, and the team hears of it.
    api.patch(f"/api/v1/agents/{grace['id']}", json={"status": "away"})
    wes = api.post("/api/v1/users", json={"name": "Wes Waiting"}).json()
    waiting = api.post("/api/v1/conversations", json={"user_id": wes["id"], "messages": [
        {"actor": {"type": "user"}, "message_parts": [{"text": {"content": "A person, please"}}]}]}).json()
    api.post(f"/api/v1/conversations/{waiting['id']}/handover", json={"to": "human"})
    eventually(lambda: page.evaluate("window.__notices.length") == 1)
    assert page.evaluate("window.__notices") == [{"title": "Wes Waiting", "body": "A person, please"}]
    assert page.evaluate("window.__sounds") >= 2  # the click's, and this one
    expect(page).to_have_title(re.compile(r"^\(1\) Inbox"))

    # A customer writes in a conversation assigned to Grace: notified; assigned to nobody: not.
    ann = api.post("/api/v1/users", json={"name": "Ann Assigned"}).json()
    mine = api.post("/api/v1/conversations", json={"user_id": ann["id"]}).json()
    api.post(f"/api/v1/conversations/{mine['id']}/handover", json={"to": "human", "agent_id": grace["id"]})
    other = api.post("/api/v1/conversations", json={"user_id": ann["id"]}).json()
    api.post(f"/api/v1/conversations/{other['id']}/messages",
             json={"actor": {"type": "user"}, "message_parts": [{"text": {"content": "Not yours"}}]})
    api.post(f"/api/v1/conversations/{mine['id']}/messages",
             json={"actor": {"type": "user"}, "message_parts": [{"text": {"content": "Are you there, Grace?"}}]})
    eventually(lambda: page.evaluate("window.__notices.length") == 2)
    assert page.evaluate("window.__notices")[1] == {"title": "Ann Assigned", "body": "Are you there, Grace?"}
    expect(page).to_have_title(re.compile(r"^\(2\) Inbox"))
    expect(page.locator("#conversation-list")).to_contain_text("Are you there, Grace?")
    screenshot(page, "console-notifications")

    # With that conversation open in this (visible) tab, its messages are no news.
    page.get_by_role("link", name=re.compile("Ann Assigned")).first.click()
    expect(page.get_by_role("log")).to_contain_text("Are you there, Grace?")
    expect(page).to_have_title(re.compile(r"^\(1\) Inbox"))  # seen: one left waiting
    sounds = page.evaluate("window.__sounds")
    api.post(f"/api/v1/conversations/{mine['id']}/messages",
             json={"actor": {"type": "user"}, "message_parts": [{"text": {"content": "Thanks!"}}]})
    expect(page.get_by_role("log")).to_contain_text("Thanks!")
    expect(page.get_by_role("button", name="Enable notifications")).to_be_hidden()  # still granted
    assert page.evaluate("window.__notices.length") == 0  # a new page: nothing shown on this one
    assert page.evaluate("window.__sounds") == sounds == 0


def test_identity_verification_is_explained_and_asks_before_it_turns_on(
    page: Any, server: LiveServer, tenant: Tenant
) -> None:
    log_in(page, server, make_console_user(server, tenant))
    page.get_by_role("link", name="Widget").click()
    page.get_by_text("How to sign a customer's identity").click()
    expect(page.get_by_text('algorithm: "HS256"')).to_be_visible()  # a sample to copy
    screenshot(page, "console-widget-identity-howto")
    box = page.get_by_role("checkbox", name="Identity verification")
    box.check()
    asked: list[str] = []
    page.once("dialog", lambda d: (asked.append(d.message), d.dismiss()))
    page.get_by_role("button", name="Save").click()
    assert asked and "refuses any customer identity" in asked[0]
    with httpx.Client(base_url=server.url, headers=tenant.headers) as api:
        assert api.get("/api/v1/widget-settings").json()["identity_verification"] is False  # not saved
        page.once("dialog", lambda d: d.accept())
        page.get_by_role("button", name="Save").click()
        expect(page.get_by_role("status")).to_contain_text("saved")
        assert api.get("/api/v1/widget-settings").json()["identity_verification"] is True
    # Once on, saving other settings asks nothing more.
    page.get_by_label("Greeting").fill("Hello again")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status")).to_contain_text("saved")

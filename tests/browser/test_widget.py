"""The embedded widget in Debian's Chromium, on a host page of ANOTHER origin, against a real uvicorn."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import screenshot
from tests.browser.widget_host import (
    HostSite,
    bot_says,
    embed_page,
    messages,
    only_conversation,
    text,
    wait_for,
)
from tests.conftest import LiveServer, Tenant

PHONE = {"width": 360, "height": 740}


@pytest.fixture
def shop(page: Page, server: LiveServer, tenant: Tenant, host: HostSite) -> Page:
    """The host page with the widget embedded, loaded, and the widget's launcher ready."""
    assert host.origin != server.url  # the whole point: the widget crosses origins
    page.goto(host.add("/", embed_page(server, tenant)))
    expect(page.get_by_role("button", name="Open chat")).to_be_visible()
    return page


def open_chat(page: Page) -> None:
    page.get_by_role("button", name="Open chat").click()
    expect(page.get_by_role("textbox", name="Message")).to_be_focused()


def say(page: Page, words: str) -> None:
    page.get_by_role("textbox", name="Message").fill(words)
    page.get_by_role("button", name="Send").click()


def user_texts(api: httpx.Client, conversation_id: str) -> list[str]:
    return [
        m["message_parts"][0]["text"]["content"] for m in messages(api, conversation_id) if m["actor"]["type"] == "user"
    ]


def both_sizes(page: Page, name: str) -> None:
    screenshot(page, f"widget-{name}-desktop")
    size = page.viewport_size
    page.set_viewport_size(PHONE)
    screenshot(page, f"widget-{name}-phone")
    assert size is not None
    page.set_viewport_size(size)


# -- the basics -------------------------------------------------------------------------------


def test_open_send_and_receive_a_bot_reply(shop: Page, api: httpx.Client) -> None:
    screenshot(shop, "widget-closed-desktop")
    open_chat(shop)
    log = shop.get_by_role("log")
    expect(log).to_contain_text("Hi! How can we help?")  # the workspace greeting
    conversation = only_conversation(api)  # opening created it, so a bot could greet first
    say(shop, "Hello, I lost my card")
    wait_for(lambda: user_texts(api, conversation["id"]) == ["Hello, I lost my card"], what="the user message")
    bot_says(api, conversation["id"], text("Sorry to hear that! Freeze it at https://bank.example/freeze now."))
    expect(log).to_contain_text("Sorry to hear that!")
    link = log.get_by_role("link", name="https://bank.example/freeze")
    expect(link).to_have_attribute("href", "https://bank.example/freeze")
    expect(link).to_have_attribute("rel", "noopener noreferrer")
    expect(link).to_have_attribute("target", "_blank")
    both_sizes(shop, "conversation")


def test_typing_indicator_unread_badge_and_minimize(shop: Page, api: httpx.Client) -> None:
    open_chat(shop)
    conversation = only_conversation(api)
    api.post(f"/api/v1/conversations/{conversation['id']}/typing", json={"on": True}).raise_for_status()
    expect(shop.get_by_text("Bot is typing…")).to_be_visible()
    screenshot(shop, "widget-typing-desktop")
    api.post(f"/api/v1/conversations/{conversation['id']}/typing", json={"on": False}).raise_for_status()
    expect(shop.get_by_text("Bot is typing…")).to_be_hidden()
    shop.keyboard.press("Escape")  # closes the panel, focus back on the launcher
    launcher = shop.get_by_role("button", name="Open chat")
    expect(launcher).to_be_focused()
    bot_says(api, conversation["id"], text("Are you still there?"))
    bot_says(api, conversation["id"], text("We can help with cards and statements."))
    expect(launcher).to_contain_text("2")  # the unread badge
    expect(shop.get_by_role("status").filter(has_text="2 unread messages")).to_have_count(1)
    screenshot(shop, "widget-unread-badge-desktop")
    launcher.click()
    expect(shop.get_by_role("log")).to_contain_text("Are you still there?")
    shop.get_by_role("button", name="Minimize chat").click()
    expect(launcher).not_to_contain_text("2")  # read on open


def test_theme_and_greeting_follow_widget_settings_live(shop: Page, api: httpx.Client) -> None:
    open_chat(shop)
    only_conversation(api)  # the socket is up (it asked for the conversation)
    patched = api.patch("/api/v1/widget-settings", json={"theme_color": "#0b6b3a", "greeting": "Welcome to Northwind!"})
    assert patched.status_code == 200, patched.text
    expect(shop.get_by_role("log")).to_contain_text("Welcome to Northwind!")
    send = shop.get_by_role("button", name="Send")
    expect(send).to_have_css("background-color", "rgb(11, 107, 58)")
    screenshot(shop, "widget-themed-desktop")


# -- every interaction type --------------------------------------------------------------------


def rich_parts(host: HostSite) -> list[dict[str, Any]]:
    return [
        {"text": {"content": "Here is everything we can do."}},
        {
            "image": {
                "url": host.origin + "/branch.png",
                "alt": "Our branch on Main Street",
                "width": 320,
                "height": 200,
            }
        },
        {"image": {"url": host.origin + "/party.gif", "alt": "Celebration"}},
        {"url_button": {"label": "Our rates", "url": "https://bank.example/rates"}},
    ]


def test_every_interaction_type_renders_and_answers(
    shop: Page, api: httpx.Client, host: HostSite, server: LiveServer
) -> None:
    webview_page = host.add(
        "/card-form",
        f"""<!doctype html><title>Card</title><script src="{server.url}/static/webview.js"></script>
        <h1 style="font-family:sans-serif">Enter your card</h1>
        <button onclick="Backchannel.close({{result: 'card ending 1111'}})">Done</button>""",
    )
    open_chat(shop)
    conversation = only_conversation(api)
    cid = conversation["id"]
    log = shop.get_by_role("log")

    # Text, image, GIF, URL button, quick replies.
    shop.emulate_media(reduced_motion="reduce")
    bot_says(
        api,
        cid,
        *rich_parts(host),
        replies=[
            {
                "quick_replies": {
                    "options": [
                        {"label": "Cards", "payload": "CARDS"},
                        {"label": "Statements", "payload": "STATEMENTS"},
                    ]
                }
            }
        ],
    )
    image = log.get_by_role("img", name="Our branch on Main Street")
    expect(image).to_have_attribute("loading", "lazy")
    expect(image).to_have_attribute("width", "320")
    expect(log.get_by_role("img", name="Celebration")).to_have_count(1)  # a still frame…
    play = log.get_by_role("button", name="Play GIF")  # …animated only on request
    play.click()
    expect(play).to_have_attribute("aria-pressed", "true")
    rates = log.get_by_role("link", name="Our rates")
    expect(rates).to_have_attribute("href", "https://bank.example/rates")
    expect(rates).to_have_attribute("rel", "noopener noreferrer")
    expect(rates).to_have_attribute("target", "_blank")
    both_sizes(shop, "rich-quick-replies")
    shop.get_by_role("button", name="Statements").click()
    expect(shop.get_by_role("button", name="Cards")).to_have_count(0)  # gone once answered
    last = wait_for(lambda: [m for m in messages(api, cid) if m["actor"]["type"] == "user"], what="the quick reply")[-1]
    assert last["message_parts"] == [{"text": {"content": "Statements"}}]
    assert last["reply_to"]["payload"] == "STATEMENTS"

    # A drop-down, chosen with the mouse-equivalent select_option.
    offer = bot_says(
        api,
        cid,
        text("Which period?"),
        replies=[
            {
                "dropdown": {
                    "placeholder": "Choose a period",
                    "options": [
                        {"label": "Last 30 days", "payload": "P30"},
                        {"label": "Last 90 days", "payload": "P90"},
                    ],
                }
            }
        ],
    )
    dropdown = shop.get_by_role("combobox", name="Choose a period")
    screenshot(shop, "widget-dropdown-desktop")
    dropdown.select_option(label="Last 90 days")
    expect(dropdown).to_have_count(0)
    wait_for(
        lambda: messages(api, cid)[-1]["reply_to"] == {"message_id": offer["id"], "payload": "P90"},
        what="the drop-down reply",
    )

    # A carousel: scrollable cards with image, title, subtitle and up to three buttons.
    card = lambda title, payload: {  # noqa: E731 - a table of cards reads best inline
        "title": title,
        "subtitle": "Debit · 12 Nov",
        "image_url": host.origin + "/card.png",
        "buttons": [
            {"postback": {"label": "Details", "payload": payload}},
            {"url_button": {"label": "Receipt", "url": "https://bank.example/r"}},
            {"web_view": {"label": "Dispute", "url": webview_page, "height": "compact"}},
        ],
    }
    bot_says(
        api,
        cid,
        text("Your recent transactions:"),
        {
            "carousel": {
                "cards": [card("Coffee £3.20", "TX1"), card("Books £18.00", "TX2"), card("Rent £950.00", "TX3")]
            }
        },
    )
    books = log.get_by_role("group", name="Books £18.00")
    expect(books).to_contain_text("Debit · 12 Nov")
    expect(books.get_by_role("link", name="Receipt")).to_have_attribute("rel", "noopener noreferrer")
    both_sizes(shop, "carousel")
    books.get_by_role("button", name="Details").click()
    wait_for(
        lambda: messages(api, cid)[-1]["reply_to"] and messages(api, cid)[-1]["reply_to"]["payload"] == "TX2",
        what="the postback",
    )

    # A web view: a sheet with an iframe titled by the label, closed by the page itself.
    books.get_by_role("button", name="Dispute").click()
    frame = shop.get_by_title("Dispute")
    expect(frame).to_be_visible()
    expect(shop.get_by_role("button", name="Close")).to_be_focused()
    both_sizes(shop, "webview-sheet")
    shop.frame_locator("iframe[title='Dispute']").get_by_role("button", name="Done").click()
    expect(frame).to_have_count(0)
    wait_for(lambda: any(m["actor"]["type"] == "system" for m in messages(api, cid)), what="the web view closed event")

    # A top-level web view part, dismissed with the sheet's own Close button.
    bot_says(
        api,
        cid,
        text("Update your address:"),
        {"web_view": {"id": "addr", "label": "Update address", "url": webview_page, "height": "tall"}},
    )
    log.get_by_role("button", name="Update address").click()
    expect(shop.get_by_title("Update address")).to_be_visible()
    shop.get_by_role("button", name="Close").click()
    expect(shop.get_by_title("Update address")).to_have_count(0)
    expect(log.get_by_role("button", name="Update address")).to_be_focused()
    wait_for(lambda: sum(m["actor"]["type"] == "system" for m in messages(api, cid)) == 2, what="the dismissed event")


def test_a_postmessage_from_anywhere_but_the_sheet_is_ignored(
    shop: Page, api: httpx.Client, host: HostSite, server: LiveServer
) -> None:
    page_url = host.add(
        "/quiet",
        f"<!doctype html><title>Q</title><script src='{server.url}/static/webview.js'></script><p>Quiet page</p>",
    )
    open_chat(shop)
    cid = only_conversation(api)["id"]
    bot_says(api, cid, {"web_view": {"label": "Verify", "url": page_url, "height": "full"}})
    shop.get_by_role("log").get_by_role("button", name="Verify").click()
    expect(shop.get_by_title("Verify")).to_be_visible()
    # The host page (not the iframe) forges a close: it must be ignored.
    shop.evaluate("window.postMessage({backchannel: 'webview.close', status: 'submitted'}, '*')")
    shop.wait_for_timeout(300)  # give a wrongly accepted message the chance to act
    expect(shop.get_by_title("Verify")).to_be_visible()
    shop.keyboard.press("Escape")
    expect(shop.get_by_title("Verify")).to_have_count(0)


def test_keyboard_only_quick_reply_and_dropdown(shop: Page, api: httpx.Client) -> None:
    shop.keyboard.press("Tab")
    expect(shop.get_by_role("button", name="Open chat")).to_be_focused()
    shop.keyboard.press("Enter")
    cid = only_conversation(api)["id"]
    offer = bot_says(
        api,
        cid,
        text("Pick a period"),
        replies=[
            {
                "dropdown": {
                    "placeholder": "Period",
                    "options": [{"label": "This month", "payload": "M0"}, {"label": "Last month", "payload": "M1"}],
                }
            }
        ],
    )
    select = shop.get_by_role("combobox", name="Period")
    select.focus()
    shop.keyboard.press("ArrowDown")  # browsing, not choosing
    shop.keyboard.press("ArrowDown")
    shop.wait_for_timeout(200)
    assert not [m for m in messages(api, cid) if m["actor"]["type"] == "user"]
    shop.keyboard.press("Enter")
    wait_for(
        lambda: messages(api, cid)[-1]["reply_to"] == {"message_id": offer["id"], "payload": "M1"},
        what="the keyboard choice",
    )


# -- security ----------------------------------------------------------------------------------

XSS_CORPUS = [
    "<img src=x onerror=\"window.__xss='img'\">",
    "<script>window.__xss='script'</script>",
    "<svg/onload=window.__xss='svg'>",
    "\"><iframe src=javascript:window.top.__xss='iframe'>",
    "javascript:window.__xss='js-url'",
    'https://example.com/"onmouseover="window.__xss=\'attr\'"',
    "<a href=\"javascript:window.__xss='a'\">click me</a>",
    "{{constructor.constructor('window.__xss=1')()}}",
]


def test_xss_corpus_in_bot_text_never_executes(shop: Page, api: httpx.Client) -> None:
    open_chat(shop)
    cid = only_conversation(api)["id"]
    for payload in XSS_CORPUS:
        bot_says(api, cid, text(payload))
    log = shop.get_by_role("log")
    for payload in XSS_CORPUS:
        expect(log).to_contain_text(payload)  # shown as the literal text it is
    log.hover()
    for link in log.get_by_role("link").all():
        link.hover()
        assert link.get_attribute("href", timeout=1000).startswith("https://")  # type: ignore[union-attr]
    widget = shop.locator("backchannel-widget")
    assert (
        widget.evaluate("w => w.shadowRoot.querySelectorAll('.log script, .log iframe, .log svg, .log img').length")
        == 0
    )
    assert shop.evaluate("window.__xss") is None
    screenshot(shop, "widget-xss-desktop")


def test_a_foreign_origin_is_refused(
    page: Page, server: LiveServer, tenant: Tenant, host: HostSite, api: httpx.Client
) -> None:
    api.patch(
        "/api/v1/widget-settings", json={"allowed_origins": ["https://only-this-shop.example"]}
    ).raise_for_status()
    page.goto(host.add("/", embed_page(server, tenant)))
    page.get_by_role("button", name="Open chat").click()
    expect(page.get_by_role("dialog").get_by_role("status")).to_have_text("Chat is not available on this site.")
    assert api.get("/api/v1/conversations").json()["data"] == []
    # And the socket itself: the handshake from this origin fails outright.
    code = page.evaluate(
        """url => new Promise(done => { const ws = new WebSocket(url); ws.onopen = () => done('open');
             ws.onclose = e => done(e.code); })""",
        server.ws_url + f"/widget/v1/ws?widget_key={tenant.widget_key}",
    )
    assert code == 1006  # refused before any WebSocket existed
    screenshot(page, "widget-refused-desktop")


HOSTILE_CSS = """<style>
* { font-family: 'Comic Sans MS', cursive !important; color: #ff00ff !important; letter-spacing: 4px !important; }
button { background: lime !important; border: 6px dashed red !important; border-radius: 0 !important; }
div, section, textarea { display: block !important; background: yellow !important; padding: 30px !important; }
.launcher, .panel, .bubble { display: none !important; }
backchannel-widget { display: none !important; opacity: 0 !important; }
</style>"""


def test_host_css_does_not_leak_in_and_widget_css_does_not_leak_out(
    page: Page, server: LiveServer, tenant: Tenant, host: HostSite, api: httpx.Client
) -> None:
    control = "<button id='host-button' style='all: revert'>Host button</button><p class='bubble'>host bubble</p>"
    page.goto(host.add("/plain", f"<!doctype html><head>{HOSTILE_CSS}</head><body>{control}</body>"))
    before = page.evaluate(
        "getComputedStyle(document.querySelector('.bubble')).display + getComputedStyle(document.querySelector('#host-button')).padding"
    )
    page.goto(host.add("/hostile", embed_page(server, tenant, head=HOSTILE_CSS, body=control)))
    open_chat(page)
    send = page.get_by_role("button", name="Send")
    expect(send).to_be_visible()
    expect(send).not_to_have_css("background-color", "rgb(0, 255, 0)")
    box = page.get_by_role("textbox", name="Message")
    expect(box).not_to_have_css("font-family", '"Comic Sans MS", cursive')
    expect(box).not_to_have_css("color", "rgb(255, 0, 255)")
    expect(box).not_to_have_css("background-color", "rgb(255, 255, 0)")
    say(page, "still readable")
    expect(page.get_by_role("log")).to_contain_text("still readable")
    # Nothing of ours styles the host: its own .bubble and button look as they did.
    after = page.evaluate(
        "getComputedStyle(document.querySelector('p.bubble')).display + getComputedStyle(document.querySelector('#host-button')).padding"
    )
    assert after == before
    screenshot(page, "widget-hostile-css-desktop")


# -- identity and continuity -------------------------------------------------------------------


def test_reload_and_a_new_tab_continue_the_same_conversation(shop: Page, api: httpx.Client, context: Any) -> None:
    open_chat(shop)
    say(shop, "first visit")
    cid = only_conversation(api)["id"]
    wait_for(lambda: user_texts(api, cid) == ["first visit"], what="the first message")
    shop.reload()
    open_chat(shop)
    expect(shop.get_by_role("log")).to_contain_text("first visit")
    other = context.new_page()
    other.goto(shop.url)
    open_chat(other)
    expect(other.get_by_role("log")).to_contain_text("first visit")
    say(other, "from a second tab")
    expect(shop.get_by_role("log")).to_contain_text("from a second tab")  # live in the first tab too
    assert len(api.get("/api/v1/conversations").json()["data"]) == 1


def test_reconnect_after_the_server_drops_the_socket_without_gap_or_duplicate(
    shop: Page, api: httpx.Client, server: LiveServer, tenant: Tenant
) -> None:
    open_chat(shop)
    cid = only_conversation(api)["id"]
    bot_says(api, cid, text("one"))
    log = shop.get_by_role("log")
    expect(log).to_contain_text("one")
    server.stop()  # every socket drops
    expect(shop.get_by_text("Connection lost. Reconnecting…")).to_be_visible()
    say(shop, "typed while offline")
    expect(shop.get_by_text("Waiting for network…")).to_be_visible()
    screenshot(shop, "widget-offline-desktop")
    server.start()
    with server.client(tenant) as api2:
        bot_says(api2, cid, text("two"))  # most likely while the widget is still backing off
        # Backoff may wait several seconds after a slow restart: that is behaviour, not a bug.
        expect(shop.get_by_text("Connection lost. Reconnecting…")).to_be_hidden(timeout=45_000)
        expect(log).to_contain_text("two")
        expect(shop.get_by_text("Waiting for network…")).to_have_count(0)
        expect(shop.get_by_text("Sending…")).to_have_count(0)
        bot_says(api2, cid, text("three"))
        expect(log).to_contain_text("three")
        bubbles = shop.locator("backchannel-widget").evaluate(
            "w => [...w.shadowRoot.querySelectorAll('.msgs .bubble')].map(b => b.textContent)"
        )
        assert bubbles == ["one", "typed while offline", "two", "three"] or bubbles == [
            "one",
            "two",
            "typed while offline",
            "three",
        ]
        assert user_texts(api2, cid) == ["typed while offline"]  # sent once
        stored = messages(api2, cid)
        assert [m["seq"] for m in stored] == list(range(1, len(stored) + 1))


def test_public_api_and_calls_made_before_the_script_loaded(
    page: Page, server: LiveServer, tenant: Tenant, host: HostSite
) -> None:
    stub = """<script>window.Backchannel = window.Backchannel || {q: []};
    ["open", "close", "toggle", "destroy"].forEach(function (m) {
      Backchannel[m] = Backchannel[m] || function () { Backchannel.q.push([m]); }; });
    Backchannel.open();</script>"""
    page.goto(host.add("/stub", embed_page(server, tenant, before=stub)))
    expect(page.get_by_role("textbox", name="Message")).to_be_visible()  # the queued open()
    page.evaluate("Backchannel.close()")
    expect(page.get_by_role("textbox", name="Message")).to_be_hidden()
    page.evaluate("Backchannel.toggle()")
    expect(page.get_by_role("textbox", name="Message")).to_be_visible()
    page.evaluate("Backchannel.destroy()")
    expect(page.locator("backchannel-widget")).to_have_count(0)
    assert page.evaluate("typeof window.Backchannel") == "undefined"


def test_identified_user_with_a_signed_jwt(
    page: Page, server: LiveServer, tenant: Tenant, host: HostSite, api: httpx.Client
) -> None:
    import time

    import jwt

    from app.store.tables import Workspace

    api.patch("/api/v1/widget-settings", json={"identity_verification": True}).raise_for_status()
    secret = server.in_tx(lambda tx: tx.session.get(Workspace, tenant.workspace_id).identity_secret)
    token = jwt.encode({"sub": "cust-42", "exp": int(time.time()) + 600}, secret, algorithm="HS256")
    settings = f"<script>window.BackchannelSettings = {{user: {{external_id: 'cust-42', name: 'Ada Lovelace'}}, user_jwt: '{token}'}};</script>"
    page.goto(host.add("/signed", embed_page(server, tenant, before=settings)))
    open_chat(page)
    say(page, "It's Ada")
    conversation = only_conversation(api)
    user = api.get(f"/api/v1/users/{conversation['user_id']}").json()
    assert (user["external_id"], user["name"]) == ("cust-42", "Ada Lovelace")
    # A forged identity is refused, and the widget says so instead of chatting.
    forged = settings.replace(
        token, jwt.encode({"sub": "cust-42", "exp": int(time.time()) + 600}, "x" * 40, algorithm="HS256")
    )
    page.goto(host.add("/forged", embed_page(server, tenant, before=forged)))
    page.get_by_role("button", name="Open chat").click()
    expect(page.get_by_role("dialog").get_by_role("status")).to_have_text("Chat is not available on this site.")


def test_blocked_storage_still_chats(
    browser: Any, server: LiveServer, tenant: Tenant, host: HostSite, api: httpx.Client
) -> None:
    ctx = browser.new_context()
    try:
        page = ctx.new_page()
        page.add_init_script(
            "Object.defineProperty(window, 'localStorage', {get() { throw new DOMException('blocked', 'SecurityError'); }});"
        )
        page.goto(host.add("/", embed_page(server, tenant)))
        open_chat(page)
        say(page, "no storage here")
        cid = only_conversation(api)["id"]
        wait_for(lambda: user_texts(api, cid) == ["no storage here"], what="the message")
    finally:
        ctx.close()

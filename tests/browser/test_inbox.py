"""The Inbox as an agent works it (issue 23): the newest message in view, assign and resolve in
place, the lines between messages, at desktop, tablet and phone sizes, checked with axe."""

from __future__ import annotations

import re
import struct
import time
import zlib
from typing import Any

import httpx
from playwright.sync_api import expect

from tests.browser.accessibility import Audit
from tests.browser.conftest import screenshot
from tests.browser.test_console import log_in
from tests.browser.widget_host import HostSite, embed_page, wait_for
from tests.conftest import LiveServer, Tenant
from tests.console.support import make_console_user

PHONE = {"width": 390, "height": 844}
TABLET = {"width": 768, "height": 1024}
DESKTOP = {"width": 1280, "height": 800}


def png(width: int, height: int) -> bytes:
    """A plain PNG of this size (a picture whose height the page cannot know before it loads)."""
    row = b"\x00" + b"\x9a\xb8\xff" * width
    raw = zlib.compress(row * height)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")


def customer(api: httpx.Client, name: str, texts: list[str], **user: Any) -> str:
    made = api.post("/api/v1/users", json={"name": name, **user}).json()
    r = api.post("/api/v1/conversations", json={"user_id": made["id"], "messages": [
        {"actor": {"type": "user"}, "message_parts": [{"text": {"content": t}}]} for t in texts]})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def no_sideways_scroll(page: Any) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= page.viewport_size["width"], f"the page scrolls sideways: {width}px wide"


def test_opening_a_conversation_shows_the_newest_message_after_images_load(
    page: Any, server: LiveServer, tenant: Tenant, api: httpx.Client
) -> None:
    log_in(page, server, make_console_user(server, tenant))
    conv = customer(api, "Ivy Images", [f"Message number {i}" for i in range(30)])
    # The bot's last answers carry pictures that arrive late and are tall.
    for i in range(3):
        api.post(f"/api/v1/conversations/{conv}/messages", json={"actor": {"type": "bot"}, "message_parts": [
            {"text": {"content": f"Here is picture {i}"}}, {"image": {"url": f"https://images.example/{i}.png", "alt": f"Picture {i}"}}]})
    api.post(f"/api/v1/conversations/{conv}/messages", json={
        "actor": {"type": "user"}, "message_parts": [{"text": {"content": "The very last message"}}]})
    picture = png(240, 240)

    def slow_picture(route: Any) -> None:
        time.sleep(0.3)
        route.fulfill(status=200, content_type="image/png", body=picture)

    page.route("https://images.example/**", slow_picture)
    page.goto(f"{server.url}/console/inbox/{conv}")
    log = page.get_by_role("log")
    expect(log.get_by_role("img", name="Picture 2")).to_be_visible()
    page.wait_for_function("() => [...document.querySelectorAll('#transcript img')].every(i => i.complete)")
    expect(log.get_by_text("The very last message")).to_be_in_viewport()
    screenshot(page, "inbox-newest-message")
    # An agent reading up is left where they are when a message arrives.
    page.evaluate("document.getElementById('transcript').scrollTop = 0")
    expect(log.get_by_text("Message number 0", exact=True)).to_be_in_viewport()
    api.post(f"/api/v1/conversations/{conv}/messages", json={
        "actor": {"type": "user"}, "message_parts": [{"text": {"content": "A newer one"}}]})
    expect(log.get_by_text("A newer one")).to_have_count(1)
    expect(log.get_by_text("Message number 0", exact=True)).to_be_in_viewport()


def test_assign_and_resolve_in_place_keep_the_draft(
    page: Any, server: LiveServer, tenant: Tenant, api: httpx.Client
) -> None:
    log_in(page, server, make_console_user(server, tenant, name="Grace Hopper"))
    api.post("/api/v1/agents", json={"name": "Sam Rivera", "kind": "human"})
    older = customer(api, "Olga Older", ["My card is blocked"])
    conv = customer(api, "Bea Customer", ["I lost my card", "Please block it"])
    page.goto(f"{server.url}/console/inbox/{conv}")
    expect(page.locator("#live-status")).to_have_text("Live")
    page.evaluate("window.__sameDocument = true")  # gone if anything reloads the page
    reply = page.get_by_role("textbox", name="Reply")
    reply.fill("Half-written answer")
    audit = Audit()

    # Assign on pick: choosing a teammate assigns at once, in place.
    page.locator("#conversation-header").get_by_label("Assignee").select_option(label="Sam Rivera")
    expect(page.locator("#assignee-label")).to_have_text("Assigned to Sam Rivera")
    log = page.get_by_role("log")
    expect(log.get_by_text("Assigned to Sam Rivera")).to_be_visible()
    expect(page.get_by_role("status").filter(has_text="Conversation assigned.")).to_be_visible()
    expect(reply).to_have_value("Half-written answer")
    assert page.evaluate("window.__sameDocument") is True
    audit.check(page, "Inbox, assigned in place")
    screenshot(page, "inbox-assigned-in-place")

    # Arrow keys on the closed list only move the choice; "Assign" then assigns.
    select = page.locator("#conversation-header").get_by_label("Assignee")
    select.focus()
    page.keyboard.press("ArrowUp")
    page.wait_for_timeout(300)  # nothing should happen: give a wrong request the time to land
    expect(page.locator("#assignee-label")).to_have_text("Assigned to Sam Rivera")
    page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="Assign", exact=True)).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("#assignee-label")).not_to_have_text("Assigned to Sam Rivera")

    # Resolve in place: the header says so, the transcript has the line, the draft stays.
    page.get_by_role("button", name="Resolve", exact=True).click()
    expect(page.get_by_role("button", name="Reopen")).to_be_focused()
    expect(log.get_by_text("Resolved", exact=True)).to_be_visible()
    expect(reply).to_have_value("Half-written answer")
    assert page.evaluate("window.__sameDocument") is True
    assert api.get(f"/api/v1/conversations/{conv}").json()["status"] == "resolved"
    page.get_by_role("button", name="Reopen").click()
    expect(log.get_by_text("Reopened", exact=True)).to_be_visible()

    # "Resolve and next": on to the next conversation in the list; the draft waits here.
    page.locator("#conversation-header summary").click()  # "Resolve ▾"
    page.get_by_role("button", name="Resolve and next").click()
    expect(page).to_have_url(re.compile(f"/console/inbox/{older}$"))
    expect(page.get_by_role("heading", name="Olga Older")).to_be_visible()
    assert api.get(f"/api/v1/conversations/{conv}").json()["status"] == "resolved"
    page.goto(f"{server.url}/console/inbox/{conv}")
    expect(page.get_by_role("textbox", name="Reply")).to_have_value("Half-written answer")
    audit.check(page, "Inbox, resolved conversation")
    audit.assert_clean()


def test_the_inbox_at_tablet_and_phone_sizes(
    page: Any, server: LiveServer, tenant: Tenant, api: httpx.Client
) -> None:
    log_in(page, server, make_console_user(server, tenant, name="Grace Hopper"))
    api.post("/api/v1/agents", json={"name": "Sam Rivera", "kind": "human"})
    conv = customer(api, "Bea Customer", ["I lost my card yesterday and need it blocked urgently, please help"])
    customer(api, "Carl Other", ["Where is my statement?"])
    audit = Audit()
    for name, size in (("tablet", TABLET), ("phone", PHONE), ("desktop", DESKTOP)):
        page.set_viewport_size(size)
        page.goto(f"{server.url}/console/inbox")
        expect(page.get_by_role("link", name=re.compile("Bea Customer"))).to_be_visible()
        no_sideways_scroll(page)
        audit.check(page, f"Inbox list at {name} size")
        screenshot(page, f"inbox-list-{name}")
        page.get_by_role("link", name=re.compile("Bea Customer")).click()
        reply = page.get_by_role("textbox", name="Reply")
        expect(reply).to_be_visible()
        for button in ("Send reply", "Resolve", "Assign to me"):
            expect(page.get_by_role("button", name=button, exact=True)).to_be_in_viewport()
        expect(page.locator("#conversation-header summary")).to_be_in_viewport()
        expect(page.get_by_role("log").get_by_text("I lost my card yesterday")).to_be_in_viewport()
        no_sideways_scroll(page)
        audit.check(page, f"Inbox conversation at {name} size")
        screenshot(page, f"inbox-conversation-{name}")
        if size is PHONE:
            # On a phone: list, then the conversation alone, then back to the list.
            expect(page.get_by_role("link", name=re.compile("Carl Other"))).to_be_hidden()
            page.get_by_role("link", name="All conversations").click()
            expect(page.get_by_role("link", name=re.compile("Carl Other"))).to_be_visible()
            expect(page.get_by_role("textbox", name="Reply")).to_have_count(0)
    assert conv
    audit.assert_clean()


def test_keyboard_shortcuts_and_the_command_menu(
    page: Any, server: LiveServer, tenant: Tenant, api: httpx.Client
) -> None:
    log_in(page, server, make_console_user(server, tenant, name="Grace Hopper"))
    api.post("/api/v1/agents", json={"name": "Sam Rivera", "kind": "human"})
    first = customer(api, "Ann First", ["first question"])
    second = customer(api, "Ben Second", ["second question"])  # newest: on top of the list
    page.goto(f"{server.url}/console/inbox")
    expect(page.locator("#live-status")).to_have_text("Live")
    audit = Audit()

    # j opens the first conversation of the list, j again the next one, k goes back.
    page.keyboard.press("j")
    expect(page).to_have_url(re.compile(f"/console/inbox/{second}$"))
    reply = page.get_by_role("textbox", name="Reply")
    expect(reply).to_be_focused()  # opening a conversation puts you in the reply box
    # Typing in a field is typing: no shortcut fires.
    page.keyboard.type("just kidding e j k")
    expect(reply).to_have_value("just kidding e j k")
    expect(page).to_have_url(re.compile(f"/console/inbox/{second}$"))
    page.keyboard.press("Escape")  # out of the reply box: now the keys are shortcuts
    expect(reply).not_to_be_focused()
    page.keyboard.press("j")
    expect(page).to_have_url(re.compile(f"/console/inbox/{first}$"))
    page.keyboard.press("Escape")
    page.keyboard.press("k")
    expect(page).to_have_url(re.compile(f"/console/inbox/{second}$"))
    expect(page.get_by_role("textbox", name="Reply")).to_have_value("just kidding e j k")  # the draft waited

    # r, a, / go to the reply box, the assignee list and the search box.
    page.keyboard.press("Escape")
    page.keyboard.press("a")
    expect(page.locator("#conversation-header").get_by_label("Assignee")).to_be_focused()
    page.keyboard.press("Escape")
    page.keyboard.press("/")
    expect(page.get_by_role("searchbox", name="Search conversations")).to_be_focused()
    expect(page.get_by_role("searchbox", name="Search conversations")).to_have_value("")  # "/" was not typed
    page.keyboard.press("Escape")
    page.keyboard.press("r")
    expect(page.get_by_role("textbox", name="Reply")).to_be_focused()
    page.keyboard.press("Escape")

    # ? lists the shortcuts in a dialog; Escape closes it.
    page.keyboard.press("?")
    dialog = page.get_by_role("dialog", name="Keyboard shortcuts")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("Next / previous conversation")
    audit.check(page, "Inbox, keyboard shortcuts dialog")
    screenshot(page, "inbox-shortcuts")
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()

    # e resolves, in place.
    page.keyboard.press("e")
    expect(page.get_by_role("button", name="Reopen")).to_be_visible()
    assert api.get(f"/api/v1/conversations/{second}").json()["status"] == "resolved"

    # Ctrl+K: the command menu, a combobox over a listbox; it works from inside the reply box too.
    page.get_by_role("textbox", name="Reply").focus()
    page.keyboard.press("Control+k")
    menu = page.get_by_role("dialog", name="Command menu")
    expect(menu).to_be_visible()
    box = menu.get_by_role("combobox")
    expect(box).to_be_focused()
    expect(menu.get_by_role("option", name="Reopen")).to_be_visible()
    box.fill("assign sam")
    expect(menu.get_by_role("option")).to_have_count(1)
    expect(menu.get_by_role("option", name="Assign to Sam Rivera")).to_have_attribute("aria-selected", "true")
    audit.check(page, "Inbox, command menu")
    screenshot(page, "inbox-command-menu")
    page.keyboard.press("Enter")
    expect(menu).to_be_hidden()
    expect(page.locator("#assignee-label")).to_have_text("Assigned to Sam Rivera")
    expect(page.get_by_role("textbox", name="Reply")).to_have_value("just kidding e j k")
    # Opening another conversation by name, from the menu.
    page.keyboard.press("Control+k")
    box.fill("open ann")
    box.press("ArrowDown")  # one match: stays on it
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(f"/console/inbox/{first}$"))
    page.keyboard.press("Control+k")
    box.fill("nothing like this")
    expect(menu).to_contain_text("No command matches")
    page.keyboard.press("Escape")
    expect(menu).to_be_hidden()
    audit.assert_clean()


def test_the_customer_panel(page: Any, server: LiveServer, tenant: Tenant, api: httpx.Client) -> None:
    log_in(page, server, make_console_user(server, tenant))
    user = api.post("/api/v1/users", json={
        "name": "Dana Details", "email": "dana@example.com", "external_id": "crm-42",
        "properties": {"plan": "Gold", "cards": 2}}).json()
    old = api.post("/api/v1/conversations", json={"user_id": user["id"], "messages": [
        {"actor": {"type": "user"}, "message_parts": [{"text": {"content": "My old question about fees"}}]}]}).json()
    api.patch(f"/api/v1/conversations/{old['id']}", json={"status": "resolved"})
    conv = api.post("/api/v1/conversations", json={"user_id": user["id"], "messages": [
        {"actor": {"type": "user"}, "message_parts": [{"text": {"content": "A new question"}}]}]}).json()
    api.patch(f"/api/v1/conversations/{conv['id']}", json={"tags": ["vip"], "properties": {"topic": "cards"}})
    server.in_tx(lambda tx: __import__("app.mail.replies", fromlist=["x"]).record_presence(
        tx, user["id"], "https://bank.example/help/cards"))
    audit = Audit()
    for name, size in (("wide", {"width": 1440, "height": 900}), ("desktop", DESKTOP), ("phone", PHONE)):
        page.set_viewport_size(size)
        page.goto(f"{server.url}/console/inbox/{conv['id']}")
        panel = page.get_by_role("complementary", name="Customer")
        if name == "wide":
            expect(page.get_by_role("link", name="Customer details")).to_be_hidden()  # beside the conversation
        else:
            expect(panel).to_be_hidden()
            page.get_by_role("link", name="Customer details").click()
            expect(page.get_by_role("heading", name="Customer")).to_be_focused()
        expect(panel).to_be_visible()
        expect(panel).to_contain_text("Dana Details")
        expect(panel.get_by_role("link", name="dana@example.com")).to_have_attribute("href", "mailto:dana@example.com")
        expect(panel.get_by_role("link", name="https://bank.example/help/cards")).to_be_visible()
        expect(panel).to_contain_text("crm-42")
        expect(panel.get_by_role("link", name=re.compile("My old question about fees"))).to_have_attribute(
            "href", f"/console/inbox/{old['id']}")
        expect(panel).to_contain_text("Resolved")
        expect(panel).to_contain_text("plan")
        expect(panel).to_contain_text("Gold")
        expect(panel).to_contain_text("vip")
        expect(panel).to_contain_text("topic")
        no_sideways_scroll(page)
        audit.check(page, f"Inbox, customer panel ({name})")
        screenshot(page, f"inbox-customer-{name}")
        if name != "wide":
            page.keyboard.press("Escape")
            expect(panel).to_be_hidden()
            expect(page.get_by_role("link", name="Customer details")).to_be_focused()
    audit.assert_clean()


IPHONE = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko)"
          " Version/17.5 Mobile/15E148 Safari/604.1")


def test_the_panel_shows_the_page_and_device_the_customer_chatted_from(
    browser: Any, page: Any, server: LiveServer, tenant: Tenant, api: httpx.Client, host: HostSite
) -> None:
    # The customer, on an iPhone, on the shop's help page, with the widget.
    phone = browser.new_context(viewport=PHONE, user_agent=IPHONE)
    try:
        shop = phone.new_page()
        help_page = host.add("/help/cards", embed_page(server, tenant))
        shop.goto(help_page)
        shop.get_by_role("button", name="Open chat").click()
        shop.get_by_role("textbox", name="Message").fill("Hello from my phone")
        shop.get_by_role("button", name="Send").click()
        conv = wait_for(lambda: (api.get("/api/v1/conversations").json()["data"] or [None])[0], what="the conversation")
        wait_for(lambda: len(api.get(f"/api/v1/conversations/{conv['id']}/messages").json()["data"]) >= 1, what="the message")
    finally:
        phone.close()
    log_in(page, server, make_console_user(server, tenant))
    page.set_viewport_size({"width": 1440, "height": 900})
    page.goto(f"{server.url}/console/inbox/{conv['id']}")
    panel = page.get_by_role("complementary", name="Customer")
    expect(panel.get_by_role("link", name=help_page)).to_have_attribute("href", help_page)
    expect(panel).to_contain_text("Safari 17 on iPhone")

"""The widget on a phone and from the keyboard (issue 23: m02, m16, k04, k07, k08 of the walkthrough):
no keyboard popping up on open, 16 px fields and 44 px targets on touch, full screen upright and on
its side with the page behind locked and Tab kept inside, focus back in the composer after a choice,
and Escape inside a web view closing its sheet."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.browser.conftest import screenshot
from tests.browser.widget_host import HostSite, bot_says, embed_page, only_conversation, text
from tests.conftest import LiveServer, Tenant
from tests.webviews.support import Receiver, card_form

pytestmark = pytest.mark.browser

ACTIVE = "w => { const a = w.shadowRoot.activeElement; return a ? a.tagName.toLowerCase() + '.' + (a.className || '') : null; }"
COMPOSER_FOCUSED = "() => document.querySelector('backchannel-widget').shadowRoot.activeElement?.tagName === 'TEXTAREA'"
HOST_LINKS = "".join(f'<p><a href="#link{i}">Host page link {i}</a></p>' for i in range(3))


def _phone(browser: Any, width: int = 390, height: int = 844) -> Any:
    context = browser.new_context(viewport={"width": width, "height": height}, has_touch=True, is_mobile=True)
    context.set_default_timeout(10_000)
    return context


def _open_with_a_question(page: Any, server: LiveServer, tenant: Tenant, host: HostSite, api: httpx.Client) -> dict[str, Any]:
    from playwright.sync_api import expect

    page.goto(host.add("/shop", embed_page(server, tenant, body=HOST_LINKS + "<p style='height:3000px'>Long page</p>")))
    page.get_by_role("button", name="Open chat").click()
    expect(page.get_by_role("textbox", name="Message")).to_be_visible()
    return {}


def test_on_a_phone_the_chat_owns_the_screen_without_popping_the_keyboard(
    browser: Any, server: LiveServer, tenant: Tenant, api: httpx.Client, host: HostSite
) -> None:
    from playwright.sync_api import expect

    context = _phone(browser)
    try:
        page = context.new_page()
        _open_with_a_question(page, server, tenant, host, api)
        widget = page.locator("backchannel-widget")
        assert page.evaluate("matchMedia('(pointer: coarse)').matches")
        # Opening does not focus the composer (that would raise the keyboard over the chat).
        assert not str(widget.evaluate(ACTIVE)).startswith("textarea")
        box = widget.evaluate("w => { const r = w.shadowRoot.querySelector('.panel').getBoundingClientRect(); return [r.width, r.height]; }")
        assert box == [390, 844]
        assert page.evaluate("getComputedStyle(document.documentElement).overflow") == "hidden"  # page behind locked
        textbox = page.get_by_role("textbox", name="Message")
        expect(textbox).to_have_css("font-size", "16px")  # iOS does not zoom into 16 px fields
        for name in ("Send", "Attach a file", "Minimize chat"):
            height = page.get_by_role("button", name=name).bounding_box()["height"]
            assert height >= 44, (name, height)

        page.get_by_role("textbox", name="Message").fill("Hello from my phone")
        page.get_by_role("button", name="Send").click()
        conv = only_conversation(api)
        bot_says(api, conv["id"], text("How can we help?"),
                 replies=[{"quick_replies": {"options": [{"label": "Card", "payload": "card"}]}}])
        card = page.get_by_role("button", name="Card")
        expect(card).to_be_visible()
        assert card.bounding_box()["height"] >= 44
        screenshot(page, "widget-phone-touch-targets")

        # Tab never leaves the full-screen panel for the hidden host page's links.
        textbox.focus()
        for _ in range(12):
            page.keyboard.press("Tab")
            assert page.evaluate("document.activeElement.tagName.toLowerCase()") == "backchannel-widget"
        for _ in range(12):
            page.keyboard.press("Shift+Tab")
            assert page.evaluate("document.activeElement.tagName.toLowerCase()") == "backchannel-widget"

        page.get_by_role("button", name="Minimize chat").click()
        assert page.evaluate("getComputedStyle(document.documentElement).overflow") != "hidden"  # unlocked
    finally:
        context.close()


def test_a_phone_on_its_side_gets_the_whole_screen_too(
    browser: Any, server: LiveServer, tenant: Tenant, api: httpx.Client, host: HostSite
) -> None:
    context = _phone(browser, 844, 390)
    try:
        page = context.new_page()
        _open_with_a_question(page, server, tenant, host, api)
        box = page.locator("backchannel-widget").evaluate(
            "w => { const r = w.shadowRoot.querySelector('.panel').getBoundingClientRect(); return [r.x, r.y, r.width, r.height]; }")
        assert box == [0, 0, 844, 390]
        screenshot(page, "widget-phone-landscape")
    finally:
        context.close()


def test_keyboard_focus_follows_choices_and_escape_closes_a_web_view(
    page: Any, server: LiveServer, tenant: Tenant, api: httpx.Client, host: HostSite, receiver: Receiver
) -> None:
    from playwright.sync_api import expect

    api.post("/api/v1/webhook-endpoints", json={"url": receiver.url + "/hooks"})
    _open_with_a_question(page, server, tenant, host, api)
    page.wait_for_function(COMPOSER_FOCUSED)  # desktop: ready to type
    textbox = page.get_by_role("textbox", name="Message")
    textbox.fill("I have a question")
    textbox.press("Enter")
    conv = only_conversation(api)
    bot_says(api, conv["id"], text("About what?"),
             replies=[{"quick_replies": {"options": [{"label": "My card", "payload": "card"}]}}])
    page.get_by_role("button", name="My card").focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("log")).to_contain_text("My card")
    page.wait_for_function(COMPOSER_FOCUSED)  # k04: back in the composer
    expect(textbox).to_have_css("outline-width", "2px")  # a visible focus ring

    bot_says(api, conv["id"], text("Please confirm your card."),
             {"web_view": {"label": "Card details", "form": card_form(receiver.url + "/hooks/card")}})
    opener = page.get_by_role("button", name="Card details")
    opener.click()
    form = page.frame_locator("iframe[title='Card details']")
    number = form.get_by_label("Card number")
    number.click()
    # Pressed inside the form's frame (k07). Key down only while the frame exists: the keydown
    # removes the frame, and a key-up sent into a frame being torn down can leave Chromium's
    # input dispatch waiting forever (a CI run hung here until the test timeout).
    page.keyboard.down("Escape")
    expect(page.get_by_role("dialog", name="Card details")).to_have_count(0)
    page.keyboard.up("Escape")
    expect(opener).to_be_focused()

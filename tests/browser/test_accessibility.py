"""Accessibility, checked by axe-core in real Chromium: no serious or critical violation on the
widget (closed, open with interactive parts, a web view open; desktop in the light scheme, a
phone in the dark one) or on any
console page (every link of the console's navigation, an open conversation, an endpoint's page)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.browser.accessibility import Audit
from tests.browser.conftest import screenshot
from tests.browser.test_console import log_in
from tests.browser.widget_host import HostSite, bot_says, embed_page, only_conversation, text
from tests.conftest import LiveServer, Tenant
from tests.console.support import make_console_user
from tests.webviews.support import Receiver, card_form

pytestmark = pytest.mark.browser

PHONE = {"width": 390, "height": 844}


def _chat_with_parts(
    page: Any, server: LiveServer, tenant: Tenant, host: HostSite, api: httpx.Client, audit: Audit
) -> dict[str, Any]:
    from playwright.sync_api import expect

    page.goto(host.add("/shop", embed_page(server, tenant)))
    expect(page.get_by_role("button", name="Open chat")).to_be_visible()
    audit.check(page, "widget closed")
    page.get_by_role("button", name="Open chat").click()
    page.get_by_role("textbox", name="Message").fill("Hello, I need help with my card")
    page.get_by_role("button", name="Send").click()
    conv = only_conversation(api)
    bot_says(
        api, conv["id"],
        {"carousel": {"cards": [
            {"title": "Classic card", "subtitle": "No annual fee",
             "buttons": [{"url_button": {"label": "Details", "url": "https://bank.example.com/classic"}}]},
            {"title": "Gold card", "subtitle": "Travel insurance included",
             "buttons": [{"url_button": {"label": "Details", "url": "https://bank.example.com/gold"}}]},
        ]}},
    )
    bot_says(
        api, conv["id"], text("Happy to help. What is it about?"),
        replies=[{"quick_replies": {"options": [{"label": "Lost card", "payload": "lost"},
                                                {"label": "New PIN", "payload": "pin"}]}}],
    )
    expect(page.get_by_role("button", name="Lost card")).to_be_visible()
    expect(page.get_by_role("log")).to_contain_text("Gold card")
    return conv


@pytest.mark.parametrize("viewport", [None, PHONE], ids=["desktop-light", "phone-dark"])
def test_the_widget_has_no_serious_accessibility_violations(
    browser: Any, server: LiveServer, tenant: Tenant, api: httpx.Client, host: HostSite, receiver: Receiver,
    viewport: dict[str, int] | None,
) -> None:
    from playwright.sync_api import expect

    context = browser.new_context(
        viewport=viewport or {"width": 1280, "height": 800}, has_touch=viewport is not None,
        color_scheme="dark" if viewport else "light",
    )
    context.set_default_timeout(10_000)
    try:
        page = context.new_page()
        audit = Audit()
        api.post("/api/v1/webhook-endpoints", json={"url": receiver.url + "/hooks"})
        conv = _chat_with_parts(page, server, tenant, host, api, audit)
        audit.check(page, "widget open, with quick replies and a carousel")

        bot_says(api, conv["id"], text("Please confirm your card."),
                 {"web_view": {"label": "Card details", "form": card_form(receiver.url + "/hooks/card")}})
        page.get_by_role("button", name="Card details").click()
        form = page.frame_locator("iframe[title='Card details']")
        expect(form.get_by_label("Card number")).to_be_visible()
        screenshot(page, f"a11y-widget-webview-{'phone' if viewport else 'desktop'}")
        audit.check(page, "widget with a web view open (the sheet and its form)")
        audit.assert_clean()
    finally:
        context.close()


def test_every_console_page_has_no_serious_accessibility_violations(
    page: Any, server: LiveServer, tenant: Tenant, api: httpx.Client
) -> None:
    from playwright.sync_api import expect

    user = api.post("/api/v1/users", json={"name": "Bea Customer", "email": "bea@example.com"}).json()
    conv = api.post("/api/v1/conversations", json={
        "user_id": user["id"],
        "messages": [{"actor": {"type": "user"}, "message_parts": [{"text": {"content": "My card is stuck"}}]}],
    }).json()
    endpoint = api.post("/api/v1/webhook-endpoints", json={"url": "https://hooks.example.com/bot"}).json()

    audit = Audit()
    page.goto(server.url + "/console/login")
    audit.check(page, "console login")
    log_in(page, server, make_console_user(server, tenant))
    nav = page.get_by_role("navigation", name="Console")
    expect(nav).to_be_visible()
    links = [(a.inner_text().strip(), a.get_attribute("href")) for a in nav.get_by_role("link").all()]
    assert len(links) >= 5, links  # Inbox, API Tokens, Webhooks, Widget, Team at least
    for name, href in links:
        page.goto(server.url + href)
        audit.check(page, f"console page {name!r} ({href})")

    for what, path in (("an open conversation", f"/console/inbox/{conv['id']}"),
                       ("an endpoint's page", f"/console/settings/webhooks/{endpoint['id']}")):
        page.goto(server.url + path)
        audit.check(page, what)
    audit.assert_clean()


def test_the_hosted_form_wears_the_widget_theme_and_its_light_sheet(
    browser: Any, server: LiveServer, tenant: Tenant, api: httpx.Client, host: HostSite, receiver: Receiver
) -> None:
    """d06, d18: the form's button is the business's colour, not Backchannel blue, and a dark
    system scheme does not put a dark form under the widget's light sheet."""
    from playwright.sync_api import expect

    assert api.patch("/api/v1/widget-settings", json={"theme_color": "#1a7f37"}).status_code == 200
    api.post("/api/v1/webhook-endpoints", json={"url": receiver.url + "/hooks"})
    context = browser.new_context(viewport={"width": 1280, "height": 800}, color_scheme="dark")
    context.set_default_timeout(10_000)
    try:
        page = context.new_page()
        page.goto(host.add("/shop", embed_page(server, tenant)))
        page.get_by_role("button", name="Open chat").click()
        page.get_by_role("textbox", name="Message").fill("Card please")
        page.get_by_role("button", name="Send").click()
        conv = only_conversation(api)
        bot_says(api, conv["id"], text("Please confirm your card."),
                 {"web_view": {"label": "Card details", "form": card_form(receiver.url + "/hooks/card")}})
        page.get_by_role("button", name="Card details").click()
        form = page.frame_locator("iframe[title='Card details']")
        button = form.get_by_role("button", name="Verify card")
        expect(button).to_be_visible()
        expect(button).to_have_css("background-color", "rgb(26, 127, 55)")
        expect(button).to_have_css("color", "rgb(255, 255, 255)")
        expect(form.locator("body")).to_have_css("background-color", "rgb(255, 255, 255)")
        screenshot(page, "webview-form-theme-dark-scheme")
    finally:
        context.close()

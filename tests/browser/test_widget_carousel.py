"""Carousels and the resume after a web view (issue 23, d10 of the walkthrough): "2 of 4" and
previous/next arrows on pointer devices, the position alone on touch screens, and the bot's
reply to a closed web view shown from its start, not scrolled past."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.browser.conftest import screenshot
from tests.browser.widget_host import HostSite, bot_says, embed_page, only_conversation, text
from tests.conftest import LiveServer, Tenant
from tests.webviews.support import Receiver, card_form

pytestmark = pytest.mark.browser


def _cards(n: int) -> dict[str, Any]:
    return {"carousel": {"cards": [
        {"title": f"Statement {i + 1}", "subtitle": f"Month {i + 1}",
         "buttons": [{"postback": {"label": "Open", "payload": f"s{i}"}}]} for i in range(n)]}}


def _chat(page: Any, server: LiveServer, tenant: Tenant, host: HostSite, api: httpx.Client) -> dict[str, Any]:
    from playwright.sync_api import expect

    page.goto(host.add("/shop", embed_page(server, tenant)))
    page.get_by_role("button", name="Open chat").click()
    page.get_by_role("textbox", name="Message").fill("My statements please")
    page.get_by_role("button", name="Send").click()
    expect(page.get_by_role("log")).to_contain_text("My statements please")
    return only_conversation(api)


def test_a_carousel_says_where_you_are_and_moves_with_arrows(
    page: Any, server: LiveServer, tenant: Tenant, api: httpx.Client, host: HostSite
) -> None:
    from playwright.sync_api import expect

    conv = _chat(page, server, tenant, host, api)
    bot_says(api, conv["id"], _cards(4))
    carousel = page.get_by_role("region", name="Cards")
    expect(carousel).to_be_visible()
    position = page.get_by_text("1 of 4", exact=True)
    expect(position).to_be_visible()
    prev, next_ = page.get_by_role("button", name="Previous card"), page.get_by_role("button", name="Next card")
    expect(prev).to_be_disabled()
    next_.click()
    expect(page.get_by_text("2 of 4", exact=True)).to_be_visible()
    expect(prev).to_be_enabled()
    screenshot(page, "widget-carousel-arrows")
    for i in (3, 4):
        next_.click()
        expect(page.get_by_text(f"{i} of 4", exact=True)).to_be_visible()
    expect(next_).to_be_disabled()
    expect(page.get_by_role("group", name="Statement 4")).to_be_in_viewport()
    prev.click()
    expect(page.get_by_text("4 of 4", exact=True)).to_have_count(0)
    expect(next_).to_be_enabled()


def test_on_touch_screens_the_position_shows_without_arrows(
    browser: Any, server: LiveServer, tenant: Tenant, api: httpx.Client, host: HostSite
) -> None:
    from playwright.sync_api import expect

    context = browser.new_context(viewport={"width": 390, "height": 844}, has_touch=True, is_mobile=True)
    context.set_default_timeout(10_000)
    try:
        page = context.new_page()
        conv = _chat(page, server, tenant, host, api)
        bot_says(api, conv["id"], _cards(3))
        expect(page.get_by_text("1 of 3", exact=True)).to_be_visible()
        expect(page.get_by_role("button", name="Next card")).to_be_hidden()
        page.get_by_role("region", name="Cards").evaluate("s => s.scrollBy({left: 500, behavior: 'instant'})")
        expect(page.get_by_text("3 of 3", exact=True)).to_be_visible()
    finally:
        context.close()


def test_after_a_web_view_the_bots_reply_shows_from_its_start(
    page: Any, server: LiveServer, tenant: Tenant, api: httpx.Client, host: HostSite, receiver: Receiver
) -> None:
    from playwright.sync_api import expect

    api.post("/api/v1/webhook-endpoints", json={"url": receiver.url + "/hooks"})
    conv = _chat(page, server, tenant, host, api)
    for i in range(6):  # enough transcript for the log to scroll
        bot_says(api, conv["id"], text(f"Earlier line {i + 1}"))
    bot_says(api, conv["id"], text("First, your card."),
             {"web_view": {"label": "Card details", "form": card_form(receiver.url + "/hooks/card")}})
    page.get_by_role("button", name="Card details").click()
    page.get_by_role("button", name="Close").click()
    expect(page.get_by_role("dialog", name="Card details")).to_have_count(0)
    bot_says(api, conv["id"], text("Here are your last statements:"), _cards(4))
    for i in range(6):  # more of the reply than the log can show at once
        bot_says(api, conv["id"], text(f"Statement detail line {i + 1}"))
    expect(page.get_by_role("log")).to_contain_text("Statement detail line 6")
    lead_in = page.get_by_text("Here are your last statements:")
    page.wait_for_timeout(300)  # the scroll happens on the next frame
    log_box = page.get_by_role("log").bounding_box()
    box = lead_in.bounding_box()
    # The reply's start at the top of the log: neither above it (scrolled past) nor far below.
    assert log_box["y"] <= box["y"] <= log_box["y"] + 80, (log_box, box)
    screenshot(page, "widget-resume-after-webview")

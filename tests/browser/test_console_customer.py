"""The console's side of issue 20: Settings > Widget's language, hours and ratings choices."""

from __future__ import annotations

from contextlib import ExitStack
from typing import Any

import httpx
from playwright.sync_api import expect

from tests.browser.conftest import screenshot
from tests.browser.test_console import log_in
from tests.conftest import LiveServer, Tenant
from tests.console.support import make_console_user
from tests.realtime.test_realtime import WidgetClient


def test_widget_page_chooses_the_workspace_language(page: Any, server: LiveServer, tenant: Tenant, api: httpx.Client) -> None:
    log_in(page, server, make_console_user(server, tenant))
    page.get_by_role("link", name="Widget").click()
    language = page.get_by_label("Language")
    expect(language).to_have_value("")  # the visitor's browser decides until a language is chosen
    language.select_option(label="Deutsch")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status")).to_contain_text("saved")
    assert api.get("/api/v1/widget-settings").json()["locale"] == "de"
    expect(page.get_by_label("Language")).to_have_value("de")
    page.get_by_label("Language").select_option(value="")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status")).to_contain_text("saved")
    assert api.get("/api/v1/widget-settings").json()["locale"] is None


def test_the_transcript_shows_the_customers_rating(page: Any, server: LiveServer, tenant: Tenant, api: httpx.Client) -> None:
    with ExitStack() as stack:
        widget = WidgetClient(stack, server, tenant)
        widget.connect()
        widget.send({"type": "message", "client_message_id": "c1", "text": "Where is my statement?"})
        conv_id = widget.expect("message")["message"]["conversation_id"]
        api.patch(f"/api/v1/conversations/{conv_id}", json={"status": "resolved"}).raise_for_status()
        widget.expect("conversation")
        widget.send({"type": "rate", "score": 2, "comment": "Took a while <b>but</b> fine"})
        widget.expect("conversation")
    log_in(page, server, make_console_user(server, tenant))
    page.goto(f"{server.url}/console/inbox/{conv_id}?view=resolved")
    line = page.locator("#rating-line")
    expect(line).to_contain_text("Customer rated this conversation 2 of 5")
    expect(line).to_contain_text("“Took a while <b>but</b> fine”")  # text, never markup
    screenshot(page, "console-transcript-rating")

"""The console's side of issue 20: Settings > Widget's language, hours and ratings choices."""

from __future__ import annotations

from contextlib import ExitStack
from typing import Any

import httpx
from playwright.sync_api import expect

from tests.browser.accessibility import assert_accessible
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
    assert_accessible(page, "a transcript with a rating")


def test_widget_page_edits_business_hours_away_message_and_ratings(
    page: Any, server: LiveServer, tenant: Tenant, api: httpx.Client
) -> None:
    log_in(page, server, make_console_user(server, tenant))
    page.get_by_role("link", name="Widget").click()
    page.get_by_label("Set business hours").check()
    page.get_by_label("Time zone").select_option("Europe/Berlin")
    page.get_by_label("Monday: opens", exact=True).fill("09:00")
    page.get_by_label("Monday: closes", exact=True).fill("12:30")
    page.get_by_label("Monday: opens again").fill("13:30")
    page.get_by_label("Monday: closes again").fill("17:00")
    page.get_by_label("Saturday: opens", exact=True).fill("10:00")
    page.get_by_label("Saturday: closes", exact=True).fill("00:00")  # midnight
    page.get_by_label("Tuesday: opens", exact=True).fill("17:00")
    page.get_by_label("Tuesday: closes", exact=True).fill("09:00")  # backwards: refused, named
    page.get_by_label("Away message").fill("We're back Monday at 9:00 (Berlin time).")
    page.get_by_label("Ask customers to rate").uncheck()
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#hours-error")).to_contain_text("ends after it starts")
    assert api.get("/api/v1/widget-settings").json()["business_hours"] is None  # nothing saved
    expect(page.get_by_label("Monday: opens again")).to_have_value("13:30")  # the form kept what was typed
    page.get_by_label("Tuesday: opens", exact=True).fill("")
    page.get_by_label("Tuesday: closes", exact=True).fill("")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status")).to_contain_text("saved")
    settings = api.get("/api/v1/widget-settings").json()
    assert settings["business_hours"] == {
        "timezone": "Europe/Berlin",
        "weekly": {"mon": [["09:00", "12:30"], ["13:30", "17:00"]], "sat": [["10:00", "24:00"]]},
    }
    assert settings["away_message"] == "We're back Monday at 9:00 (Berlin time)."
    assert settings["ratings_enabled"] is False
    expect(page.get_by_label("Saturday: closes", exact=True)).to_have_value("00:00")
    assert_accessible(page, "Settings > Widget with business hours")
    page.get_by_role("group", name="Business hours").screenshot(path=str(screenshot(page, "console-widget-hours")))
    page.get_by_label("Set business hours").uncheck()
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status")).to_contain_text("saved")
    assert api.get("/api/v1/widget-settings").json()["business_hours"] is None


def test_reports_page_draws_charts_that_need_no_javascript(
    browser: Any, server: LiveServer, tenant: Tenant, api: httpx.Client
) -> None:
    user = api.post("/api/v1/users", json={"name": "Ada"}).json()
    for n in range(3):
        conv = api.post("/api/v1/conversations", json={"user_id": user["id"]}).json()
        for actor, words in (("user", "Hello"), ("bot", "Hi! How can I help?")):
            api.post(
                f"/api/v1/conversations/{conv['id']}/messages",
                json={"actor": {"type": actor}, "message_parts": [{"text": {"content": words}}]},
            ).raise_for_status()
        if n < 2:
            api.patch(f"/api/v1/conversations/{conv['id']}", json={"status": "resolved"}).raise_for_status()
    context = browser.new_context(viewport={"width": 1280, "height": 1000}, java_script_enabled=False)
    page = context.new_page()
    log_in(page, server, make_console_user(server, tenant))
    page.get_by_role("link", name="Reports").click()
    expect(page.get_by_role("heading", name="Reports", level=1)).to_be_visible()
    expect(page.locator(".report-totals")).to_contain_text("Conversations3")
    for title in ("Conversations per day", "Median first response", "Median time to resolve", "Average rating"):
        expect(page.get_by_role("img", name=title)).to_be_visible()
    assert page.locator("svg.chart rect.chart-bar").count() >= 1  # today's conversations, drawn by the server
    page.get_by_text("The numbers", exact=True).first.click()
    expect(page.locator("details").first.get_by_role("table")).to_contain_text("3")
    screenshot(page, "console-reports")
    page.goto(f"{server.url}/console/reports?from=2026-12-31&to=2026-01-01")
    expect(page.get_by_role("alert")).to_contain_text("on or before the end")
    context.close()

"""The widget in English, German and Arabic (SPEC §12), on a desktop and a 390x844 phone:
the language from the page, the workspace or the browser; right to left for Arabic; the away
message outside business hours; times written the language's way."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.browser.accessibility import assert_accessible
from tests.browser.conftest import screenshot
from tests.browser.widget_host import (
    HostSite,
    bot_says,
    embed_page,
    only_conversation,
    serve_host_site,
    text,
    wait_for,
)
from tests.conftest import LiveServer, Tenant

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}


@pytest.fixture
def host() -> Iterator[HostSite]:
    yield from serve_host_site()


def open_page(browser: Any, url: str, *, locale: str = "en-US", viewport: dict[str, int] = DESKTOP) -> Page:
    context = browser.new_context(viewport=viewport, locale=locale)
    context.set_default_timeout(10_000)
    page: Page = context.new_page()
    page.goto(url)
    return page


def settings_script(settings: dict[str, Any]) -> str:
    return f"<script>window.BackchannelSettings = {json.dumps(settings)};</script>"


def launcher_box(page: Page) -> dict[str, float]:
    return page.locator("backchannel-widget").evaluate(
        "h => { const r = h.shadowRoot.querySelector('.launcher').getBoundingClientRect(); return {x: r.x, w: r.width}; }"
    )  # type: ignore[no-any-return]


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_german_from_the_page_settings(
    browser: Any, server: LiveServer, tenant: Tenant, api: httpx.Client, host: HostSite, viewport: dict[str, int]
) -> None:
    url = host.add("/", embed_page(server, tenant, before=settings_script({"locale": "de"})))
    page = open_page(browser, url, locale="en-US", viewport=viewport)  # the page's word beats the browser's
    page.get_by_role("button", name="Chat öffnen").click()
    box = page.get_by_role("textbox", name="Nachricht")
    expect(box).to_be_focused()
    expect(box).to_have_attribute("placeholder", "Nachricht schreiben…")
    box.fill("Hallo, ich habe eine Frage zu meiner Karte.")
    page.get_by_role("button", name="Senden").click()
    conv = only_conversation(api)
    bot_says(api, conv["id"], text("Gern! Worum geht es genau?"))
    log = page.get_by_role("log", name="Unterhaltung")
    expect(log).to_contain_text("Gern! Worum geht es genau?")
    expect(page.get_by_text("Wir antworten meist innerhalb weniger Minuten")).to_be_visible()
    # Times in German: 24-hour clock, no AM/PM
    times = page.locator("backchannel-widget").evaluate(
        "h => [...h.shadowRoot.querySelectorAll('time')].map(t => [t.textContent, t.title])"
    )
    assert times and all("AM" not in shown and "PM" not in shown for shown, _ in times), times
    assert any(
        day in times[0][1] for day in ("Montag", "Dienstag", "Mittwoch", "Donnerstag", "Freitag", "Samstag", "Sonntag")
    ), times
    screenshot(page, f"widget-de-{'phone' if viewport == PHONE else 'desktop'}")
    page.context.close()


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_arabic_from_the_workspace_is_right_to_left_with_the_launcher_mirrored(
    browser: Any, server: LiveServer, tenant: Tenant, api: httpx.Client, host: HostSite, viewport: dict[str, int]
) -> None:
    api.patch("/api/v1/widget-settings", json={"locale": "ar"}).raise_for_status()
    page = open_page(browser, host.add("/", embed_page(server, tenant)), locale="en-US", viewport=viewport)
    launcher = page.get_by_role("button", name="فتح المحادثة")
    expect(launcher).to_be_visible()
    root = page.locator("backchannel-widget").evaluate(
        "h => { const r = h.shadowRoot.querySelector('.root'); return [r.dir, r.lang]; }"
    )
    assert root == ["rtl", "ar"]
    box = launcher_box(page)
    assert box["x"] + box["w"] < viewport["width"] / 2, box  # bottom-left: the mirror of bottom-right
    launcher.click()
    page.get_by_role("textbox", name="رسالة").fill("مرحبا، لدي سؤال عن بطاقتي")
    page.get_by_role("button", name="إرسال").click()
    conv = only_conversation(api)
    bot_says(api, conv["id"], text("أهلاً! كيف يمكنني مساعدتك؟"))
    expect(page.get_by_role("log", name="المحادثة")).to_contain_text("كيف يمكنني مساعدتك")
    # The customer's own bubble sits at the start side's opposite: the left, in Arabic.
    sides = page.locator("backchannel-widget").evaluate(
        """h => { const s = h.shadowRoot; const log = s.querySelector('.log').getBoundingClientRect();
        const mine = s.querySelector('.msg.user .bubble').getBoundingClientRect();
        const theirs = s.querySelector('.msg.bot .bubble').getBoundingClientRect();
        return {mine: mine.left - log.left, theirs: log.right - theirs.right}; }"""
    )
    assert sides["mine"] < 30 and sides["theirs"] < 30, sides
    screenshot(page, f"widget-ar-{'phone' if viewport == PHONE else 'desktop'}")
    assert_accessible(page, "the Arabic widget")
    page.context.close()


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_english_outside_business_hours_shows_the_away_message(
    browser: Any, server: LiveServer, tenant: Tenant, api: httpx.Client, host: HostSite, viewport: dict[str, int]
) -> None:
    # Open only on a day of the week that is not today, in the business's own time zone.
    closed = {"timezone": "Pacific/Kiritimati", "weekly": {}}
    api.patch("/api/v1/widget-settings", json={"business_hours": closed}).raise_for_status()
    page = open_page(browser, host.add("/", embed_page(server, tenant)), locale="en-GB", viewport=viewport)
    page.get_by_role("button", name="Open chat").click()
    expect(page.get_by_text("We're away right now. Leave a message and we'll reply when we're back.")).to_be_visible()
    only_conversation(api)  # the socket is up (it asked for the conversation)
    r = api.patch("/api/v1/widget-settings", json={"away_message": "Our team is back Monday at 9:00 (Berlin time)."})
    assert r.status_code == 200, r.text
    expect(page.get_by_text("Our team is back Monday at 9:00 (Berlin time).")).to_be_visible()  # live, no reload
    screenshot(page, f"widget-en-away-{'phone' if viewport == PHONE else 'desktop'}")
    assert_accessible(page, "the widget outside business hours")
    always = {
        "timezone": "UTC",
        "weekly": {d: [["00:00", "24:00"]] for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")},
    }
    api.patch("/api/v1/widget-settings", json={"business_hours": always}).raise_for_status()
    expect(page.get_by_text("We usually reply in a few minutes")).to_be_visible()
    page.context.close()


def test_browser_language_then_set_locale_then_page_events(
    browser: Any, server: LiveServer, tenant: Tenant, api: httpx.Client, host: HostSite
) -> None:
    events = """<script>window.seen = []; window.Backchannel = {q: [["on", "ready", function () { seen.push("ready"); }],
      ["on", "open", function () { seen.push("open"); }], ["on", "close", function () { seen.push("close"); }],
      ["on", "unread", function (e) { seen.push("unread:" + e.count); }],
      ["on", "message", function (e) { seen.push("message:" + e.message.actor.type); }]]};</script>"""
    page = open_page(browser, host.add("/", embed_page(server, tenant, before=events)), locale="fr-FR")
    page.get_by_role("button", name="Ouvrir le chat").click()  # the browser's language
    page.get_by_role("textbox", name="Message").fill("Bonjour")
    page.get_by_role("button", name="Envoyer").click()
    page.evaluate("Backchannel.setLocale('de')")
    expect(page.get_by_role("button", name="Senden")).to_be_visible()
    expect(page.get_by_role("button", name="Chat minimieren")).to_be_visible()
    page.get_by_role("button", name="Chat minimieren").click()
    conv = only_conversation(api)
    bot_says(api, conv["id"], text("Hallo!"))
    expect(page.get_by_role("button", name="Chat öffnen")).to_be_visible()
    page.wait_for_function("seen.indexOf('unread:1') >= 0")
    seen = page.evaluate("seen")
    assert seen[0] == "ready" and seen.count("ready") == 1, seen
    assert seen.index("open") < seen.index("message:user") < seen.index("close") < seen.index("message:bot"), seen
    page.evaluate("Backchannel.setLocale('xx')")  # not a language we have: the next choice (the browser's)
    expect(page.get_by_role("button", name="Ouvrir le chat")).to_be_visible()
    page.context.close()


RATING_WORDS = {
    "en": ("How was this conversation?", "Rate {n} of 5", "Add a comment (optional)", "Send feedback", "Thank you for your feedback!"),
    "de": ("Wie war diese Unterhaltung?", "Mit {n} von 5 bewerten", "Kommentar (optional)", "Feedback senden", "Danke für Ihr Feedback!"),
    "ar": ("كيف كانت هذه المحادثة؟", "تقييم {n} من 5", "أضف تعليقًا (اختياري)", "إرسال التقييم", "شكرًا على ملاحظاتك!"),
}


@pytest.mark.parametrize(
    ("code", "viewport"),
    [("en", DESKTOP), ("de", PHONE), ("ar", PHONE), ("ar", DESKTOP)],
    ids=["en-desktop", "de-phone", "ar-phone", "ar-desktop"],
)
def test_rating_after_resolve(
    browser: Any, server: LiveServer, tenant: Tenant, api: httpx.Client, host: HostSite, code: str, viewport: dict[str, int]
) -> None:
    question, rate_n, comment_label, send_label, thanks = RATING_WORDS[code]
    url = host.add("/", embed_page(server, tenant, before=settings_script({"locale": code})))
    page = open_page(browser, url, viewport=viewport)
    page.locator("backchannel-widget").evaluate("h => h.shadowRoot.querySelector('.launcher').click()")
    page.locator("backchannel-widget").evaluate(
        "h => { const t = h.shadowRoot.querySelector('textarea'); t.value = 'Card unblocked?'; "
        "h.shadowRoot.querySelector('.send').click(); }"
    )
    conv = only_conversation(api)
    bot_says(api, conv["id"], text("Done: your card works again."))
    api.patch(f"/api/v1/conversations/{conv['id']}", json={"status": "resolved"}).raise_for_status()
    group = page.get_by_role("group", name=question)
    expect(group).to_be_visible()
    expect(group.get_by_role("button")).to_have_count(5)
    group.get_by_role("button", name=rate_n.format(n=4)).click()
    expect(group.get_by_role("button", name=rate_n.format(n=4))).to_have_attribute("aria-pressed", "true")
    comment = group.get_by_role("textbox", name=comment_label)
    expect(comment).to_be_focused()
    comment.fill("Schnell und freundlich" if code == "de" else "Fast and friendly")
    assert_accessible(page, f"the rating card ({code})")
    screenshot(page, f"widget-{code}-rating-{'phone' if viewport == PHONE else 'desktop'}")
    group.get_by_role("button", name=send_label).click()
    expect(group.get_by_text(thanks)).to_be_visible()

    def rated() -> dict[str, Any] | None:
        rating = api.get(f"/api/v1/conversations/{conv['id']}").json()["rating"]
        return rating if rating and rating["comment"] else None

    rating = wait_for(rated, what="the rating with its comment")
    assert rating["score"] == 4
    # The customer writes again: the conversation reopens and the question goes away.
    page.locator("backchannel-widget").evaluate(
        "h => { const t = h.shadowRoot.querySelector('.composer textarea'); t.value = 'One more thing'; "
        "h.shadowRoot.querySelector('.send').click(); }"
    )
    expect(group).to_be_hidden()
    page.context.close()

"""The widget asks for an email outside business hours (SPEC §12), in English, German and
Arabic, on a phone and a desktop; an offline-reply email's link opens the chat."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.accessibility import assert_accessible
from tests.browser.conftest import screenshot
from tests.browser.test_widget_languages import DESKTOP, PHONE, open_page, settings_script
from tests.browser.widget_host import HostSite, embed_page, serve_host_site, wait_for
from tests.conftest import LiveServer, free_port
from tests.mail.smtp import Inbox, mail_env, smtp_server

WORDS = {
    "en": ("Email", "Notify me", "Please enter a valid email address.", "Thanks! We'll email you at {email}.", "Send"),
    "de": (
        "E-Mail",
        "Benachrichtigen",
        "Bitte geben Sie eine gültige E-Mail-Adresse ein.",
        "Danke! Wir schreiben Ihnen an {email}.",
        "Senden",
    ),
    "ar": (
        "البريد الإلكتروني",
        "أبلغني",
        "يرجى إدخال عنوان بريد إلكتروني صالح.",
        "شكرًا! سنراسلك على {email}.",
        "إرسال",
    ),
}
CLOSED = {"timezone": "Europe/Berlin", "weekly": {}}


@pytest.fixture
def host() -> Iterator[HostSite]:
    yield from serve_host_site()


@pytest.fixture
def mail_server(server_factory: Any) -> Iterator[tuple[LiveServer, Inbox]]:
    port = free_port()
    controller, inbox = smtp_server(port)
    try:
        yield server_factory(env=mail_env(port)), inbox
    finally:
        controller.stop()


@pytest.mark.parametrize(
    ("code", "viewport"), [("en", DESKTOP), ("de", PHONE), ("ar", PHONE)], ids=["en-desktop", "de-phone", "ar-phone"]
)
def test_the_widget_asks_for_an_email_outside_business_hours(
    browser: Any, mail_server: tuple[LiveServer, Any], host: HostSite, code: str, viewport: dict[str, int]
) -> None:
    server, _inbox = mail_server
    tenant = server.new_tenant()
    label, notify, invalid, saved, send = WORDS[code]
    with server.client(tenant) as api:
        api.patch("/api/v1/widget-settings", json={"business_hours": CLOSED}).raise_for_status()
        page = open_page(
            browser,
            host.add("/shop", embed_page(server, tenant, before=settings_script({"locale": code}))),
            viewport=viewport,
        )
        page.locator("backchannel-widget").evaluate("h => h.shadowRoot.querySelector('.launcher').click()")
        box = page.locator("backchannel-widget").locator("textarea.composer-input, .composer textarea").first
        box.fill("Hello?")
        page.get_by_role("button", name=send, exact=True).click()
        email = page.get_by_role("textbox", name=label)
        expect(email).to_be_visible()
        email.fill("ada@")
        page.get_by_role("button", name=notify).click()
        expect(page.get_by_text(invalid)).to_be_visible()
        screenshot(page, f"widget-{code}-email-ask-{'phone' if viewport == PHONE else 'desktop'}")
        email.fill("ada@example.com")
        page.get_by_role("button", name=notify).click()
        expect(page.get_by_text(saved.format(email="ada@example.com"))).to_be_visible()
        assert_accessible(page, f"the email question ({code})")
        users = wait_for(lambda: api.get("/api/v1/users", params={"email": "ada@example.com"}).json()["data"])
        assert len(users) == 1
        page.context.close()


def test_the_emails_link_opens_the_chat(browser: Any, mail_server: tuple[LiveServer, Any], host: HostSite) -> None:
    server, _inbox = mail_server
    tenant = server.new_tenant()
    url = host.add("/help", embed_page(server, tenant)) + "#backchannel"
    page = open_page(browser, url)
    expect(page.get_by_role("textbox", name="Message")).to_be_visible()
    page.context.close()

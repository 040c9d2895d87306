""""Forgot password" in Chromium (issue 23, a19): from the login page's link, through the
email (a real SMTP server on loopback), to a new password and a login with it; desktop and
phone screenshots, and axe on each page."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.browser.accessibility import Audit
from tests.browser.conftest import screenshot
from tests.conftest import LiveServer
from tests.console.support import PASSWORD, make_console_user
from tests.mail.smtp import Inbox
from tests.receivers import eventually

pytestmark = pytest.mark.browser

PHONE = {"width": 390, "height": 844}


def _both(page: Any, name: str, audit: Audit) -> None:
    screenshot(page, f"console-{name}-desktop")
    audit.check(page, name)
    size = page.viewport_size
    page.set_viewport_size(PHONE)
    screenshot(page, f"console-{name}-phone")
    audit.check(page, name + " (phone)")
    page.set_viewport_size(size)


def test_forgot_password_from_the_login_page_to_a_new_login(
    page: Any, server_factory: Any, smtp_port: int, smtp: Inbox
) -> None:
    from playwright.sync_api import expect

    server: LiveServer = server_factory(env={"BACKCHANNEL_SMTP_URL": f"smtp://127.0.0.1:{smtp_port}"})
    tenant = server.new_tenant()
    email = make_console_user(server, tenant, "grace@example.com", name="Grace Hopper")
    audit = Audit()

    page.goto(server.url + "/console/login")
    page.get_by_role("link", name="Forgot password?").click()
    expect(page.get_by_role("heading", name="Forgot your password?")).to_be_visible()
    page.get_by_label("Email").fill(email)
    _both(page, "password-reset-ask", audit)
    page.get_by_role("button", name="Send reset link").click()
    expect(page.get_by_role("status")).to_contain_text("we've sent it a link")
    _both(page, "password-reset-sent", audit)

    eventually(lambda: smtp.count() == 1, timeout=10)
    body = smtp.messages[0][1].get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
    link = re.search(r"(http://\S+/console/password-reset/new\?token=\S+)", body)
    assert link
    page.goto(link.group(1))
    expect(page.get_by_role("heading", name="Choose a new password")).to_be_visible()
    page.get_by_label("New password", exact=True).fill("short")
    page.get_by_label("Repeat the new password").fill("short")
    page.get_by_role("button", name="Set new password").click()
    expect(page.get_by_text("The new password needs at least 8 characters")).to_be_visible()
    expect(page.get_by_label("New password", exact=True)).to_have_attribute("aria-invalid", "true")
    _both(page, "password-reset-new-error", audit)
    page.get_by_label("New password", exact=True).fill("a brand new passphrase")
    page.get_by_label("Repeat the new password").fill("a brand new passphrase")
    page.get_by_role("button", name="Set new password").click()

    expect(page.get_by_role("status")).to_contain_text("Your password has been changed")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_contain_text("do not match")  # the old password is gone
    page.get_by_label("Password").fill("a brand new passphrase")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("link", name="Inbox", exact=True)).to_be_visible()

    page.goto(link.group(1))  # the link was spent
    expect(page.get_by_role("heading", name="This link no longer works")).to_be_visible()
    audit.check(page, "password-reset-spent")
    audit.assert_clean()


def test_without_smtp_the_login_page_says_to_ask_an_admin(page: Any, server: LiveServer) -> None:
    from playwright.sync_api import expect

    page.goto(server.url + "/console/login")
    expect(page.get_by_text("Forgot your password? Ask an admin of your workspace to reset it.")).to_be_visible()
    expect(page.get_by_role("link", name="Forgot password?")).to_have_count(0)
    screenshot(page, "console-login-no-smtp-desktop")

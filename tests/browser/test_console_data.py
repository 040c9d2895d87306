"""Settings > Data retention and Settings > Audit log in Chromium (SPEC §13)."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from tests.browser.conftest import screenshot
from tests.browser.test_console import log_in
from tests.conftest import LiveServer, Tenant
from tests.console.support import make_console_user

pytestmark = pytest.mark.browser


def test_an_admin_sets_retention_and_reads_the_audit_log(page: Any, server: LiveServer, tenant: Tenant) -> None:
    email = make_console_user(server, tenant, name="Grace Hopper")
    with httpx.Client(base_url=server.url, headers=tenant.headers) as api:
        api.post("/api/v1/api-tokens", json={"name": "CRM sync", "scopes": ["read"]})
        api.post("/api/v1/webhook-endpoints", json={"url": "https://hooks.example.com/crm"})
    log_in(page, server, email)

    page.get_by_role("link", name="Data retention").click()
    expect(page.get_by_role("heading", name="Data retention", level=1)).to_be_visible()
    page.get_by_label("Retention in days").fill("0")
    page.get_by_role("button", name="Save retention").click()
    expect(page.get_by_text("whole number of days")).to_be_visible()
    page.get_by_label("Retention in days").fill("90")
    page.get_by_role("button", name="Save retention").click()
    expect(page.get_by_role("status")).to_contain_text("90 days")
    expect(page.get_by_text(re.compile(r"^Now: 90 days"))).to_be_visible()
    screenshot(page, "console-retention")

    page.get_by_role("link", name="Audit log").click()
    expect(page.get_by_role("heading", name="Audit log", level=1)).to_be_visible()
    rows = page.get_by_role("row")
    expect(rows.nth(1)).to_contain_text("workspace.updated")  # newest first
    expect(rows.nth(1)).to_contain_text(email)
    expect(page.get_by_role("row", name=re.compile("api_token.created"))).to_contain_text("API token")
    expect(page.get_by_role("row", name=re.compile("console.login"))).to_have_count(1)
    screenshot(page, "console-audit-log")
    page.set_viewport_size({"width": 375, "height": 667})
    screenshot(page, "console-audit-log-mobile")

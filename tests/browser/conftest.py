"""Playwright on Debian's Chromium at /usr/bin/chromium (never a browser downloaded by Playwright)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser.widget_host import HostSite, serve_host_site
from tests.webviews.support import Receiver

CHROMIUM = os.environ.get("BACKCHANNEL_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One Chromium per test module. Not per session: Playwright's sync API keeps an event
    loop running while it is alive, and asyncio tests in later modules need theirs."""
    if not Path(CHROMIUM).exists() and not shutil.which(CHROMIUM):
        pytest.skip(f"Chromium not found at {CHROMIUM}: scripts/test installs it (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def context(browser: Any) -> Iterator[Any]:
    ctx = browser.new_context(viewport={"width": 1280, "height": 800})
    ctx.set_default_timeout(10_000)
    yield ctx
    ctx.close()


@pytest.fixture
def page(context: Any) -> Any:
    return context.new_page()


def screenshot(page: Any, name: str) -> Path:
    """Save a PNG under test-artifacts/screenshots/ (look at it: it is what a user sees)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=False)
    return path


def screenshot_desktop_and_phone(page: Any, name: str) -> None:
    """``widget-NAME-desktop`` at the page's size and ``widget-NAME-phone`` at 390×844, then
    the page back at its size."""
    screenshot(page, f"widget-{name}-desktop")
    size = page.viewport_size
    page.set_viewport_size({"width": 390, "height": 844})
    screenshot(page, f"widget-{name}-phone")
    page.set_viewport_size(size)


@pytest.fixture
def host() -> Iterator[HostSite]:
    """A host site on its own origin (another port) that embeds the widget."""
    yield from serve_host_site()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """The bot's side: records every webhook and form callback it is sent."""
    r = Receiver()
    yield r
    r.close()

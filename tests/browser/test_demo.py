"""The whole AG Bank story, started the way scripts/serve starts it, in a clean folder."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser.conftest import screenshot
from tests.conftest import ROOT, free_port
from tests.outside import stop_group

DOCS_SHOTS = ROOT / "docs" / "screenshots"


@dataclass
class Demo:
    url: str
    folder: Path
    proc: subprocess.Popen[bytes]

    def state(self) -> dict[str, Any]:
        return json.loads((self.folder / "backchannel-demo.json").read_text())  # type: ignore[no-any-return]

    def log(self) -> str:
        return (self.folder / "serve.log").read_text(errors="replace")


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Demo]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BACKCHANNEL_")}
    env["BACKCHANNEL_SECRET_KEY"] = "demo-test-secret-0123456789-abcdefghijkl"
    log = open(tmp_path / "serve.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.serve", "--port", str(port)],
        cwd=tmp_path, env={**env, "PYTHONPATH": str(ROOT)}, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    demo = Demo(f"http://127.0.0.1:{port}", tmp_path, proc)
    try:
        deadline = time.monotonic() + 90
        while "Demo page" not in demo.log():
            assert proc.poll() is None and time.monotonic() < deadline, demo.log()
            time.sleep(0.2)
        yield demo
    finally:
        stop_group(proc)
        log.close()


def shoot(page: Any, name: str) -> None:
    """A screenshot for the test artifacts and, kept current by this test, for the README tour."""
    path = screenshot(page, name)
    DOCS_SHOTS.mkdir(parents=True, exist_ok=True)
    (DOCS_SHOTS / path.name).write_bytes(path.read_bytes())


def test_the_agbank_story_end_to_end(demo: Demo, browser: Any) -> None:
    from playwright.sync_api import expect

    state = demo.state()
    assert "Demo page (chat with Freddy):" in demo.log() and state["admin_password"] in demo.log()

    customer = browser.new_context(viewport={"width": 1280, "height": 860})
    customer.set_default_timeout(15_000)
    page = customer.new_page()
    page.goto(demo.url + "/demo")
    page.get_by_role("button", name="Open chat").click()

    # Freddy greets with quick replies
    expect(page.get_by_text("I'm Freddy", exact=False)).to_be_visible()
    expect(page.get_by_role("button", name="Account statement")).to_be_visible()
    shoot(page, "tour-1-greeting")

    # Account statement -> a hosted web view asks for the card
    page.get_by_role("button", name="Account statement").click()
    page.get_by_role("button", name="Enter card details").click()
    sheet = page.frame_locator('iframe[title="Enter card details"]')
    expect(sheet.get_by_label("Card number")).to_be_visible()
    shoot(page, "tour-2-web-view")

    # a wrong card gets a field error from Freddy, shown in the form
    sheet.get_by_label("Card number").fill("4000 0000 0000 0002")
    sheet.get_by_label("Expiry (MM/YY)").fill("12/39")
    sheet.get_by_label("Name on card").fill("Ada Lovelace")
    sheet.get_by_role("button", name="Verify card").click()
    expect(sheet.get_by_text("couldn't verify this card", exact=False)).to_be_visible()

    # the test card passes; the sheet closes and the statement follows
    sheet.get_by_label("Card number").fill("4111 1111 1111 1111")
    sheet.get_by_role("button", name="Verify card").click()
    expect(page.locator('iframe[title="Enter card details"]')).to_have_count(0)
    expect(page.get_by_text("card ending 1111 verified", exact=False)).to_be_visible()
    first_card = page.get_by_role("group", name=re.compile("Coffee Corner"))
    expect(first_card).to_be_visible()
    expect(page.get_by_role("img", name=re.compile("celebratory animation"))).to_have_count(1)
    shoot(page, "tour-3-carousel")

    page.get_by_role("combobox", name="Statement period").select_option(label="Last 3 months")
    expect(page.get_by_text("statement for the last 3 months", exact=False)).to_be_visible()

    # card services: an external web view on Freddy's own server, closing itself with a result
    page.get_by_role("button", name="Card services").last.click()
    page.get_by_role("button", name="Freeze or unfreeze").click()
    freddy_page = page.frame_locator('iframe[title="Freeze or unfreeze"]')
    freddy_page.get_by_role("button", name="Freeze card", exact=True).click()
    expect(page.locator('iframe[title="Freeze or unfreeze"]')).to_have_count(0)
    expect(page.get_by_text("your card is now frozen", exact=False)).to_be_visible()

    # hand over to a human
    page.get_by_role("button", name="Talk to a human").last.click()
    expect(page.get_by_text("Connecting you", exact=False)).to_be_visible()

    # the agent logs in to the console, finds the conversation and replies
    agent_ctx = browser.new_context(viewport={"width": 1280, "height": 860})
    agent_ctx.set_default_timeout(15_000)
    console = agent_ctx.new_page()
    console.goto(demo.url + "/console")
    console.get_by_label("Email").fill(state["admin_email"])
    console.get_by_label("Password").fill(state["admin_password"])
    console.get_by_role("button", name="Log in").click()
    console.get_by_role("link", name="Inbox").click()
    console.get_by_role("main").get_by_role("listitem").get_by_role("link", name=re.compile("Connecting you")).click()
    expect(console.get_by_text("Talk to a human").first).to_be_visible()
    console.get_by_role("textbox", name="Reply").fill("Hi, this is Alex from AG Bank. How can I help?")
    console.get_by_role("button", name="Send reply").click()
    shoot(console, "tour-5-console-inbox")

    expect(page.get_by_text("this is Alex from AG Bank", exact=False)).to_be_visible()
    shoot(page, "tour-4-human-handoff")

    # everything went through the public API: Freddy never saw more than the API shows
    with httpx.Client(base_url=demo.url, headers={"Authorization": f"Bearer {state['token']}"}) as api:
        conv = api.get("/api/v1/conversations").json()["data"][0]
        assert conv["assignee_id"] is not None and conv["handled_by"] == "human"  # Freddy's handover
        transcript = json.dumps(api.get(f"/api/v1/conversations/{conv['id']}/messages").json())
        for typed in ("4111", "4000 0000", "Lovelace", "12/39"):
            assert typed not in transcript
    agent_ctx.close()
    customer.close()


def test_a_second_run_reuses_the_demo_setup(demo: Demo, tmp_path: Path) -> None:
    first = demo.state()
    stop_group(demo.proc)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BACKCHANNEL_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.serve", "--port", str(port)], cwd=tmp_path,
        env={**env, "PYTHONPATH": str(ROOT), "BACKCHANNEL_SECRET_KEY": "demo-test-secret-0123456789-abcdefghijkl"},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/demo", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline
            time.sleep(0.2)
        second = json.loads((tmp_path / "backchannel-demo.json").read_text())
        assert second["workspace_id"] == first["workspace_id"]
        assert second["token"] == first["token"] and second["admin_password"] == first["admin_password"]
        assert second["webhook_secret"] == first["webhook_secret"]
        r = httpx.get(f"http://127.0.0.1:{port}/api/v1/webhook-endpoints", headers={"Authorization": f"Bearer {first['token']}"})
        assert r.status_code in (200, 403)
    finally:
        stop_group(proc)

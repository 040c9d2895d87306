"""Read receipts and typing never cost the customer's frame allowance (SPEC §14): the widget
coalesces its receipts, and the server counts them apart from the frames that act.

A brisk conversation in Chromium: the customer sends a message about every 0.3 s and the bot
answers each at once, so the open widget reads a new message every few hundred ms. Before,
each read was a frame of the same 30-per-10-s allowance as the messages, and a customer's
message sat at "Sending…" until the window passed."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import screenshot
from tests.browser.test_widget import open_chat, say, user_texts
from tests.browser.widget_host import (
    HostSite,
    bot_says,
    embed_page,
    only_conversation,
    serve_host_site,
    solid_png,
    text,
    wait_for,
)
from tests.conftest import LiveServer, Tenant

TURNS = 26  # with one receipt per bot message, 52 frames: well past 30 in 10 s


@pytest.fixture
def site() -> Iterator[HostSite]:
    yield from serve_host_site()


@pytest.fixture
def shop(page: Page, server: LiveServer, tenant: Tenant, site: HostSite) -> Page:
    page.goto(site.add("/", embed_page(server, tenant)))
    expect(page.get_by_role("button", name="Open chat")).to_be_visible()
    return page


def test_a_brisk_customers_messages_never_wait_behind_read_receipts(shop: Page, api: httpx.Client) -> None:
    sent: list[tuple[float, dict[str, Any]]] = []
    received: list[dict[str, Any]] = []

    def on_socket(ws: Any) -> None:
        ws.on("framesent", lambda payload: sent.append((time.monotonic(), json.loads(payload))))
        ws.on("framereceived", lambda payload: received.append(json.loads(payload)))

    shop.on("websocket", on_socket)
    open_chat(shop)
    conversation = only_conversation(api)
    started = time.monotonic()
    for n in range(TURNS):
        say(shop, f"question {n}")
        bot_says(api, conversation["id"], text(f"answer {n}"))
        time.sleep(0.3)
    last_sent = time.monotonic()
    expected = [f"question {n}" for n in range(TURNS)]
    wait_for(lambda: user_texts(api, conversation["id"]) == expected, timeout=10, what="every question stored")
    stored_after = time.monotonic() - last_sent
    expect(shop.get_by_role("log")).to_contain_text(f"answer {TURNS - 1}")
    expect(shop.get_by_text("Sending…")).to_have_count(0)
    screenshot(shop, "widget-brisk-conversation")
    elapsed = time.monotonic() - started

    kinds = [frame["type"] for _, frame in sent]
    reads = [frame for _, frame in sent if frame["type"] == "read"]
    assert kinds.count("message") == TURNS
    # Coalesced: at most one receipt a second (plus the first), not one per bot message.
    # (Not a count per turn: a loaded machine takes longer over the turns, and may send more.)
    assert 1 <= len(reads) <= elapsed + 2, (len(reads), elapsed)
    # Typing too: "on" renewed every 3 s while the customer types, not on and off per message.
    assert kinds.count("typing") <= elapsed / 3 + 3, (kinds.count("typing"), elapsed)
    # The newest receipt names the newest message: nothing is lost by coalescing.
    last = messages_seq(api, conversation["id"])

    def final_receipt_sent() -> bool:
        shop.wait_for_timeout(50)  # Playwright hands over socket events while it runs
        return any(f["type"] == "read" and f["seq"] == last for _, f in sent)

    wait_for(final_receipt_sent, what="the final receipt")
    assert not [f for f in received if f["type"] == "error"], "no frame was refused"
    assert stored_after < 3, f"the last question was stored {stored_after:.1f}s after it was sent"


def messages_seq(api: httpx.Client, conversation_id: str) -> int:
    conv = api.get(f"/api/v1/conversations/{conversation_id}").json()
    return int(conv["last_message_seq"])


def test_the_renamed_bot_shows_its_name_and_avatar(shop: Page, api: httpx.Client, site: HostSite) -> None:
    # PATCH /agents/{id} (issue 22): the default bot renamed and given an avatar, live.
    site.files["/pete.png"] = (solid_png(40, 40, (200, 60, 40)), "image/png")
    open_chat(shop)
    conversation = only_conversation(api)
    bot_says(api, conversation["id"], text("Hello!"))
    log = shop.get_by_role("log")
    expect(log.get_by_text("Bot", exact=True)).to_be_visible()
    (bot,) = [a for a in api.get("/api/v1/agents").json()["data"] if a["is_default_bot"]]
    api.patch(f"/api/v1/agents/{bot['id']}", json={"name": "Pizza Pete", "avatar_url": site.origin + "/pete.png"})
    say(shop, "Who are you?")  # a new turn: the next bot message names its sender again
    wait_for(lambda: user_texts(api, conversation["id"]) == ["Who are you?"], what="the question")
    bot_says(api, conversation["id"], text("I'm Pizza Pete now."))
    expect(log.get_by_text("Pizza Pete", exact=True)).to_be_visible()
    avatar = log.locator("img.sender-avatar")
    expect(avatar).to_have_attribute("src", site.origin + "/pete.png")
    expect(avatar).to_have_attribute("alt", "")
    shop.wait_for_function("img => img.complete", arg=avatar.element_handle())
    assert avatar.evaluate("img => img.complete && img.naturalWidth") == 40
    screenshot(shop, "widget-renamed-bot")

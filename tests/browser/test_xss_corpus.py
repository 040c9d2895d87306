"""An XSS corpus in every text-bearing field, through the public API, rendered by the widget and
by the console Inbox in Chromium: nothing runs, nothing becomes markup, the text shows as text.

Fields: message text, image alt and URL, URL-button label and URL, web-view label, carousel
title, subtitle, image and buttons, quick-reply labels, drop-down placeholder and options, the
agent's name (the widget shows who answers), the user's name and email (the Inbox shows them),
the widget greeting, and uploaded files' names (an image's alt text, a file's and an audio
player's link).
"""

from __future__ import annotations

import re
from typing import Any

import httpx
from playwright.sync_api import Page, expect

from tests.browser.test_console import log_in
from tests.browser.test_widget import XSS_CORPUS
from tests.browser.widget_host import HostSite, embed_page, only_conversation, solid_png
from tests.conftest import LiveServer, Tenant
from tests.console.support import make_console_user

# Labels are at most 20 characters: a corpus that fits.
SHORT = ["<svg onload=__xss=1>", "<script>__xss=2</scr", "javascript:__xss=3", "\"'><b>bold</b>&amp;"]
# URLs must be http(s); these try to break out of the attribute they land in.
URLS = [
    "https://example.com/\"onmouseover=\"window.__xss='u1'",
    "https://example.com/'><img/src=x/onerror=window.__xss='u2'>",
    "https://example.com/#javascript:window.__xss='u3'",
]
# Uploaded files' names: the server keeps them (bar quotes, slashes and control characters).
FILES = [
    ("<img src=x onerror=window.__xss=11>.png", solid_png(8, 8, (200, 30, 30))),
    ("<script>window.__xss=12<\\script>.pdf", b"%PDF-1.4\n%%EOF\n"),
    ("'><svg onload=window.__xss=13>.ogg", b"OggS\x00\x02" + bytes(20) + b"\x01\x1evorbis" + bytes(40)),
    ("{{constructor.constructor('window.__xss=14')()}}.txt", b"just text\n"),
]
# What would prove markup was made of our text: event-handler attributes or script URLs.
INJECTED = """root => [...root.querySelectorAll('*')].filter(el =>
    el.tagName === 'SCRIPT' && !el.src
    || [...el.attributes].some(a => /^on/i.test(a.name))
    || /^\\s*(javascript|data):/i.test(el.getAttribute('href') || el.getAttribute('src') || '')
).map(el => el.outerHTML.slice(0, 200))"""


def post(api: httpx.Client, path: str, body: dict[str, Any]) -> dict[str, Any]:
    r = api.post(path, json=body)
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def send_files(api: httpx.Client, msgs: str) -> list[str]:
    """Files whose names are markup, sent as an image, a file, an audio part and a file; their stored names."""
    uploaded = []
    for name, data in FILES:
        r = api.post("/api/v1/files", files={"file": (name, data, "application/octet-stream")})
        assert r.status_code == 201, r.text
        uploaded.append(r.json())
    kinds = ["image", "file", "audio", "file"]
    post(api, msgs, {"message_parts": [{kind: {"file_id": f["id"]}} for kind, f in zip(kinds, uploaded, strict=True)]})
    return [f["name"] for f in uploaded]


def fill_every_field(api: httpx.Client, conversation_id: str, user_id: str) -> list[str]:
    msgs = f"/api/v1/conversations/{conversation_id}/messages"
    api.patch(f"/api/v1/users/{user_id}", json={"name": XSS_CORPUS[0], "email": XSS_CORPUS[2]}).raise_for_status()
    api.patch("/api/v1/widget-settings", json={"greeting": XSS_CORPUS[1]}).raise_for_status()
    for payload in XSS_CORPUS:
        post(api, msgs, {"message_parts": [{"text": {"content": payload}}]})
    for i, url in enumerate(URLS):
        post(api, msgs, {"message_parts": [
            {"image": {"url": url, "alt": XSS_CORPUS[i]}},
            {"url_button": {"label": SHORT[i], "url": url}},
            {"web_view": {"label": SHORT[(i + 1) % len(SHORT)], "url": url}},
        ]})
    cards = [
        {"title": XSS_CORPUS[i][:80], "subtitle": XSS_CORPUS[-1 - i][:80], "image_url": URLS[i % len(URLS)],
         "buttons": [{"postback": {"label": SHORT[i % len(SHORT)], "payload": XSS_CORPUS[i]}},
                     {"url_button": {"label": SHORT[(i + 2) % len(SHORT)], "url": URLS[i % len(URLS)]}}]}
        for i in range(4)
    ]
    post(api, msgs, {"message_parts": [{"carousel": {"cards": cards}}]})
    post(api, msgs, {"message_parts": [{"text": {"content": "pick one"}}], "reply_parts": [
        {"quick_replies": {"options": [{"label": s, "payload": s} for s in SHORT]}},
    ]})
    post(api, msgs, {"message_parts": [{"text": {"content": "or choose"}}], "reply_parts": [
        {"dropdown": {"placeholder": XSS_CORPUS[3][:80], "options": [{"label": p[:80], "payload": "p"} for p in XSS_CORPUS]}},
    ]})
    names = send_files(api, msgs)
    agent = post(api, "/api/v1/agents", {"name": XSS_CORPUS[4], "kind": "human"})
    post(api, msgs, {"actor": {"type": "agent", "id": agent["id"]}, "message_parts": [{"text": {"content": "the last word"}}]})
    return names


def assert_nothing_ran(page: Page, dialogs: list[str], root: str) -> None:
    assert page.evaluate("window.__xss") is None
    assert dialogs == []
    assert page.evaluate(f"({INJECTED})({root})") == []


def test_the_xss_corpus_in_every_field_runs_nowhere(
    page: Page, browser: Any, server: LiveServer, tenant: Tenant, api: httpx.Client, host: HostSite
) -> None:
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(host.add("/", embed_page(server, tenant)))
    page.get_by_role("button", name="Open chat").click()
    conv = only_conversation(api)
    names = fill_every_field(api, conv["id"], conv["user_id"])

    # The widget: every message arrived (the last one is after all the others), shown as text.
    log = page.get_by_role("log")
    expect(log).to_contain_text("the last word")
    for payload in XSS_CORPUS:
        expect(log).to_contain_text(payload)
    expect(log.get_by_role("img", name=names[0])).to_be_attached()
    for name in names[1:]:
        expect(log.get_by_role("link", name=name)).to_be_visible()
    expect(page.get_by_role("button", name=SHORT[0]).first).to_be_visible()
    page.reload()  # the greeting, and a history rendered from the catch-up path rather than live
    page.get_by_role("button", name="Open chat").click()
    expect(page.get_by_role("log")).to_contain_text("the last word")
    for link in page.get_by_role("log").get_by_role("link").all():
        assert re.match(r"^https?://", link.get_attribute("href") or ""), link.get_attribute("href")
    for button in page.get_by_role("log").get_by_role("button").all():
        button.hover()
    assert_nothing_ran(page, dialogs, "document.querySelector('backchannel-widget').shadowRoot")

    # The console Inbox, in its own context: the list (user name, email) and the transcript.
    ctx = browser.new_context()
    console = ctx.new_page()
    console_dialogs: list[str] = []
    console.on("dialog", lambda d: (console_dialogs.append(d.message), d.dismiss()))
    try:
        log_in(console, server, make_console_user(server, tenant))
        conversation_link = console.get_by_role("link", name=re.compile(re.escape(XSS_CORPUS[0][:20])))
        expect(conversation_link.first).to_be_visible()
        assert_nothing_ran(console, console_dialogs, "document.body")
        conversation_link.first.click()
        transcript = console.get_by_role("log")
        expect(transcript).to_contain_text("the last word")
        for payload in XSS_CORPUS:
            expect(transcript).to_contain_text(payload)
        expect(transcript.get_by_role("img", name=names[0])).to_be_attached()
        for name in names[1:]:
            expect(transcript.get_by_role("link", name=name)).to_be_visible()
        for link in transcript.get_by_role("link").all():
            assert re.match(r"^https?://", link.get_attribute("href") or ""), link.get_attribute("href")
        assert_nothing_ran(console, console_dialogs, "document.body")
    finally:
        ctx.close()

"""Files in the widget and the console, in Debian's Chromium against a real uvicorn (SPEC §10).

The customer attaches a receipt photo and a PDF (file chooser, drop, paste), sees each upload's
progress, removes one before sending, sees a refused upload say why and retries a failed one;
the bot's API and webhooks get the message with file parts whose links download the same
bytes; the agent sees the files inline in the Inbox and attaches one back, which the customer
sees in the widget.
"""

from __future__ import annotations

import base64
import struct
import zlib
from typing import Any

import httpx
import pytest
from playwright.sync_api import Locator, Page, expect

from tests.browser.conftest import screenshot
from tests.browser.test_console import log_in
from tests.browser.test_demo import shoot
from tests.browser.widget_host import HostSite, embed_page, messages, only_conversation
from tests.conftest import LiveServer, Tenant
from tests.console.support import make_console_user
from tests.receivers import Receiver

PHONE = {"width": 375, "height": 667}


def receipt_png(width: int = 360, height: int = 520) -> bytes:
    """A photo of a till receipt, near enough: paper on a dark table, rows of "print"."""
    table, paper, ink = b"\x3a\x3f\x4a", b"\xf4\xf1\xe8", b"\x55\x55\x5c"
    left, right = width // 8, width - width // 8
    rows = []
    for y in range(height):
        line = (y - 40) // 14
        printed = 40 <= y < height - 60 and (y - 40) % 14 < 6 and line % 5 != 4
        # Item names on the left, prices on the right; a wide total line near the bottom.
        ends = (left + 20 + (line * 37) % (width // 3), right - 20 - 60) if line < 24 else (left + 20, right - 20)
        row = bytearray()
        for x in range(width):
            if not left <= x < right or not 16 <= y < height - 16:
                row += table
            elif printed and (left + 20 <= x < ends[0] or ends[1] <= x < right - 20):
                row += ink
            else:
                row += paper
        rows.append(b"\x00" + bytes(row))
    raw = zlib.compress(b"".join(rows))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")


RECEIPT = receipt_png()
# A small but real PDF: the server reads the type from the bytes.
PDF = (
    b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj\n"
    b"3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 200 200]>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n"
)
LIMIT = 200_000  # MAX_FILE_BYTES for these tests: a 300 kB file is refused


@pytest.fixture
def server(server_factory: Any) -> LiveServer:
    return server_factory(env={"BACKCHANNEL_MAX_FILE_BYTES": str(LIMIT)})  # type: ignore[no-any-return]


def shop(page: Page, server: LiveServer, tenant: Tenant, host: HostSite) -> Page:
    page.goto(host.add("/", embed_page(server, tenant)))
    page.get_by_role("button", name="Open chat").click()
    expect(page.get_by_role("textbox", name="Message")).to_be_focused()
    return page


def attach(page: Page, *files: tuple[str, str, bytes]) -> None:
    """Through the real file chooser that "Attach a file" opens."""
    with page.expect_file_chooser() as chooser:
        page.get_by_role("button", name="Attach a file").click()
    chooser.value.set_files([{"name": n, "mimeType": t, "buffer": b} for n, t, b in files])


def tray_item(page: Page, name: str) -> Locator:
    return page.get_by_role("list", name="Files to send").get_by_role("listitem").filter(has_text=name)


def announced(page: Page) -> Locator:
    """The widget's polite live region: what a screen reader hears about uploads."""
    return page.locator("backchannel-widget .panel [aria-live=polite].announcer")


def expect_ready(page: Page, *names: str) -> None:
    for name in names:
        expect(tray_item(page, name)).to_contain_text("ready to send")


def user_file_parts(api: httpx.Client, conversation_id: str) -> list[dict[str, Any]]:
    def find() -> list[dict[str, Any]]:
        return [
            part
            for m in messages(api, conversation_id)
            if m["actor"]["type"] == "user"
            for part in m["message_parts"]
            if "file" in part or "image" in part
        ]

    return find()


def wait_parts(api: httpx.Client, conversation_id: str, n: int) -> list[dict[str, Any]]:
    from tests.browser.widget_host import wait_for

    return wait_for(lambda: (p := user_file_parts(api, conversation_id)) and len(p) >= n and p, what="file parts")  # type: ignore[no-any-return]


def body_of(part: dict[str, Any]) -> dict[str, Any]:
    return next(iter(part.values()))  # type: ignore[no-any-return]


def data_transfer(page: Page, files: list[tuple[str, str, bytes]]) -> Any:
    """A DataTransfer holding real File objects, as a drag or a clipboard would carry them."""
    encoded = [[n, t, base64.b64encode(b).decode()] for n, t, b in files]
    return page.evaluate_handle(
        """files => { const dt = new DataTransfer();
          for (const [name, type, b64] of files) {
            const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
            dt.items.add(new File([bytes], name, {type}));
          }
          return dt; }""",
        encoded,
    )


# -- the customer ----------------------------------------------------------------------------------


@pytest.mark.parametrize("viewport", ["desktop", "phone"])
def test_a_customer_sends_a_receipt_photo_and_a_pdf(
    page: Page, server: LiveServer, tenant: Tenant, host: HostSite, api: httpx.Client, viewport: str
) -> None:
    if viewport == "phone":
        page.set_viewport_size(PHONE)
    with Receiver() as receiver:
        api.post("/api/v1/webhook-endpoints", json={"url": receiver.url}).raise_for_status()
        shop(page, server, tenant, host)
        conv = only_conversation(api)
        attach(page, ("receipt.png", "image/png", RECEIPT), ("statement.pdf", "application/pdf", PDF))
        expect_ready(page, "receipt.png", "statement.pdf")
        screenshot(page, f"files-widget-tray-{viewport}")
        page.get_by_role("textbox", name="Message").fill("Here is the receipt and my statement")
        page.get_by_role("button", name="Send").click()

        log = page.get_by_role("log")
        image = log.get_by_role("img", name="receipt.png")
        expect(image).to_be_visible()
        expect(log.get_by_role("link", name="statement.pdf")).to_be_visible()
        expect(page.get_by_role("list", name="Files to send")).to_be_hidden()  # the tray empties on send
        expect(log).to_contain_text("Here is the receipt and my statement")
        page.wait_for_function(
            "() => [...document.querySelector('backchannel-widget').shadowRoot.querySelectorAll('.log img')]"
            ".every(i => i.complete && i.naturalWidth > 0)"
        )
        if viewport == "desktop":
            shoot(page, "tour-6-files-widget")  # the README tour
        else:
            screenshot(page, f"files-widget-sent-{viewport}")

        # The bot's side: the API has the message with an image part and a file part whose
        # fresh links download exactly the customer's bytes.
        parts = wait_parts(api, conv["id"], 2)
        kinds = {name: body_of(p) for p in parts for name in p}
        assert kinds["image"]["name"] == "receipt.png" and kinds["image"]["content_type"] == "image/png"
        assert kinds["file"]["name"] == "statement.pdf" and kinds["file"]["content_type"] == "application/pdf"
        assert httpx.get(kinds["image"]["url"]).content == RECEIPT
        assert httpx.get(kinds["file"]["url"]).content == PDF
        # ...and so does the webhook.
        got = receiver.wait_for(
            lambda rs: any(r.json["type"] == "message.created" and r.json["data"]["message"]["actor"]["type"] == "user"
                           and len(r.json["data"]["message"]["message_parts"]) >= 3 for r in rs)
        )
        event = next(r.json for r in got if r.json["type"] == "message.created"
                     and len(r.json["data"]["message"]["message_parts"]) >= 3)
        hooked = {k: v for p in event["data"]["message"]["message_parts"] for k, v in p.items()}
        assert httpx.get(hooked["file"]["url"]).content == PDF

        # A click on the image opens it full size in a new tab.
        with page.context.expect_page() as opened:
            image.click()
        full = opened.value
        full.wait_for_load_state()
        assert full.url == kinds["image"]["url"] or full.url.split("?")[0] == kinds["image"]["url"].split("?")[0]
        full.close()


def test_a_refused_upload_says_why_and_a_failed_one_can_be_retried(
    page: Page, server: LiveServer, tenant: Tenant, host: HostSite, api: httpx.Client
) -> None:
    shop(page, server, tenant, host)
    conv = only_conversation(api)
    attach(page, ("scan.png", "image/png", b"\x89PNG\r\n\x1a\n" + bytes(LIMIT + 100_000)))
    item = tray_item(page, "scan.png")
    expect(item).to_contain_text("Not uploaded")
    expect(item).to_contain_text("The file is too large (the limit is 195 KB).")  # from the server's 413
    expect(page.get_by_role("button", name="Retry scan.png")).to_be_hidden()  # the same file would fail again
    expect(announced(page)).to_contain_text("scan.png was not uploaded")
    screenshot(page, "files-widget-too-large")
    # Sending now says what to do instead of sending without the file.
    page.get_by_role("button", name="Send").click()
    expect(announced(page)).to_contain_text("retry it or remove it")
    page.get_by_role("button", name="Remove scan.png").click()
    expect(page.get_by_role("list", name="Files to send")).to_be_hidden()
    expect(page.get_by_role("textbox", name="Message")).to_be_focused()

    # The server goes away mid-chat: the upload fails with a reason, and Retry works once it is back.
    server.stop()
    attach(page, ("receipt.png", "image/png", RECEIPT))
    expect(tray_item(page, "receipt.png")).to_contain_text("Not uploaded")
    screenshot(page, "files-widget-upload-failed")
    server.start()
    page.get_by_role("button", name="Retry receipt.png").click()
    expect_ready(page, "receipt.png")
    page.get_by_role("button", name="Send").click()
    # The socket comes back on its own backoff (up to ~16 s after a few seconds down), then sends.
    expect(page.get_by_role("log").get_by_role("img", name="receipt.png")).to_be_visible(timeout=40_000)
    parts = wait_parts(api, conv["id"], 1)
    assert [body_of(p)["name"] for p in parts] == ["receipt.png"]


def test_remove_a_file_before_sending(
    page: Page, server: LiveServer, tenant: Tenant, host: HostSite, api: httpx.Client
) -> None:
    shop(page, server, tenant, host)
    conv = only_conversation(api)
    # By keyboard: the paperclip sits just before the message box, and Enter opens the chooser.
    page.keyboard.press("Shift+Tab")
    expect(page.get_by_role("button", name="Attach a file")).to_be_focused()
    # Pressed on the button itself: a widget re-render between the check above and the key
    # (the socket settling) must not send Enter elsewhere; it is still a key, not a click.
    with page.expect_file_chooser() as chooser:
        page.get_by_role("button", name="Attach a file").press("Enter")
    chooser.value.set_files([
        {"name": "wrong.pdf", "mimeType": "application/pdf", "buffer": PDF},
        {"name": "receipt.png", "mimeType": "image/png", "buffer": RECEIPT},
    ])
    expect_ready(page, "wrong.pdf", "receipt.png")
    expect(announced(page)).to_contain_text("is ready to send")
    page.get_by_role("button", name="Remove wrong.pdf").click()
    expect(tray_item(page, "wrong.pdf")).to_have_count(0)
    expect(page.get_by_role("button", name="Remove receipt.png")).to_be_focused()  # focus stays in the tray
    page.get_by_role("button", name="Send").click()
    expect(page.get_by_role("log").get_by_role("img", name="receipt.png")).to_be_visible()
    parts = wait_parts(api, conv["id"], 1)
    assert [body_of(p)["name"] for p in parts] == ["receipt.png"]
    assert "wrong.pdf" not in page.get_by_role("log").inner_text()


def test_drop_and_paste_attach_files(
    page: Page, server: LiveServer, tenant: Tenant, host: HostSite, api: httpx.Client
) -> None:
    shop(page, server, tenant, host)
    conv = only_conversation(api)
    panel = page.locator("backchannel-widget .panel")
    dropped = data_transfer(page, [("dropped.pdf", "application/pdf", PDF)])
    panel.dispatch_event("dragover", {"dataTransfer": dropped})
    expect(page.get_by_text("Drop files to attach")).to_be_visible()
    screenshot(page, "files-widget-drop")
    panel.dispatch_event("drop", {"dataTransfer": dropped})
    expect_ready(page, "dropped.pdf")

    pasted = data_transfer(page, [("screenshot.png", "image/png", RECEIPT)])
    box = page.get_by_role("textbox", name="Message")
    box.evaluate("(el, dt) => el.dispatchEvent(new ClipboardEvent('paste', {clipboardData: dt, bubbles: true, cancelable: true}))", pasted)
    expect_ready(page, "screenshot.png")
    page.get_by_role("button", name="Send").click()
    parts = wait_parts(api, conv["id"], 2)
    assert sorted(body_of(p)["name"] for p in parts) == ["dropped.pdf", "screenshot.png"]


def test_sending_while_a_file_uploads_waits_for_it(
    page: Page, server: LiveServer, tenant: Tenant, host: HostSite, api: httpx.Client
) -> None:
    """Send pressed mid-upload: the message goes as soon as the upload is done, not without it."""
    shop(page, server, tenant, host)
    conv = only_conversation(api)
    page.route(f"{server.url}/widget/v1/files", lambda route: (page.wait_for_timeout(600), route.continue_()))
    attach(page, ("receipt.png", "image/png", RECEIPT))
    page.get_by_role("textbox", name="Message").fill("receipt attached")
    page.get_by_role("button", name="Send").click()
    expect(page.get_by_role("log").get_by_role("img", name="receipt.png")).to_be_visible()
    parts = wait_parts(api, conv["id"], 1)
    assert [body_of(p)["name"] for p in parts] == ["receipt.png"]


# -- what a bot sends ------------------------------------------------------------------------------


def upload(api: httpx.Client, name: str, content_type: str, data: bytes) -> dict[str, Any]:
    r = api.post("/api/v1/files", files={"file": (name, data, content_type)})
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


# The first bytes of real MP4 and Ogg files: enough for the server to read the type.
MP4 = bytes.fromhex("0000001c667479706d703432000000006d7034326d70343169736f6d") + bytes(64)
OGG = b"OggS\x00\x02" + bytes(20) + b"\x01\x1e\x01vorbis" + bytes(40)


def test_a_bots_video_audio_and_file_get_players_and_a_link(
    page: Page, server: LiveServer, tenant: Tenant, host: HostSite, api: httpx.Client
) -> None:
    shop(page, server, tenant, host)
    conv = only_conversation(api)
    video = upload(api, "how-to-freeze-your-card.mp4", "video/mp4", MP4)
    audio = upload(api, "voice-note.ogg", "audio/ogg", OGG)
    pdf = upload(api, "terms.pdf", "application/pdf", PDF)
    r = api.post(f"/api/v1/conversations/{conv['id']}/messages", json={"actor": {"type": "bot"}, "message_parts": [
        {"text": {"content": "Here is everything you need"}},
        {"video": {"file_id": video["id"]}}, {"audio": {"file_id": audio["id"]}}, {"file": {"file_id": pdf["id"]}},
    ]})
    assert r.status_code == 201, r.text
    log = page.get_by_role("log")
    expect(log.locator("video[controls]")).to_have_attribute("aria-label", "how-to-freeze-your-card.mp4")
    expect(log.locator("audio[controls]")).to_have_attribute("aria-label", "voice-note.ogg")
    for name in ("how-to-freeze-your-card.mp4", "voice-note.ogg", "terms.pdf"):
        link = log.get_by_role("link", name=name)
        expect(link).to_be_visible()
        assert (link.get_attribute("href") or "").startswith(server.url)
    screenshot(page, "files-widget-bot-media")


# -- the agent -------------------------------------------------------------------------------------


def test_the_agent_sees_the_customers_files_and_attaches_one_back(
    page: Page, browser: Any, server: LiveServer, tenant: Tenant, host: HostSite, api: httpx.Client
) -> None:
    shop(page, server, tenant, host)
    conv = only_conversation(api)
    attach(page, ("receipt.png", "image/png", RECEIPT), ("statement.pdf", "application/pdf", PDF))
    expect_ready(page, "receipt.png", "statement.pdf")
    page.get_by_role("textbox", name="Message").fill("The charge on this receipt is wrong")
    page.get_by_role("button", name="Send").click()
    wait_parts(api, conv["id"], 2)

    ctx = browser.new_context(viewport={"width": 1280, "height": 800})
    agent = ctx.new_page()
    try:
        log_in(agent, server, make_console_user(server, tenant))
        agent.goto(f"{server.url}/console/inbox/{conv['id']}")
        transcript = agent.get_by_role("log")
        expect(transcript.get_by_role("img", name="receipt.png")).to_be_visible()
        expect(transcript.get_by_role("link", name="statement.pdf")).to_be_visible()
        agent.wait_for_function("() => [...document.querySelectorAll('#transcript img')].every(i => i.complete && i.naturalWidth > 0)")

        with agent.expect_file_chooser() as chooser:
            agent.get_by_role("button", name="Attach a file").click()
        chooser.value.set_files([{"name": "refund-form.pdf", "mimeType": "application/pdf", "buffer": PDF}])
        expect(agent.get_by_role("list", name="Files to send")).to_contain_text("ready to send")
        agent.get_by_role("textbox", name="Reply").fill("Sorry about that! Please fill in this form.")
        screenshot(agent, "files-console-attach")
        agent.get_by_role("button", name="Send reply").click()
        expect(transcript.get_by_role("link", name="refund-form.pdf")).to_be_visible()
        expect(agent.get_by_role("list", name="Files to send")).to_be_hidden()
        shoot(agent, "tour-7-files-console")  # the README tour
    finally:
        ctx.close()

    # The customer sees the agent's file as a link named by its file name.
    log = page.get_by_role("log")
    expect(log).to_contain_text("Please fill in this form.")
    link = log.get_by_role("link", name="refund-form.pdf")
    expect(link).to_be_visible()
    assert httpx.get(link.get_attribute("href") or "").content == PDF
    screenshot(page, "files-widget-agent-file")

"""``/backchannel.d.ts``: TypeScript declarations for the API, its webhook events and the
widget's JavaScript API, generated from the OpenAPI document and served beside widget.js.
They compile under ``tsc --strict`` (TypeScript is a dev dependency of the JavaScript example
bot, installed by scripts/test), and a bot's webhook handler type-checks against them."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from app import events
from tests.conftest import ROOT

TSC = ROOT / "examples" / "pizzabot-js" / "node_modules" / ".bin" / "tsc"

USAGE = """\
import type { WebhookEvent, Operations, MessageIn } from "./backchannel";

export function payloadOf(event: WebhookEvent): string | undefined {
  if (event.type === "message.created") {
    // narrowed: data.message is a MessageOut
    return event.data.message.reply_to?.payload;
  }
  if (event.type === "webview.closed") {
    const status: "submitted" | "closed" | "dismissed" = event.data.status;
    return status;
  }
  return undefined;
}

export const greeting: MessageIn = {
  message_parts: [{ text: { content: "Hi!" } }],
  reply_parts: [{ quick_replies: { options: [{ label: "Order", payload: "ORDER" }] } }],
};
type Sent = Operations["post_conversations_conversation_id_messages"];
export const path: Sent["path"] = "/api/v1/conversations/{conversation_id}/messages";
export function open(): void { window.Backchannel?.open(); }
window.Backchannel?.on("unread", (detail) => { const n: number = detail.count; void n; });
window.Backchannel?.on("message", ({ message }) => { void message.seq; });
"""

WRONG = """\
import type { WebhookEvent } from "./backchannel";
export function nope(event: WebhookEvent): string {
  if (event.type === "user.deleted") { return event.data.message.id; }
  return "";
}
"""


def test_the_declarations_are_served_beside_widget_js(app_api: httpx.Client) -> None:
    r = app_api.get("/backchannel.d.ts")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/typescript")
    text = r.text
    assert "export interface MessageOut {" in text and "export interface ConversationOut {" in text
    for name in events.WEBHOOK_EVENT_TYPES:
        assert f"Event_{name.replace('.', '_')}" in text
    assert "post_conversations_conversation_id_messages: {" in text
    assert "interface BackchannelWidget" in text and "Backchannel?: BackchannelWidget;" in text


def test_they_compile_strictly_and_catch_a_wrong_field(app_api: httpx.Client, tmp_path: Path) -> None:
    if shutil.which("node") is None:
        pytest.skip("node is not installed: TypeScript cannot check the declarations (apt-get install nodejs npm)")
    assert TSC.exists(), "examples/pizzabot-js/node_modules is missing TypeScript: scripts/test installs it (npm ci)"
    (tmp_path / "backchannel.d.ts").write_text(app_api.get("/backchannel.d.ts").text)
    (tmp_path / "usage.ts").write_text(USAGE)
    flags = ["--strict", "--noEmit", "--lib", "es2020,dom", "--module", "es2020", "--moduleResolution", "node"]
    ok = subprocess.run([str(TSC), *flags, "usage.ts"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    (tmp_path / "wrong.ts").write_text(WRONG)
    wrong = subprocess.run([str(TSC), *flags, "wrong.ts"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert wrong.returncode != 0 and "message" in wrong.stdout, wrong.stdout


def test_the_widget_api_declared_is_the_one_widget_js_offers(app_api: httpx.Client) -> None:
    source = (ROOT / "static" / "widget.js").read_text()
    block = source[source.index("var api = {"):]
    block = block[: block.index("\n  };")]
    offered = set(re.findall(r"^    (\w+): function", block, re.M))
    text = app_api.get("/backchannel.d.ts").text
    widget = text[text.index("export interface BackchannelWidget {"):]
    declared = set(re.findall(r"^  (\w+)(?:<[^>]*>)?\(", widget[: widget.index("\n}")], re.M))
    assert declared == offered, (
        "window.Backchannel changed: update WIDGET in app/api/typescript.py to match static/widget.js "
        f"(declared {sorted(declared)}, widget.js offers {sorted(offered)})"
    )

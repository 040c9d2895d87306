"""A host site on ANOTHER origin for widget tests, and small helpers to drive the widget.

The Backchannel server runs at ``http://127.0.0.1:PORT``; the host page is served from
``http://localhost:OTHER`` by a tiny static server in the test process, so every widget
test crosses origins exactly as a customer's site would.
"""

from __future__ import annotations

import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

from tests.conftest import LiveServer, Tenant, free_port


def solid_png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A real PNG, made here so image tests need no network and no imaging library."""
    row = b"\x00" + bytes(rgb) * width
    raw = zlib.compress(row * height)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")


# The smallest valid GIF89a (1x1): enough to prove GIF handling without the network.
TINY_GIF = bytes.fromhex("47494638396101000100800000ffffff00000021f90401000000002c00000000010001000002024401003b")


@dataclass
class HostSite:
    port: int
    pages: dict[str, str] = field(default_factory=dict)
    headers: dict[str, dict[str, str]] = field(default_factory=dict)  # extra response headers per path
    files: dict[str, tuple[bytes, str]] = field(
        default_factory=lambda: {
            "/branch.png": (solid_png(320, 200, (32, 96, 160)), "image/png"),
            "/card.png": (solid_png(224, 120, (220, 140, 40)), "image/png"),
            "/party.gif": (TINY_GIF, "image/gif"),
        }
    )

    @property
    def origin(self) -> str:
        return f"http://localhost:{self.port}"

    def add(self, path: str, html: str) -> str:
        self.pages[path] = html
        return self.origin + path


def serve_host_site() -> Iterator[HostSite]:
    site = HostSite(port=free_port())

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            path = self.path.split("?")[0]
            if path in site.files:
                data, content_type = site.files[path]
            elif path in site.pages:
                data, content_type = site.pages[path].encode(), "text/html; charset=utf-8"
            else:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            for name, value in site.headers.get(path, {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", site.port), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield site
    finally:
        httpd.shutdown()
        httpd.server_close()


def embed_page(server: LiveServer, tenant: Tenant, *, head: str = "", body: str = "", before: str = "") -> str:
    """A plain shop page with the one-tag embed (``before`` runs ahead of the tag)."""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Shop</title>{head}</head>
<body>
<main style="font-family: Georgia, serif; max-width: 720px; margin: 40px auto; padding: 0 16px">
<h1>Northwind Savings</h1><p>Open an account in minutes. Questions? Chat with us.</p>{body}
</main>
{before}
<script src="{server.url}/widget.js" data-workspace="{tenant.widget_key}" async></script>
</body></html>"""


def wait_for(fn: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    """Poll until ``fn()`` is truthy (behaviour, not timing: the deadline is only a backstop)."""
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def only_conversation(api: httpx.Client) -> dict[str, Any]:
    def find() -> dict[str, Any] | None:
        data = api.get("/api/v1/conversations").json()["data"]
        return data[0] if len(data) == 1 else None

    return wait_for(find, what="the widget's conversation")  # type: ignore[no-any-return]


def messages(api: httpx.Client, conversation_id: str) -> list[dict[str, Any]]:
    return api.get(f"/api/v1/conversations/{conversation_id}/messages", params={"limit": 200}).json()["data"]  # type: ignore[no-any-return]


def bot_says(
    api: httpx.Client, conversation_id: str, *parts: dict[str, Any], replies: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    response = api.post(
        f"/api/v1/conversations/{conversation_id}/messages",
        json={"actor": {"type": "bot"}, "message_parts": list(parts), "reply_parts": replies or []},
    )
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def text(content: str) -> dict[str, Any]:
    return {"text": {"content": content}}

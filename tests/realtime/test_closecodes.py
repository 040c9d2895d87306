"""One close-code table for both sockets (``app/realtime/closecodes.py``), one meaning per code.

The widget socket and the console's live socket close only with ``CloseCode`` members; the
scripts name the codes they act on after it; docs/widget.md shows exactly the table; and the
console's "fell behind" close is the widget's (1013), not the dead-peer one (4408).
"""

from __future__ import annotations

import ast
import asyncio
import re
from pathlib import Path

from starlette.types import Message
from starlette.websockets import WebSocket

from app.console import hub as console_hub
from app.realtime.closecodes import CloseCode

ROOT = Path(__file__).resolve().parent.parent.parent
SOCKET_MODULES = sorted(
    [*(ROOT / "app" / "realtime").glob("*.py"), *(ROOT / "app" / "console").glob("*.py"), ROOT / "app" / "main.py"]
)
CLOSERS = {"close", "close_soon", "close_all", "offer", "Closed", "_close"}


def test_one_code_per_meaning() -> None:
    assert len({int(c) for c in CloseCode}) == len(CloseCode)
    assert len({c.meaning for c in CloseCode}) == len(CloseCode)
    assert all(1000 <= c <= 4999 and c.meaning for c in CloseCode)
    assert CloseCode.DEAD_PEER == 4408 and CloseCode.TRY_AGAIN == 1013


def test_the_sockets_close_only_with_codes_of_the_table() -> None:
    """No socket module spells a close code as a number: each one is a ``CloseCode`` member."""
    found = []
    for path in SOCKET_MODULES:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Call):
                continue
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if name not in CLOSERS:
                continue
            for arg in [*node.args, *(k.value for k in node.keywords)]:
                if isinstance(arg, ast.Constant) and isinstance(arg.value, int) and not isinstance(arg.value, bool):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {name}({arg.value})")
    assert not found, "close with a CloseCode member (app/realtime/closecodes.py):\n" + "\n".join(found)


def _script_codes(path: Path) -> dict[str, int]:
    text = path.read_text()
    match = re.search(r"var CLOSE = \{([^}]*)\};", text)
    assert match, f"{path.name} names its close codes in one `var CLOSE = {{...}};`"
    codes = {name: int(code) for name, code in re.findall(r"(\w+): (\d+)", match.group(1))}
    # Outside that object, no close code is written as a number.
    rest = text.replace(match.group(0), "")
    stray = re.findall(r"(?:\.close\(|code === )(\d+)", rest)
    assert not stray, f"{path.name} spells close codes {stray}: use CLOSE.<NAME>"
    used = set(re.findall(r"CLOSE\.(\w+)", rest))
    assert used == set(codes), f"{path.name}: CLOSE names {sorted(codes)} but uses {sorted(used)}"
    return codes


def test_the_scripts_name_their_codes_after_the_table() -> None:
    for script in ("widget.js", "console.js"):
        for name, code in _script_codes(ROOT / "static" / script).items():
            assert name in CloseCode.__members__, f"{script}: CLOSE.{name} is not in app/realtime/closecodes.py"
            assert CloseCode[name] == code, f"{script}: CLOSE.{name} is {code}, the table says {int(CloseCode[name])}"
    # The widget's watchdog closes a silent server as the server closes a silent widget.
    assert _script_codes(ROOT / "static" / "widget.js")["DEAD_PEER"] == CloseCode.DEAD_PEER


def test_the_docs_show_exactly_the_table() -> None:
    text = (ROOT / "docs" / "widget.md").read_text()
    section = text[text.index("### Close codes") : text.index("### Limits")]
    rows = re.findall(r"^\| (\d+) \| `(\w+)` \|", section, re.MULTILINE)
    assert [(int(code), name) for code, name in rows] == [(int(c), c.name) for c in CloseCode], (
        "docs/widget.md's close codes drifted from app/realtime/closecodes.py"
    )


def test_a_console_that_falls_behind_is_closed_try_again_not_dead_peer() -> None:
    """The console's queue overflows into the widget's "fell behind" code, never 4408."""

    async def receive() -> Message:
        raise AssertionError("the queue is never read here")

    async def send(message: Message) -> None:
        raise AssertionError("nothing is sent here")

    async def overflow() -> list[object]:
        websocket = WebSocket({"type": "websocket", "path": "/console/live", "headers": []}, receive, send)
        sock = console_hub.LiveSocket(websocket, "wsp_1", "cus_1")
        for seq in range(console_hub.QUEUE + 1):
            sock.offer({"type": "message.created", "conversation_id": "cnv_1", "seq": seq})
        return [sock.queue.get_nowait() for _ in range(sock.queue.qsize())]

    queued = asyncio.run(overflow())
    assert queued == [CloseCode.TRY_AGAIN]  # what it held is dropped: it catches up on reconnect
    assert CloseCode.TRY_AGAIN != CloseCode.DEAD_PEER

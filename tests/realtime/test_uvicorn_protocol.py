"""Backchannel's uvicorn WebSocket protocol (``app.realtime.uvicorn_protocol``): its lean queue
and write gate behave as the ``asyncio`` ones they replace, and ``backchannel serve`` uses it.

Every live-server test (``tests/conftest.py`` runs uvicorn with it, as ``serve`` does) covers
it end to end; these pin what those cannot see."""

from __future__ import annotations

import asyncio
import os
import resource
import subprocess
import sys
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosedOK

from app.logs import WS_PROTOCOL, uvicorn_options
from app.realtime.uvicorn_protocol import WebSocketProtocol, _Gate, _Inbox
from app.serve import raise_open_files_limit
from app.settings import Settings


def test_serve_runs_uvicorn_with_the_lean_protocol_and_no_protocol_pings() -> None:
    options = uvicorn_options(Settings(env="test"))
    assert options["ws"] == WS_PROTOCOL == "app.realtime.uvicorn_protocol:WebSocketProtocol"
    assert options["ws_ping_interval"] is None  # the hub's heartbeat pings in frames (4408 when silent)
    module, _, name = WS_PROTOCOL.partition(":")
    assert getattr(sys.modules.get(module) or __import__(module, fromlist=[name]), name) is WebSocketProtocol


def test_inbox_hands_items_out_in_order_and_a_cancelled_getter_loses_none() -> None:
    async def scenario() -> list[object]:
        inbox = _Inbox()
        assert inbox.empty()
        waiting = asyncio.ensure_future(inbox.get())
        await asyncio.sleep(0)
        waiting.cancel()  # a receive under a timeout that fired
        await asyncio.gather(waiting, return_exceptions=True)
        inbox.put_nowait(1)
        inbox.put_nowait(2)
        assert not inbox.empty()
        got = [await inbox.get(), await inbox.get()]
        assert inbox.empty()
        later = asyncio.ensure_future(inbox.get())
        await asyncio.sleep(0)
        inbox.put_nowait(3)
        got.append(await asyncio.wait_for(later, 5))
        # Woken, then cancelled before it ran: the item stays for the next getter.
        woken = asyncio.ensure_future(inbox.get())
        await asyncio.sleep(0)
        inbox.put_nowait(4)
        woken.cancel()
        await asyncio.gather(woken, return_exceptions=True)
        got.append(await asyncio.wait_for(inbox.get(), 5))
        return got

    assert asyncio.run(scenario()) == [1, 2, 3, 4]


def test_gate_holds_senders_while_paused_and_releases_them_all() -> None:
    async def scenario() -> tuple[bool, bool, list[bool]]:
        gate = _Gate()
        assert gate.is_set()
        gate.clear()
        senders = [asyncio.ensure_future(gate.wait()) for _ in range(3)]
        await asyncio.sleep(0.01)
        held = not any(s.done() for s in senders)
        senders[0].cancel()  # one sender gives up: the others still wait, then go
        await asyncio.gather(senders[0], return_exceptions=True)
        still = not senders[1].done()
        gate.set()
        return held, still, list(await asyncio.wait_for(asyncio.gather(*senders[1:]), 5))

    assert asyncio.run(scenario()) == (True, True, [True, True])


def test_serve_lifts_the_open_files_soft_limit_to_the_hard_one() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    low = min(256, hard)
    code = (
        "import resource; from app.serve import raise_open_files_limit as r; "
        f"resource.setrlimit(resource.RLIMIT_NOFILE, ({low}, resource.getrlimit(resource.RLIMIT_NOFILE)[1])); "
        "print(*r(), resource.getrlimit(resource.RLIMIT_NOFILE)[0])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=dict(os.environ), timeout=60
    ).stdout.split()
    want = hard if hard != resource.RLIM_INFINITY else low
    assert [int(x) for x in out] == [low, want, want]
    assert raise_open_files_limit()[1] >= soft  # here: never lowered


def test_send_nowait_writes_a_frame_at_once_and_refuses_once_closing() -> None:
    """A real uvicorn with the protocol, an ASGI app using the extension, a real client."""
    import threading

    import uvicorn
    from websockets.sync.client import connect

    from app.realtime.hub import SEND_NOWAIT
    from tests.conftest import free_port

    seen: dict[str, object] = {}

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return
        send_text = scope["extensions"][SEND_NOWAIT]["send_text"]
        seen["before_accept"] = send_text("too early")
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        seen["open"] = send_text('{"type":"ping"}')
        await receive()  # the client's reply
        await send({"type": "websocket.close", "code": 1000})
        seen["after_close"] = send_text("too late")

    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, ws=WS_PROTOCOL, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        for _ in range(200):
            if server.started:
                break
            threading.Event().wait(0.05)
        with connect(f"ws://127.0.0.1:{port}/", open_timeout=10) as ws:
            assert ws.recv(timeout=10) == '{"type":"ping"}'
            ws.send("pong")
            with pytest.raises(ConnectionClosedOK):
                ws.recv(timeout=10)
    finally:
        server.should_exit = True
        thread.join(10)
    assert seen == {"before_accept": False, "open": True, "after_close": False}

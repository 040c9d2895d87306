"""Backchannel's uvicorn HTTP protocol (``app.http_protocol``): a response's head goes out with
its body in one write, and nothing that must go out alone waits for anything.

A real uvicorn server on a free port, with the protocol under test, whose socket writes are
counted on their way to the real transport; a real client on a raw socket. Every live-server
test (``backchannel serve`` and ``tests/conftest.py`` run uvicorn with it) covers it end to end.
"""

from __future__ import annotations

import asyncio
import socket
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn
from websockets.sync.client import connect

from app.http_protocol import HttpProtocol
from app.logs import HTTP_PROTOCOL, WS_PROTOCOL, uvicorn_options
from app.settings import Settings
from tests.conftest import free_port

writes: list[bytes] = []  # each socket write the server made, as one piece


class _Counted:
    """The real transport, each write (or writelines: one ``writev``) recorded as one piece."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport

    def write(self, data: bytes) -> None:
        writes.append(bytes(data))
        self._transport.write(data)

    def writelines(self, pieces: Any) -> None:
        pieces = list(pieces)
        writes.append(b"".join(pieces))
        self._transport.writelines(pieces)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class CountedProtocol(HttpProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(_Counted(transport))  # type: ignore[arg-type]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        return
    if scope["type"] == "websocket":
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": "hello"})
        await send({"type": "websocket.close", "code": 1000})
        return
    path = scope["path"]
    if path == "/echo":  # reads its body first (a client may wait for 100 Continue to send it)
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(body))]})
        await send({"type": "http.response.body", "body": body})
    elif path == "/slow":  # the body comes a while after the head
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"4")]})
        await asyncio.sleep(0.5)
        await send({"type": "http.response.body", "body": b"done"})
    else:
        body = b'{"ok":true}'
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})


@pytest.fixture(scope="module")
def server() -> Iterator[int]:
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, http=CountedProtocol, ws=WS_PROTOCOL,
                            log_level="warning", lifespan="off")  # fmt: skip
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    for _ in range(200):
        if srv.started:
            break
        time.sleep(0.05)
    yield port
    srv.should_exit = True
    thread.join(10)


def _read_head(sock: socket.socket, timeout: float = 5.0) -> tuple[bytes, bytes]:
    """What arrives up to a blank line (a response's head, or ``100 Continue``), and anything after it."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, rest = data.partition(b"\r\n\r\n")
    return head + b"\r\n\r\n", rest


def _read_response(sock: socket.socket) -> bytes:
    """One response with a content-length, read to its end."""
    head, body = _read_head(sock)
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
    while len(body) < length:
        body += sock.recv(65536)
    return head + body


def test_serve_runs_uvicorn_with_this_protocol() -> None:
    options = uvicorn_options(Settings(env="test"))
    assert options["http"] == HTTP_PROTOCOL == "app.http_protocol:HttpProtocol"
    module, _, name = HTTP_PROTOCOL.partition(":")
    assert getattr(sys.modules.get(module) or __import__(module, fromlist=[name]), name) is HttpProtocol


def test_a_response_goes_out_in_one_write_each_on_a_kept_alive_connection(server: int) -> None:
    writes.clear()
    with socket.create_connection(("127.0.0.1", server)) as sock:
        for _ in range(3):
            sock.sendall(b"GET /json HTTP/1.1\r\nHost: x\r\n\r\n")
            response = _read_response(sock)
            assert response.startswith(b"HTTP/1.1 200 OK\r\n") and response.endswith(b'{"ok":true}')
    assert len(writes) == 3
    assert all(w.startswith(b"HTTP/1.1 200 OK\r\n") and w.endswith(b'{"ok":true}') for w in writes)


def test_a_head_whose_body_is_slow_goes_out_alone_at_once(server: int) -> None:
    writes.clear()
    with socket.create_connection(("127.0.0.1", server)) as sock:
        sock.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        head, rest = _read_head(sock, timeout=0.4)  # the body comes after 0.5 s; the head must not wait
        assert head.startswith(b"HTTP/1.1 200 OK\r\n") and rest == b""
        sock.settimeout(5)
        while len(rest) < 4:
            rest += sock.recv(65536)
        assert rest == b"done"
    assert len(writes) == 2 and writes[1] == b"done"


def test_a_head_request_gets_its_head(server: int) -> None:
    writes.clear()
    with socket.create_connection(("127.0.0.1", server)) as sock:
        sock.sendall(b"HEAD /json HTTP/1.1\r\nHost: x\r\n\r\n")
        head, rest = _read_head(sock)
        assert head.startswith(b"HTTP/1.1 200 OK\r\n") and rest == b""
    assert len(writes) == 1


def test_100_continue_goes_out_before_the_body_is_sent(server: int) -> None:
    writes.clear()
    with socket.create_connection(("127.0.0.1", server)) as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        interim, rest = _read_head(sock)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n" and rest == b""  # before the client sent its body
        sock.sendall(b"hello")
        response = _read_response(sock)
        assert response.startswith(b"HTTP/1.1 200 OK\r\n") and response.endswith(b"hello")
    assert writes[0] == b"HTTP/1.1 100 Continue\r\n\r\n" and len(writes) == 2


def test_a_websocket_upgrade_still_works(server: int) -> None:
    with connect(f"ws://127.0.0.1:{server}/", open_timeout=10) as ws:
        assert ws.recv(timeout=10) == "hello"

"""A lean WebSocket client for holding tens of thousands of sockets in one load generator.

A general client (``websockets``) keeps a reader task, queues and buffers per socket: at
50,000 sockets the load generator would need more memory and CPU than the server under test.
Here a socket is one ``asyncio.Protocol`` (slotted) and nothing else: no task, no queue. It
does what the bench needs and no more: the HTTP/1.1 upgrade, masked text frames out, unmasked
frames in (text, ping, close), an answer to every heartbeat ``ping`` frame.

Sockets bind to a chosen loopback source address (127.0.0.2, 127.0.0.3, …) before
connecting, with ``IP_BIND_ADDRESS_NO_PORT`` so the kernel picks the port at ``connect``: the
~28,000 ephemeral ports belong to each (source, destination) pair, so five source addresses
hold 50,000 sockets to one server port.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import struct
import time
from collections.abc import Callable
from typing import Any

from websockets.utils import accept_key, apply_mask

IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)  # Linux
PING_FRAME = '{"type":"ping"}'
PONG_FRAME = b'{"type":"pong"}'
SOCKETS_PER_SOURCE = 20_000  # well under the ~28,000 ephemeral ports of one source address
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA

now = time.perf_counter


def source_address(index: int) -> str:
    """The loopback address the ``index``-th socket binds to: 127.0.0.2 for the first 20,000, …"""
    return f"127.0.0.{2 + index // SOCKETS_PER_SOURCE}"


def client_frame(opcode: int, payload: bytes) -> bytes:
    """One final frame, masked as a client must (RFC 6455 §5.3)."""
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    key = os.urandom(4)
    if not n:
        return head + key
    return head + key + apply_mask(payload, key)


PONG_TEXT = client_frame(OP_TEXT, PONG_FRAME)  # masking protects proxies, not the bench: one key will do


class WireSocket(asyncio.Protocol):
    """One client socket. ``on_text(socket, text, t)`` gets every text frame but heartbeat
    pings, which are answered here and counted (``pings``, ``max_ping_gap``)."""

    __slots__ = (
        "on_text",
        "transport",
        "buffer",
        "fragments",
        "key",
        "upgraded",
        "waiter",
        "pings",
        "last_ping",
        "max_ping_gap",
        "closed",
        "ready",
    )

    def __init__(self, on_text: Callable[[WireSocket, str, float], None] | None = None) -> None:
        self.on_text = on_text
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.fragments: list[bytes] | None = None
        self.key = b""
        self.upgraded = False
        self.waiter: asyncio.Future[Any] | None = None  # the handshake's, then ``ready``'s, then close's
        self.pings = 0
        self.last_ping: float | None = None
        self.max_ping_gap = 0.0
        self.closed: int | None = None  # the close code, once closed (1006: dropped without one)
        self.ready = False

    @property
    def opened(self) -> bool:
        return self.ready

    # -- connecting ------------------------------------------------------------------------

    async def open(self, host: str, port: int, path: str, origin: str, source: str, auth: dict[str, Any],
                   timeout: float = 60) -> None:  # fmt: skip
        """TCP from ``source``, the upgrade, the ``auth`` frame; returns once ``ready`` arrives."""
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
            sock.bind((source, 0))
            async with asyncio.timeout(timeout):
                await loop.sock_connect(sock, (host, port))
                transport, _ = await loop.create_connection(lambda: self, sock=sock)
                self.transport = transport  # uvloop may call connection_made later
                self.key = base64.b64encode(os.urandom(16))
                self.waiter = loop.create_future()
                self.transport.write(
                    f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    f"Sec-WebSocket-Key: {self.key.decode()}\r\nSec-WebSocket-Version: 13\r\n"
                    f"Origin: {origin}\r\n\r\n".encode()
                )
                await self.waiter
                self.waiter = loop.create_future()
                self.send_text(json.dumps(auth))
                await self.waiter
        except BaseException:
            if self.transport is None:
                sock.close()
            self.abort()
            raise
        finally:
            self.waiter = None
        self.ready = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        if self.closed is None:
            self.closed = 1006
        self._settle(ConnectionError(f"closed ({self.closed})"))

    def _settle(self, error: Exception | None = None) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            if error is None:
                waiter.set_result(None)
            else:
                waiter.set_exception(error)

    # -- frames in -------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data if self.buffer else data
        if not self.upgraded:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                self.buffer = buffer
                return
            self._upgrade(buffer[:end])
            buffer = buffer[end + 4 :]
        t = now()
        while len(buffer) >= 2:
            b0, b1 = buffer[0], buffer[1]
            n, at = b1 & 0x7F, 2
            if n == 126:
                if len(buffer) < 4:
                    break
                n, at = struct.unpack_from("!H", buffer, 2)[0], 4
            elif n == 127:
                if len(buffer) < 10:
                    break
                n, at = struct.unpack_from("!Q", buffer, 2)[0], 10
            if len(buffer) < at + n:
                break
            payload, buffer = buffer[at : at + n], buffer[at + n :]
            self._frame(b0 & 0x80, b0 & 0x0F, payload, t)
        self.buffer = buffer

    def _upgrade(self, head: bytes) -> None:
        status, _, rest = head.partition(b"\r\n")
        accept = accept_key(self.key.decode()).encode()
        if b" 101 " not in status + b" " or accept not in rest:
            self.closed = int(status.split()[1]) if len(status.split()) > 1 and status.split()[1].isdigit() else -1
            self._settle(ConnectionError(status.decode(errors="replace")))
            self.abort()
            return
        self.upgraded = True
        self._settle()

    def _frame(self, fin: int, opcode: int, payload: bytes, t: float) -> None:
        if opcode in (OP_TEXT, OP_CONT):
            if not fin:
                self.fragments = (self.fragments or []) + [payload]
                return
            if self.fragments is not None:
                payload, self.fragments = b"".join(self.fragments) + payload, None
            text = payload.decode()
            if text == PING_FRAME:
                if self.last_ping is not None:
                    self.max_ping_gap = max(self.max_ping_gap, t - self.last_ping)
                self.last_ping = t
                self.pings += 1
                self.write(PONG_TEXT)
            elif not self.ready and self.waiter is not None:
                if json.loads(text).get("type") == "ready":
                    self._settle()
            elif self.on_text is not None:
                self.on_text(self, text, t)
        elif opcode == OP_PING:
            self.write(client_frame(OP_PONG, payload))
        elif opcode == OP_CLOSE:
            code = struct.unpack_from("!H", payload)[0] if len(payload) >= 2 else 1005
            if self.closed is None:
                self.closed = code
                self.write(client_frame(OP_CLOSE, payload[:2]))
            if self.transport is not None:
                self.transport.close()

    # -- frames out ------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def send_text(self, text: str) -> None:
        self.write(client_frame(OP_TEXT, text.encode()))

    async def close(self, timeout: float = 3.0) -> None:
        """The close handshake (1000), then the TCP close; aborted after ``timeout`` seconds."""
        if self.transport is None or self.transport.is_closing():
            return
        if self.closed is None:
            self.closed = 1000
            self.waiter = asyncio.get_running_loop().create_future()
            self.write(client_frame(OP_CLOSE, struct.pack("!H", 1000)))
            try:
                await asyncio.wait_for(self.waiter, timeout)
            except (TimeoutError, ConnectionError):
                pass
            finally:
                self.waiter = None
        self.abort()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

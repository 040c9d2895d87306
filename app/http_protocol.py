"""uvicorn's httptools HTTP protocol, with a response's head and body in one socket write.

uvicorn writes a response in two calls on the transport, the status line and headers, then
the body: two ``send`` system calls a request on a socket that is free to write, and, on
loopback, the receiver woken twice. The second cost 3.6 µs of the server's CPU a request
(51.5 → 47.9 µs for a bare ``GET``; about 1 % of a message end to end; docs/performance.md,
section 16). Here the head waits for the response's first body
write and goes out with it; if none follows in the same turn of the event loop (a response
streamed from something slow, a ``HEAD``), it goes out alone at the next turn, so nothing waits
longer than that. What uvicorn writes before a response (``100 Continue``) goes out at once.

``backchannel serve`` runs uvicorn with it (``app.logs.HTTP_PROTOCOL``; by hand: ``uvicorn
--http app.http_protocol:HttpProtocol``). uvicorn is pinned to a minor version (pyproject):
this relies on its cycle keeping its transport in ``RequestResponseCycle.transport``, and
``tests/test_http_protocol.py`` fails if that changes.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

_BEFORE, _HELD, _SENT = 0, 1, 2  # a response's head: not written yet, held, sent
# The one thing uvicorn writes before a response's head (``RequestResponseCycle.receive``).
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class _HeadWithBody:
    """The transport as one response's cycle sees it: the head is held for the first body write.
    (It keeps no reference to the cycle, which keeps it: no reference cycle for the collector.)"""

    __slots__ = ("_transport", "_head", "_state")

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._head = b""
        self._state = _BEFORE

    def write(self, data: bytes) -> None:
        state = self._state
        if state == _HELD:
            self._transport.writelines((self._take_head(), data))
        elif state == _BEFORE and data != _CONTINUE:  # the head (uvicorn writes it first)
            self._state, self._head = _HELD, data
            asyncio.get_running_loop().call_soon(self.flush)
        else:  # a body after its head, or what goes before a response (``100 Continue``)
            self._transport.write(data)

    def flush(self) -> None:
        """The head alone, if no body came with it."""
        if self._state == _HELD:
            head = self._take_head()
            if not self._transport.is_closing():
                self._transport.write(head)

    def _take_head(self) -> bytes:
        self._state, head, self._head = _SENT, self._head, b""
        return head

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:  # everything else as the transport has it
        return getattr(self._transport, name)


class HttpProtocol(HttpToolsProtocol):
    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        cycle = self.cycle
        # A new request's cycle (none is made for a WebSocket upgrade, which keeps the transport).
        if cycle is not None and cycle.transport is self.transport:
            cycle.transport = _HeadWithBody(self.transport)  # type: ignore[assignment]

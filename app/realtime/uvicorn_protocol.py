"""uvicorn's WebSocket protocol (websockets' sans-I/O), lighter to hold open by the ten thousand.

``backchannel serve`` runs uvicorn with it (``app.logs.WS_PROTOCOL``; by hand: ``uvicorn --ws
app.realtime.uvicorn_protocol:WebSocketProtocol``, docs/deploy.md). It is
uvicorn's own ``websockets-sansio`` protocol, with what an idle socket holds made smaller
(measured with tracemalloc, 2,000 idle widget sockets, docs/performance.md):

- the receive queue: an ``asyncio.Queue`` is three deques and an ``Event`` (~3.3 KiB); uvicorn
  reads one frame at a time (reading pauses until the app takes it), so a list made when a
  frame arrives and a future made while the app waits will do (``_Inbox``);
- the write gate: an ``asyncio.Event`` with its deque (~0.8 KiB) becomes a flag and, only
  while the transport is paused, one future (``_Gate``);
- the handshake: uvicorn keeps the parsed request and the response (their headers, ~4 KiB)
  for the socket's life; both are emptied and dropped once the handshake is answered (the
  ASGI scope keeps the request's headers, as ASGI says).

It also offers the app one ASGI extension, ``backchannel.send_nowait``: ``{"send_text": f}``,
where ``f(text)`` writes a text frame at once and returns True, or returns False (and writes
nothing) when the socket is not open for it (not yet accepted, closing, or its peer not keeping
up). A widget socket with nothing queued sends through it (``app.realtime.hub.Connection``):
a heartbeat ping or a live frame then costs no task and no timer.

Everything else (framing, limits, the close handshake, back-pressure) is uvicorn's, unchanged.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.exceptions import InvalidState
from websockets.http11 import Request

from app.realtime.hub import SEND_NOWAIT


class _Inbox:
    """What uvicorn's protocol needs of its ``asyncio.Queue``: ``put_nowait``, ``get``, ``empty``.

    A waiting ``get`` holds a future that is only a wake-up signal: the item stays in the list
    until a getter takes it, so a getter cancelled while woken (a timeout) loses nothing."""

    __slots__ = ("_items", "_waiter")

    def __init__(self) -> None:
        self._items: list[Any] | None = None
        self._waiter: asyncio.Future[None] | None = None

    def put_nowait(self, item: Any) -> None:
        if self._items is None:
            self._items = [item]
        else:
            self._items.append(item)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def empty(self) -> bool:
        return not self._items

    async def get(self) -> Any:
        while not self._items:
            waiter = self._waiter
            if waiter is None or waiter.done():
                waiter = self._waiter = asyncio.get_running_loop().create_future()
            try:
                await waiter
            finally:
                if self._waiter is waiter and waiter.done():
                    self._waiter = None
        items = self._items
        item = items.pop(0)
        if not items:
            self._items = None
        return item


class _Gate:
    """What uvicorn's protocol needs of its ``asyncio.Event`` (set while the peer keeps up)."""

    __slots__ = ("_open", "_waiter")

    def __init__(self) -> None:
        self._open = True
        self._waiter: asyncio.Future[None] | None = None

    def is_set(self) -> bool:
        return self._open

    def set(self) -> None:
        self._open = True
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def clear(self) -> None:
        self._open = False

    async def wait(self) -> bool:
        while not self._open:
            waiter = self._waiter
            if waiter is None or waiter.done():
                waiter = self._waiter = asyncio.get_running_loop().create_future()
            await asyncio.shield(waiter)  # several senders may wait; one cancelled leaves the rest
        return True


class WebSocketProtocol(WebSocketsSansIOProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queue = _Inbox()  # type: ignore[assignment]
        self.writable = _Gate()  # type: ignore[assignment]

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)
        if scope is not None:  # a handshake handed to the app (the app task has not run yet)
            scope["extensions"][SEND_NOWAIT] = {"send_text": self.send_text_nowait}

    def send_text_nowait(self, text: str) -> bool:
        """One text frame written now, if the socket is open and its peer keeps up; else False."""
        if (
            not self.handshake_complete
            or self.close_sent
            or self.disconnected
            or self.initial_response is not None
            or not self.writable.is_set()
            or self.transport.is_closing()
        ):
            return False
        try:
            self.conn.send_text(text.encode())
        except InvalidState:  # the peer's close arrived first: the app hears of it in order
            return False
        self.transport.write(b"".join(self.conn.data_to_send()))
        return True

    async def send(self, message: Any) -> None:
        await super().send(message)
        if self.handshake_complete and getattr(self, "response", None) is not None:
            # Answered (accepted or refused): the handshake's request and response are done with.
            # Their headers are emptied too: websockets' parser keeps the request in a local.
            self.request.headers.clear()
            self.response.headers.clear()
            self.request = self.response = None  # type: ignore[assignment]

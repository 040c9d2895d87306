"""The baseline: what the same uvicorn does with no database, no auth and no validation.

- ``POST /publish/{room}`` relays the JSON body to every WebSocket in ``room`` (as a
  ``{"type": "message", "message": …}`` frame) and answers 201 with it: the bare version of
  "post a message through the API, receive it on the widget".
- ``WS /ws?room=…`` takes a first ``auth`` frame, answers ``ready``, pings every
  ``BENCH_HEARTBEAT`` seconds like the widget socket, and answers ``ping`` with ``pong``.
- ``POST /forward`` answers 201 and queues the body for each of ``BENCH_FORWARD_URLS``, where
  8 sender tasks per receiver POST it over keep-alive connections: the bare version of a
  webhook (no outbox, no signature, no retry, no log).
- ``POST /echo`` and ``GET /items`` are bare JSON endpoints: parse and echo the body, and a
  page of 50 message-shaped objects (the shape of ``GET …/messages``).

Started by ``bench/servers.py`` with exactly the uvicorn flags Backchannel gets.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections import defaultdict
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

ITEM = {
    "id": "msg_0000000000000000000000",
    "conversation_id": "cnv_0000000000000000000000",
    "seq": 1,
    "actor": {"type": "bot", "id": "agt_0000000000000000000000"},
    "message_parts": [{"text": {"content": "Hello! How can I help you today?"}}],
    "reply_parts": [],
    "reply_to": None,
    "client_message_id": None,
    "created_at": "2026-01-01T00:00:00.000000Z",
}
PAGE = {"data": [dict(ITEM, seq=i + 1) for i in range(50)], "next_cursor": None}


def create_app() -> Starlette:
    rooms: dict[str, set[WebSocket]] = defaultdict(set)
    heartbeat = float(os.environ.get("BENCH_HEARTBEAT", "20"))

    async def echo(request: Request) -> Response:
        return JSONResponse(await request.json(), status_code=201)

    async def items(request: Request) -> Response:
        return JSONResponse(PAGE)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def publish(request: Request) -> Response:
        body = await request.json()
        text = json.dumps({"type": "message", "message": body})
        for ws in list(rooms.get(request.path_params["room"], ())):
            with contextlib.suppress(Exception):
                await ws.send_text(text)
        return JSONResponse(body, status_code=201)

    forward_urls = [u for u in os.environ.get("BENCH_FORWARD_URLS", "").split(",") if u]
    queues: dict[str, asyncio.Queue[bytes]] = {}
    senders: list[asyncio.Task[None]] = []

    async def sender(url: str, queue: asyncio.Queue[bytes]) -> None:
        from bench.client import Connection

        parts = urlsplit(url)
        conn = Connection(parts.hostname or "127.0.0.1", parts.port or 80)
        while True:
            body = await queue.get()
            with contextlib.suppress(Exception):
                await conn.request("POST", parts.path or "/", body)

    async def forward(request: Request) -> Response:
        """The bare version of a webhook: queue the body for each receiver and answer; 8 sender
        tasks per receiver POST it over keep-alive connections (the load generator's minimal
        HTTP/1.1 client, as lean as the dispatcher's sender). No outbox, signature, retry or log."""
        body = await request.body()
        if not senders:
            for url in forward_urls:
                queues[url] = asyncio.Queue()
                senders.extend(asyncio.create_task(sender(url, queues[url])) for _ in range(8))
        for url in forward_urls:
            queues[url].put_nowait(body)
        return JSONResponse(json.loads(body), status_code=201)

    async def relay(websocket: WebSocket) -> None:
        await websocket.accept()
        room = websocket.query_params.get("room", "")
        try:
            first = json.loads(await websocket.receive_text())
            if first.get("type") != "auth":
                await websocket.close(code=4401)
                return
            rooms[room].add(websocket)
            await websocket.send_text(json.dumps({"type": "ready", "heartbeat": heartbeat}))

            async def pinger() -> None:
                while True:
                    await asyncio.sleep(heartbeat)
                    await websocket.send_text('{"type":"ping"}')

            ping_task = asyncio.create_task(pinger())
            try:
                while True:
                    frame = json.loads(await websocket.receive_text())
                    if frame.get("type") == "ping":
                        await websocket.send_text('{"type":"pong"}')
            finally:
                ping_task.cancel()
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            rooms[room].discard(websocket)
            if not rooms[room]:
                rooms.pop(room, None)

    return Starlette(
        routes=[
            Route("/echo", echo, methods=["POST"]),
            Route("/items", items, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/publish/{room}", publish, methods=["POST"]),
            Route("/forward", forward, methods=["POST"]),
            WebSocketRoute("/ws", relay),
        ]
    )

"""A widget connection writes the next message of its conversation at once when nothing is
queued (``Connection.push_message``), and falls back to its queue, in order, otherwise."""

from __future__ import annotations

import asyncio

from starlette.websockets import WebSocketState

from app.realtime.hub import SEND_NOWAIT, Connection


class _Socket:
    """What a connection uses of a WebSocket: its scope's ``send_nowait`` and ``send_text``."""

    def __init__(self) -> None:
        self.keeping_up = True
        self.direct: list[str] = []
        self.queued: list[str] = []
        self.scope = {"extensions": {SEND_NOWAIT: {"send_text": self._now}}}
        self.application_state = WebSocketState.CONNECTED

    def _now(self, text: str) -> bool:
        if not self.keeping_up:
            return False
        self.direct.append(text)
        return True

    async def send_text(self, text: str) -> None:
        self.queued.append(text)


def _connection(sock: _Socket) -> Connection:
    conn = Connection(hub=None, websocket=sock, workspace_id="ws", user_id="u", queue_size=100)  # type: ignore[arg-type]
    conn.sending_conversation = "c1"
    return conn


def test_the_next_message_is_written_at_once_with_no_task() -> None:
    async def run() -> None:
        sock = _Socket()
        conn = _connection(sock)
        conn.push_message("c1", 1, "one")
        conn.push_message("c1", 2, None)  # a private note: its seq passes, nothing is sent
        conn.push_message("c1", 3, "three")
        conn.push_message("c1", 3, "three again")  # already sent: dropped
        conn.push_message("c2", 4, "another conversation's")
        await asyncio.sleep(0)  # a flusher, had one started, would run now
        assert sock.direct == ["one", "three"]
        assert sock.queued == []
        assert conn.sent_seq == 3

    asyncio.run(run())


def test_a_peer_that_does_not_keep_up_gets_the_queue_and_order_holds() -> None:
    async def run() -> None:
        sock = _Socket()
        conn = _connection(sock)
        conn.push_message("c1", 1, "one")
        sock.keeping_up = False
        conn.push_message("c1", 2, "two")  # refused at once: queued, a flusher sends it
        sock.keeping_up = True
        conn.push_message("c1", 3, "three")  # behind a queued frame: queued too, never first
        for _ in range(10):
            await asyncio.sleep(0)
        assert sock.direct == ["one"]
        assert sock.queued == ["two", "three"]
        assert conn.sent_seq == 3
        conn.push_message("c1", 4, "four")  # the queue is empty again: at once
        assert sock.direct == ["one", "four"]

    asyncio.run(run())

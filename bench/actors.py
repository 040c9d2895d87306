"""The actors of the fault scenario (bench/faults.py): instances that can be killed, the careful
writers, the flaky webhook receiver, and widgets that resume from their last ``seq``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from bench.client import Connection, HttpError
from bench.servers import die_with_parent
from tests.conftest import TEST_ENV, LiveServer

ROOT = Path(__file__).resolve().parent.parent
ORIGIN = "http://faults.test"
Attempt = tuple[str, str, int, float]  # (webhook-id, message id or "", status answered, at)
# The test suite's fast webhook timings are dropped: the scenario runs on the shipped defaults.
_TEST_TIMINGS = ("BACKCHANNEL_WEBHOOK_RETRY_SCHEDULE", "BACKCHANNEL_WEBHOOK_POLL_SECONDS",
                 "BACKCHANNEL_WEBHOOK_LEASE_SECONDS")


class Instance(LiveServer):
    """A uvicorn process on the shipped webhook timings (not the test suite's fast ones).

    Once ``retire()``d it stays down, even if a restart was already under way in a thread."""

    retired = False

    def start(self) -> Instance:
        if self.retired:
            return self
        super().start()
        if self.retired:  # retired while starting
            self.stop()
        return self

    def retire(self) -> None:
        self.retired = True
        self.stop()

    def full_env(self) -> dict[str, str]:
        env = {k: v for k, v in super().full_env().items() if k not in _TEST_TIMINGS or k in self.env}
        return env | {"BACKCHANNEL_API_RATE_PER_MINUTE": "1000000", "BACKCHANNEL_ENV": TEST_ENV["BACKCHANNEL_ENV"]}


class Cluster:
    """The instances of one set-up, and when they were down."""

    def __init__(self, instances: list[Instance]) -> None:
        self.instances = instances
        self.up = [True] * len(instances)
        self.kills: list[tuple[float, float | None]] = []  # (killed at, serving again at or None: for good)
        self.outage: list[tuple[float, float]] = []  # spans with no instance serving

    def alive(self) -> list[Instance]:
        return [srv for srv, up in zip(self.instances, self.up, strict=True) if up]

    async def kill(self, index: int, restart_after: float | None) -> None:
        killed_at = time.monotonic()
        self.up[index] = False
        self.instances[index].kill()
        if restart_after is None:
            self.kills.append((killed_at, None))
            return
        await asyncio.sleep(restart_after)
        await asyncio.to_thread(self.instances[index].start)
        ready_at = time.monotonic()
        self.up[index] = True
        self.kills.append((killed_at, ready_at))
        if not any(self.up[:index] + self.up[index + 1:]):
            self.outage.append((killed_at, ready_at))

    def in_kill_window(self, t: float, grace: float = 2.0) -> bool:
        return any(start <= t <= (end if end is not None else start) + grace for start, end in self.kills)

    def downtime_between(self, a: float, b: float) -> float:
        return sum(max(0.0, min(b, end) - max(a, start)) for start, end in self.outage)


class FlakyReceiver:
    """Webhooks on loopback, received by bench/flaky_receiver.py in its own process."""

    def __init__(self, share: int, delay: float = 0.0) -> None:
        self.share, self.delay = share, delay
        self.proc: subprocess.Popen[str] | None = None
        self.port = 0

    def __enter__(self) -> FlakyReceiver:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.flaky_receiver", "--share", str(self.share), "--delay", str(self.delay)],
            cwd=ROOT, stdout=subprocess.PIPE, text=True, preexec_fn=die_with_parent,
        )
        assert self.proc.stdout is not None
        self.port = int(self.proc.stdout.readline())
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            if self.proc.stdout is not None:
                self.proc.stdout.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    @property
    def attempts(self) -> list[Attempt]:
        """Every answered attempt."""
        rows = httpx.get(f"http://127.0.0.1:{self.port}/attempts", timeout=30).json()
        return [(a[0], a[1], a[2], a[3]) for a in rows]

    def delivered(self, attempts: list[Attempt] | None = None) -> dict[str, tuple[set[str], float, int]]:
        """message id -> (its webhook-ids, first 2xx at, 2xx answers)"""
        out: dict[str, tuple[set[str], float, int]] = {}
        for webhook_id, message_id, status, at in self.attempts if attempts is None else attempts:
            if not message_id:
                continue
            ids, first, ok = out.get(message_id, (set(), float("inf"), 0))
            ids.add(webhook_id)
            if status < 300:
                first, ok = min(first, at), ok + 1
            out[message_id] = (ids, first, ok)
        return out


@dataclass
class Ack:
    conversation: str
    message_id: str
    seq: int
    status: int
    at: float


class Writers:
    """The careful client: every message has a ``client_message_id`` and is retried until acknowledged."""

    def __init__(self, cluster: Cluster, token: str, conversations: list[str], *, messages: int, writers: int,
                 abandon_share: int, seed: int) -> None:
        self.cluster, self.token, self.conversations = cluster, token, conversations
        self.messages, self.writers, self.abandon_share, self.seed = messages, writers, abandon_share, seed
        self.acks: dict[str, Ack] = {}  # client_message_id -> ack
        self.head = dict.fromkeys(conversations, 0)  # highest acknowledged seq per conversation
        self.statuses: list[tuple[float, int, int]] = []  # (at, instance index, status) of every answer
        self.errors: list[tuple[float, int, str]] = []  # (at, instance index, what) connection errors, timeouts
        self.retries = 0
        self.abandoned = 0
        self.next_slot = 0
        self.started = self.finished = 0.0

    async def run(self) -> None:
        self.started = time.monotonic()
        await asyncio.gather(*(self._writer(n) for n in range(self.writers)))
        self.finished = time.monotonic()

    async def _writer(self, n: int) -> None:
        rng = random.Random(self.seed * 1000 + n)
        conns: dict[int, Connection] = {}
        try:
            while self.next_slot < self.messages:
                slot, self.next_slot = self.next_slot, self.next_slot + 1
                conversation = rng.choice(self.conversations)
                cmid = f"w{n}-{slot}"
                body = json.dumps({"message_parts": [{"text": {"content": f"message {slot} from writer {n}"}}],
                                   "client_message_id": cmid}).encode()
                if self.abandon_share and rng.randrange(self.abandon_share) == 0:
                    await self._abandon(conversation, body, rng.uniform(0, 0.15))
                    await asyncio.sleep(rng.uniform(0, 0.05))  # sometimes the retry races the first request
                await self._post_until_acknowledged(conns, slot, conversation, cmid, body)
        finally:
            for conn in conns.values():
                await conn.close()

    async def _abandon(self, conversation: str, body: bytes, after: float) -> None:
        """Send the request and hang up ``after`` seconds without reading the answer: was it stored?
        Only a retry can tell. (A request whose body is read after the hang-up is not handled at all.)"""
        alive = self.cluster.alive()
        if not alive:
            return
        srv = alive[0]
        head = (f"POST /api/v1/conversations/{conversation}/messages HTTP/1.1\r\nHost: 127.0.0.1:{srv.port}\r\n"
                f"Authorization: Bearer {self.token}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n")
        with contextlib.suppress(OSError):
            _, writer = await asyncio.open_connection("127.0.0.1", srv.port)
            writer.write(head.encode() + body)
            with contextlib.suppress(OSError):
                await writer.drain()
            await asyncio.sleep(after)
            writer.close()
            self.abandoned += 1

    async def _post_until_acknowledged(self, conns: dict[int, Connection], slot: int, conversation: str,
                                       cmid: str, body: bytes) -> None:
        attempt = 0
        while True:
            alive = self.cluster.alive()
            if not alive:
                await asyncio.sleep(0.1)
                continue
            srv = alive[(slot + attempt) % len(alive)]  # alternate instances: one conversation, written through all
            index = self.cluster.instances.index(srv)
            conn = conns.get(index) or conns.setdefault(index, Connection("127.0.0.1", srv.port, {
                "Authorization": f"Bearer {self.token}"}))
            try:
                path = f"/api/v1/conversations/{conversation}/messages"
                r = await asyncio.wait_for(conn.request("POST", path, body), 15)
            except (HttpError, OSError, TimeoutError, asyncio.IncompleteReadError, ValueError) as exc:
                await conn.close()
                self.errors.append((time.monotonic(), index, type(exc).__name__))
                r = None
            if r is not None:
                self.statuses.append((time.monotonic(), index, r.status))
                if r.status in (200, 201):
                    message = json.loads(r.body)
                    self.acks[cmid] = Ack(conversation, message["id"], message["seq"], r.status, time.monotonic())
                    self.head[conversation] = max(self.head[conversation], message["seq"])
                    return
                if r.status < 500 and r.status != 429:
                    raise AssertionError(f"{cmid}: {r.status} {r.body[:300]!r}")
            attempt += 1
            self.retries += 1
            await asyncio.sleep(min(1.0, 0.05 * 2**attempt) * random.uniform(0.5, 1.0))


class Widget:
    """A widget-protocol WebSocket client that records every message ``seq`` it is shown, in order."""

    def __init__(self, cluster: Cluster, home: int, session: dict[str, Any], conversation: str) -> None:
        self.cluster, self.home, self.session, self.conversation = cluster, home, session, conversation
        self.seqs: list[int] = []
        self.connects = 0
        self.drops = 0
        self.dropped_at: float | None = None
        self.back_after: list[float] = []  # seconds from losing the socket to ``ready`` on a new one
        self.resumes: list[dict[str, float]] = []  # far resumes: behind by, seconds to catch up, after the writes?

    @property
    def last_seq(self) -> int:
        return self.seqs[-1] if self.seqs else 0

    def _server(self) -> Instance | None:
        alive = self.cluster.alive()
        home = self.cluster.instances[self.home]
        return home if home in alive else (alive[0] if alive else None)

    async def follow(self, until: Callable[[], bool]) -> None:
        """Stay connected (reconnecting and resuming from the last ``seq`` after any drop) until ``until()``."""
        backoff = 0.1
        while not until():
            srv = self._server()
            if srv is None:
                await asyncio.sleep(0.1)
                continue
            try:
                async with connect(srv.ws_url + self.session["socket_path"], origin=ORIGIN,  # type: ignore[arg-type]
                                   open_timeout=5, close_timeout=1) as ws:
                    self.connects += 1
                    auth = {"type": "auth", "token": self.session["session_token"],
                            "conversation_id": self.conversation}
                    await ws.send(json.dumps(auth | ({"last_seq": self.last_seq} if self.seqs else {})))
                    backoff = 0.1
                    while not until():
                        with contextlib.suppress(TimeoutError):
                            await self._frame(ws, json.loads(await asyncio.wait_for(ws.recv(), 0.25)))
            except (ConnectionClosed, OSError, InvalidHandshake, TimeoutError):
                self.drops += 1
                self.dropped_at = self.dropped_at or time.monotonic()
                await asyncio.sleep(backoff)
                backoff = min(1.0, backoff * 2)

    async def _frame(self, ws: Any, frame: dict[str, Any]) -> None:
        if frame["type"] == "message" and frame["message"]["conversation_id"] == self.conversation:
            self.seqs.append(frame["message"]["seq"])
        elif frame["type"] == "ping":
            await ws.send(json.dumps({"type": "pong"}))
        elif frame["type"] == "ready" and self.dropped_at:
            self.back_after.append(time.monotonic() - self.dropped_at)
            self.dropped_at = None

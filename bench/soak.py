"""Soak test: mixed traffic against a real server, then proof that nothing was lost or leaked.

    .venv/bin/python bench/soak.py --duration 1800          # the 30-minute soak
    .venv/bin/python bench/soak.py --duration 120 --visitors 20

It starts its own uvicorn (fresh SQLite database in a temp folder, or ``--database-url``), a
webhook receiver, and for ``--duration`` seconds runs visitors that connect, chat and
disconnect over the widget socket, a bot answering through the REST API, and webhook
deliveries of every event. Every ``--sample`` seconds it records the server's resident memory
and open file descriptors (from /proc). At the end it stops the traffic, lets the outbox
drain, and checks:

- every stored message reached the webhook receiver (``message.created`` by message id);
- every visitor, resuming from the last ``seq`` it holds, has each stored message of its
  conversation exactly once, in ``seq`` order;
- memory and file descriptors after the run are back near where they were after warm-up.

It prints a summary (and ``--json`` writes it) for docs/soak.md. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.conftest import LiveServer, migrated_sqlite  # noqa: E402 - after the path tweak

ORIGIN = "http://soak.test"


class Hooks:
    """A webhook receiver: records the message ids of ``message.created`` events."""

    def __init__(self) -> None:
        self.message_ids: set[str] = set()
        self.events = 0
        lock = threading.Lock()
        hooks = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)))
                with lock:
                    hooks.events += 1
                    if body["type"] == "message.created":
                        hooks.message_ids.add(body["data"]["message"]["id"])
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"


@dataclass
class Visitor:
    session: dict[str, Any]
    conversation_id: str | None = None
    seqs: list[int] = field(default_factory=list)
    sent: int = 0
    acked: set[str] = field(default_factory=set)  # message ids the server acknowledged
    connects: int = 0


@dataclass
class Stats:
    samples: list[dict[str, float]] = field(default_factory=list)
    api_posts: int = 0
    errors: dict[str, int] = field(default_factory=dict)

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1


def proc_figures(pid: int) -> dict[str, float]:
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    rss_kb = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
    return {"rss_mb": round(rss_kb / 1024, 1), "fds": len(os.listdir(f"/proc/{pid}/fd"))}


async def visit(server: LiveServer, v: Visitor, stop: asyncio.Event, stats: Stats, rng: random.Random) -> None:
    """Connect, chat a little, disconnect (or vanish), pause, come back and resume — until stop."""
    while not stop.is_set():
        auth: dict[str, Any] = {"type": "auth", "token": v.session["session_token"]}
        if v.conversation_id and v.seqs:
            auth |= {"conversation_id": v.conversation_id, "last_seq": v.seqs[-1]}
        try:
            async with connect(server.ws_url + v.session["socket_path"], origin=ORIGIN) as ws:  # type: ignore[arg-type,call-overload]
                v.connects += 1
                await ws.send(json.dumps(auth))
                await ws.send(json.dumps({"type": "open"}))
                until = time.monotonic() + rng.uniform(2, 15)
                while time.monotonic() < until and not stop.is_set():
                    try:
                        frame = json.loads(await asyncio.wait_for(ws.recv(), rng.uniform(0.2, 1.5)))
                    except TimeoutError:
                        if v.conversation_id and rng.random() < 0.5:
                            v.sent += 1
                            await ws.send(json.dumps({"type": "message", "text": f"hello {v.sent}",
                                                      "client_message_id": f"{id(v)}-{v.sent}"}))
                        elif rng.random() < 0.3:
                            await ws.send(json.dumps({"type": "typing", "on": True}))
                        continue
                    if frame["type"] == "conversation":
                        v.conversation_id = frame["conversation"]["id"]
                    elif frame["type"] == "message":
                        v.seqs.append(frame["message"]["seq"])
                    elif frame["type"] == "ack":
                        v.acked.add(frame["message_id"])
                    elif frame["type"] == "ping":
                        await ws.send(json.dumps({"type": "pong"}))
                    elif frame["type"] == "error" and frame.get("code") != "rate_limited":
                        stats.error("socket:" + frame.get("code", "?"))
        except (ConnectionClosed, OSError):
            stats.error("socket-dropped")
        await asyncio.sleep(rng.uniform(0.1, 3))


async def bot(server: LiveServer, token: str, visitors: list[Visitor], stop: asyncio.Event, stats: Stats) -> None:
    """Answers in random conversations, with interactive parts now and then."""
    rng = random.Random(7)
    async with httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as api:
        while not stop.is_set():
            targets = [v.conversation_id for v in visitors if v.conversation_id]
            if targets:
                body: dict[str, Any] = {"message_parts": [{"text": {"content": "Here is what I found."}}]}
                if rng.random() < 0.3:
                    body["reply_parts"] = [{"quick_replies": {"options": [{"label": "Yes", "payload": "y"},
                                                                          {"label": "No", "payload": "n"}]}}]
                r = await api.post(f"/api/v1/conversations/{rng.choice(targets)}/messages", json=body)
                if r.status_code == 201:
                    stats.api_posts += 1
                else:
                    stats.error(f"api:{r.status_code}")
            await asyncio.sleep(rng.uniform(0.05, 0.3))


async def sampler(pid: int, stop: asyncio.Event, stats: Stats, every: float, started: float) -> None:
    while not stop.is_set():
        stats.samples.append({"t": round(time.monotonic() - started), **proc_figures(pid)})
        await asyncio.sleep(every)


async def verify(server: LiveServer, token: str, visitors: list[Visitor], hooks: Hooks) -> dict[str, Any]:
    """After the traffic: resume every visitor once more, then compare with the store."""
    async with httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as api:
        stored: dict[str, list[dict[str, Any]]] = {}
        for v in visitors:
            if v.conversation_id and v.conversation_id not in stored:
                out, cursor = [], None
                while True:
                    params: dict[str, Any] = {"limit": 200, **({"cursor": cursor} if cursor else {})}
                    page = (await api.get(f"/api/v1/conversations/{v.conversation_id}/messages", params=params)).json()
                    out += page["data"]
                    if not (cursor := page["next_cursor"]):
                        break
                stored[v.conversation_id] = out
    all_ids = {m["id"] for msgs in stored.values() for m in msgs}
    deadline = time.monotonic() + 120
    while not all_ids <= hooks.message_ids and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
    stop = asyncio.Event()
    stop.set()  # one pass each: connect, resume, read until quiet
    for v in visitors:
        if not v.conversation_id:
            continue
        auth = {"type": "auth", "token": v.session["session_token"], "conversation_id": v.conversation_id,
                "last_seq": v.seqs[-1] if v.seqs else 0}
        async with connect(server.ws_url + v.session["socket_path"], origin=ORIGIN) as ws:  # type: ignore[arg-type,call-overload]
            await ws.send(json.dumps(auth))
            try:
                while True:
                    frame = json.loads(await asyncio.wait_for(ws.recv(), 1.5))
                    if frame["type"] == "message":
                        v.seqs.append(frame["message"]["seq"])
            except TimeoutError:
                pass
    # A visitor joining after more than 200 messages only gets the last 200 (by design): compare the tail.
    widget_ok = all(
        v.seqs == [m["seq"] for m in stored[v.conversation_id]][-len(v.seqs):] and len(v.seqs) == len(set(v.seqs))
        and v.seqs[-1] == stored[v.conversation_id][-1]["seq"]
        for v in visitors if v.conversation_id and v.seqs
    )
    seq_gap_free = all([m["seq"] for m in msgs] == list(range(1, len(msgs) + 1)) for msgs in stored.values())
    return {
        "messages_stored": len(all_ids),
        # A message sent just before a disconnect may never be acknowledged (the widget resends
        # those); an acknowledged one must be stored.
        "acknowledged_messages_missing": len(set().union(*(v.acked for v in visitors)) - all_ids),
        "webhook_message_events_missing": len(all_ids - hooks.message_ids),
        "webhook_events_received": hooks.events,
        "widget_every_message_once_in_seq_order": widget_ok,
        "seq_gap_free": seq_gap_free,
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="bc-soak-"))
    database_url = args.database_url or migrated_sqlite(workdir)
    server = LiveServer(database_url, workdir, {"BACKCHANNEL_WEBHOOK_ALLOW_PRIVATE_NETWORKS": "true"}).start()
    hooks = Hooks()
    try:
        tenant = server.new_tenant("Soak")
        with server.client(tenant) as api:
            api.post("/api/v1/webhook-endpoints", json={"url": hooks.url}).raise_for_status()
        visitors = []
        for _ in range(args.visitors):
            r = httpx.post(server.url + "/widget/v1/session", json={"widget_key": tenant.widget_key},
                           headers={"Origin": ORIGIN})
            r.raise_for_status()
            visitors.append(Visitor(r.json()))
        assert server.proc is not None
        pid, started, stats, stop = server.proc.pid, time.monotonic(), Stats(), asyncio.Event()
        tasks = [asyncio.create_task(visit(server, v, stop, stats, random.Random(i))) for i, v in enumerate(visitors)]
        tasks += [asyncio.create_task(bot(server, tenant.token, visitors, stop, stats)),
                  asyncio.create_task(sampler(pid, stop, stats, args.sample, started))]
        await asyncio.sleep(args.duration)
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.sleep(3)  # sockets closed server-side, deliveries settling
        result = await verify(server, tenant.token, visitors, hooks)
        await asyncio.sleep(2)
        end = proc_figures(pid)
        warm = next((s for s in stats.samples if s["t"] >= args.warmup), stats.samples[-1])
        peak = max(s["rss_mb"] for s in stats.samples)
        return {
            "duration_s": args.duration, "visitors": args.visitors,
            "connects": sum(v.connects for v in visitors), "customer_messages_sent": sum(v.sent for v in visitors),
            "customer_messages_acknowledged": sum(len(v.acked) for v in visitors),
            "bot_messages_posted": stats.api_posts, "errors": stats.errors, **result,
            "rss_mb": {"after_warmup": warm["rss_mb"], "peak": peak, "end": end["rss_mb"]},
            "fds": {"after_warmup": warm["fds"], "peak": max(s["fds"] for s in stats.samples), "end": end["fds"]},
            "samples": stats.samples,
        }
    finally:
        server.stop()
        hooks.httpd.shutdown()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=1800, help="seconds of traffic (default 1800)")
    parser.add_argument("--visitors", type=int, default=30)
    parser.add_argument("--sample", type=float, default=10, help="seconds between memory/fd samples")
    parser.add_argument("--warmup", type=float, default=60, help="the baseline sample is the first after this")
    parser.add_argument("--database-url", help="default: a fresh SQLite file in a temp folder")
    parser.add_argument("--json", type=Path, help="write the summary here")
    args = parser.parse_args()
    summary = asyncio.run(run(args))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))
    print(json.dumps({k: v for k, v in summary.items() if k != "samples"}, indent=2))
    ok = (summary["webhook_message_events_missing"] == 0 and summary["acknowledged_messages_missing"] == 0
          and summary["widget_every_message_once_in_seq_order"]
          and summary["seq_gap_free"])
    print("nothing lost" if ok else "LOSS DETECTED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

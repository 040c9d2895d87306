"""Section 11 of ``scripts/bench``: handover and offline email, the two features of issues 19
and 23 that had no bench entry (issue 24: "the new features keep their own bench entries").

Handover: ``n`` bot-handled conversations, each followed by a widget socket (visitors seeded in
the store as section 1 seeds them; the lean client of ``bench.wire``, in this process). The
team's human agents are away, so ``POST …/handover {"to": "human"}`` leaves each conversation
waiting for a teammate: the widget gets exactly one ``conversation`` frame (``handled_by:
"human"``, no assignee), the one the ``conversation.handover`` event makes. Then an agent
replies in each (``actor: agent``), which takes the conversation: a second ``conversation``
frame (``conversation.assigned``, naming them) and the ``message`` frame. Timed: the POST sent
→ the frame received, on one clock (this process's).

(Away, not online, on purpose: the handover's own frame is timed alone. A handover that picks
an online agent fires ``conversation.assigned`` and ``conversation.handover`` together; the
widget now gets one frame for the two, where it used to get two identical ones.)

Offline email: ``m`` customers with an email on file and no widget open; an agent writes two
replies in each conversation, back to back; an SMTP server on loopback (aiosmtpd, in this
process) takes the emails. Timed: the second reply's POST sent → the email's arrival. The
server runs with ``EMAIL_BATCH_SECONDS`` 1 (default 120: a conversation must be quiet that long
before its replies go out, so one email gathers a few minutes of them) and
``EMAIL_POLL_SECONDS`` 0.2 (default 15: how often an instance looks for due emails): with the
defaults every email would wait two minutes by design, and the bench measures what the server
adds beyond the window it is told to keep.
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import httpx

from bench.client import Connection, HttpError
from bench.loadgen import host_port, percentiles
from bench.servers import Tenant, free_port
from bench.wire import WireSocket, source_address

now = time.perf_counter
ORIGIN = "http://bench.test"
CONCURRENCY = 16  # POSTs in flight (keep-alive connections)
CONNECT_CONCURRENCY = 50
WAIT_SECONDS = 30.0  # the most any step waits for what it expects
MAIL_SETTINGS = {"BACKCHANNEL_EMAIL_BATCH_SECONDS": "1", "BACKCHANNEL_EMAIL_POLL_SECONDS": "0.2"}
OnEvent = Callable[[dict[str, Any]], None]  # the phases, for the orchestrator's CpuMeter


# -- set-up ------------------------------------------------------------------------------


def human_agents(server_url: str, token: str, count: int, status: str = "away") -> list[str]:
    """``count`` human agents, set to ``status``; returns their ids."""
    ids = []
    with httpx.Client(base_url=server_url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as api:
        for i in range(count):
            r = api.post("/api/v1/agents", json={"name": f"Agent {i + 1}", "kind": "human"})
            r.raise_for_status()
            agent_id = r.json()["id"]
            api.patch(f"/api/v1/agents/{agent_id}", json={"status": status}).raise_for_status()
            ids.append(agent_id)
    return ids


def give_emails(database_url: str, workspace_id: str) -> dict[str, str]:
    """An email on every seeded customer of the workspace (straight into the store, before the
    server starts); returns each conversation's customer's address."""
    from sqlalchemy import bindparam, update
    from sqlmodel import col, select

    from app.settings import Settings
    from app.store.engine import make_engine, session_scope
    from app.store.tables import Conversation, User

    engine = make_engine(Settings(database_url=database_url, env="test"))
    try:
        with session_scope(engine) as s:
            pairs = list(s.exec(select(Conversation.id, Conversation.user_id)
                                .where(col(Conversation.workspace_id) == workspace_id)))  # fmt: skip
            addresses = {cid: f"customer-{n}@bench.test" for n, (cid, _) in enumerate(pairs)}
            rows = [{"uid": uid, "address": addresses[cid]} for cid, uid in pairs]
            statement = update(User).where(col(User.id) == bindparam("uid")).values(email=bindparam("address"))
            s.connection().execute(statement, rows)
        return addresses
    finally:
        engine.dispose()


def mail_env(smtp_port: int) -> dict[str, str]:
    return {
        "BACKCHANNEL_SMTP_URL": f"smtp://127.0.0.1:{smtp_port}",
        "BACKCHANNEL_EMAIL_FROM": "Bench Support <support@bench.test>",
        **MAIL_SETTINGS,
    }


class Inbox:
    """What the SMTP server on loopback received: (arrival time, recipients, raw message)."""

    def __init__(self) -> None:
        self.received: list[tuple[float, list[str], bytes]] = []
        self.lock = threading.Lock()
        self.port = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's name
        t = now()
        with self.lock:
            self.received.append((t, list(envelope.rcpt_tos), bytes(envelope.content)))
        return "250 OK"

    def count(self) -> int:
        with self.lock:
            return len(self.received)


@contextlib.contextmanager
def smtp_inbox() -> Iterator[Inbox]:
    """An SMTP server on 127.0.0.1 (aiosmtpd, a thread of this process), stopped on the way out."""
    from aiosmtpd.controller import Controller

    inbox = Inbox()
    inbox.port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=inbox.port)
    controller.start()
    try:
        yield inbox
    finally:
        controller.stop()


# -- posting -----------------------------------------------------------------------------


async def post_all(server_url: str, token: str, jobs: list[tuple[str, list[tuple[str, bytes]]]],
                   sent: dict[str, float]) -> Counter[int]:  # fmt: skip
    """For each job ``(key, requests)``, send its POSTs one after the other, ``CONCURRENCY`` jobs
    at a time on keep-alive connections; ``sent[key]``: when its last POST was sent. Returns the
    statuses (0: the connection failed)."""
    host, port = host_port(server_url)
    headers = f"Authorization: Bearer {token}\r\n"
    statuses: Counter[int] = Counter()
    queue = iter(jobs)

    async def worker() -> None:
        conn = Connection(host, port)
        try:
            for key, requests in queue:
                for path, body in requests:
                    sent[key] = now()
                    try:
                        statuses[(await conn.request("POST", path, body, headers)).status] += 1
                    except HttpError:
                        statuses[0] += 1
        finally:
            await conn.close()

    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return statuses


async def wait_until(done: Callable[[], bool], timeout: float = WAIT_SECONDS) -> None:
    deadline = now() + timeout
    while not done() and now() < deadline:
        await asyncio.sleep(0.02)


def reply_body(agent_id: str, text: str) -> bytes:
    body = {"actor": {"type": "agent", "id": agent_id}, "message_parts": [{"text": {"content": text}}]}
    return json.dumps(body).encode()


def ok_statuses(statuses: Counter[int]) -> bool:
    return all(200 <= s < 300 for s in statuses)


# -- handover ----------------------------------------------------------------------------


class Widgets:
    """One socket per conversation; each frame sorted as it arrives: ``handover`` (handed to
    a human, nobody assigned yet), ``assigned`` (an agent took it), ``reply`` (an agent's
    message), ``other``."""

    def __init__(self) -> None:
        self.arrivals: dict[str, dict[str, list[float]]] = {}
        self.counts: Counter[str] = Counter()

    def listener(self, conversation_id: str) -> Callable[[WireSocket, str, float], None]:
        got = self.arrivals.setdefault(conversation_id, {"handover": [], "assigned": [], "reply": [], "other": []})

        def on_text(sock: WireSocket, text: str, t: float) -> None:
            frame = json.loads(text)
            kind = "other"
            if frame.get("type") == "conversation" and frame["conversation"].get("handled_by") == "human":
                kind = "assigned" if frame["conversation"].get("assignee") else "handover"
            elif frame.get("type") == "message" and frame["message"]["actor"]["type"] == "agent":
                kind = "reply"
            got[kind].append(t)
            self.counts[kind] += 1

        return on_text

    def delays(self, kind: str, sent: dict[str, float]) -> list[float]:
        return [got[kind][0] - sent[cid] for cid, got in self.arrivals.items() if got[kind] and cid in sent]

    def last(self, kind: str) -> float:
        return max((t for got in self.arrivals.values() for t in got[kind]), default=now())

    def once(self, kind: str) -> int:
        return sum(1 for got in self.arrivals.values() if len(got[kind]) == 1)

    def have(self, kinds: tuple[str, ...], count: int) -> bool:
        return all(self.counts[k] >= count for k in kinds)

    def extra(self, kind: str) -> int:
        return sum(max(0, len(got[kind]) - 1) for got in self.arrivals.values())


async def handover_run(server_url: str, tenant: Tenant, agents: list[str], on_event: OnEvent) -> dict[str, Any]:
    host, port = host_port(server_url)
    widgets = Widgets()
    sockets: list[WireSocket] = []
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
    path = f"/widget/v1/ws?widget_key={tenant.widget_key}"

    async def connect(i: int, w: dict[str, Any]) -> None:
        sock = WireSocket(widgets.listener(w["conversation_id"]))
        sockets.append(sock)
        auth = {"type": "auth", "token": w["session_token"], "conversation_id": w["conversation_id"]}
        async with gate:
            with contextlib.suppress(Exception):  # counted below: a socket that did not open
                await sock.open(host, port, path, ORIGIN, source_address(i), auth)

    t0 = now()
    await asyncio.gather(*(connect(i, w) for i, w in enumerate(tenant.widgets)))
    opened = sum(1 for s in sockets if s.opened)
    out: dict[str, Any] = {"conversations": len(tenant.widgets), "connected": opened,
                           "connect_seconds": round(now() - t0, 2)}  # fmt: skip
    cids = [w["conversation_id"] for w in tenant.widgets]
    n = len(cids)
    ok = True
    try:
        await asyncio.sleep(0.5)
        steps = {
            "handover": [(cid, [(f"/api/v1/conversations/{cid}/handover",
                                 b'{"to": "human", "reason": "customer_asked"}')]) for cid in cids],
            "reply": [(cid, [(f"/api/v1/conversations/{cid}/messages",
                              reply_body(agents[i % len(agents)], f"Hello, I'm here to help ({i})."))])
                      for i, cid in enumerate(cids)],
        }  # fmt: skip
        for step, jobs in steps.items():
            sent: dict[str, float] = {}
            on_event({"event": "phase_start", "name": step})
            t0 = now()
            statuses = await post_all(server_url, tenant.token, jobs, sent)
            expect = ("handover",) if step == "handover" else ("reply", "assigned")
            await wait_until(partial(widgets.have, expect, opened))
            on_event({"event": "phase", "name": step})
            got = sum(1 for a in widgets.arrivals.values() if a[step])
            ok &= ok_statuses(statuses)
            out[step] = {
                "statuses": {str(k): v for k, v in statuses.items()},
                "delivered": got,
                "per_s": round(got / max(1e-6, widgets.last(step) - t0), 1),
                "delay_ms": percentiles(widgets.delays(step, sent)),
            }
        await asyncio.sleep(0.5)  # a frame sent twice would have arrived by now
    finally:
        closing = asyncio.Semaphore(256)

        async def close(sock: WireSocket) -> None:
            async with closing:
                await sock.close()

        try:
            await asyncio.wait_for(asyncio.gather(*(close(s) for s in sockets)), 30)
        except TimeoutError:
            for s in sockets:
                s.abort()
    out["once"] = {k: widgets.once(k) for k in ("handover", "assigned", "reply")}
    out["duplicates"] = sum(widgets.extra(k) for k in ("handover", "assigned", "reply"))
    out["other_frames"] = widgets.counts["other"]
    every = opened == n and all(v == n for v in out["once"].values())
    out["exactly_once"] = bool(ok and every and not out["duplicates"])
    return out


def measure_handover(server_url: str, tenant: Tenant, agents: list[str], on_event: OnEvent) -> dict[str, Any]:
    return asyncio.run(asyncio.wait_for(handover_run(server_url, tenant, agents, on_event), 180))


# -- offline email ----------------------------------------------------------------------


async def email_run(server_url: str, token: str, addresses: dict[str, str], agent: str, inbox: Inbox,
                    on_event: OnEvent) -> dict[str, Any]:  # fmt: skip
    window = float(MAIL_SETTINGS["BACKCHANNEL_EMAIL_BATCH_SECONDS"])
    poll = float(MAIL_SETTINGS["BACKCHANNEL_EMAIL_POLL_SECONDS"])
    m = len(addresses)
    texts = {cid: (f"Your card is on its way ({cid}).", f"It should arrive on Thursday ({cid}).") for cid in addresses}
    jobs = [(cid, [(f"/api/v1/conversations/{cid}/messages", reply_body(agent, text)) for text in pair])
            for cid, pair in texts.items()]  # fmt: skip
    sent: dict[str, float] = {}
    on_event({"event": "phase_start", "name": "replies"})
    statuses = await post_all(server_url, token, jobs, sent)
    on_event({"event": "phase", "name": "replies"})
    on_event({"event": "phase_start", "name": "emails"})
    # One instance sends one email at a time (~28/s here): allow 10/s, and never less than WAIT_SECONDS.
    await wait_until(lambda: inbox.count() >= m, timeout=window + max(WAIT_SECONDS, m / 10))
    on_event({"event": "phase", "name": "emails"})
    await asyncio.sleep(window + 3 * poll + 0.5)  # a second email for a conversation would be out by now
    with inbox.lock:
        received = list(inbox.received)
    by_address = {address: cid for cid, address in addresses.items()}
    per: Counter[str] = Counter()
    delays, holding = [], 0
    for t, rcpts, raw in received:
        cid = by_address.get(rcpts[0]) if len(rcpts) == 1 else None
        if cid is None:
            continue
        per[cid] += 1
        if per[cid] == 1:
            delays.append(t - sent[cid])
            message = email.message_from_bytes(raw, policy=email.policy.default)
            body = message.get_body(("plain",))
            text = body.get_content() if body is not None else ""
            holding += all(reply in text for reply in texts[cid])
    arrivals = sorted(t for t, _, _ in received)
    span = arrivals[-1] - arrivals[0] if len(arrivals) > 1 else 0.0
    return {
        "conversations": m,
        "replies": 2 * m,
        "statuses": {str(k): v for k, v in statuses.items()},
        "emails": len(received),
        "one_each": sum(1 for cid in addresses if per[cid] == 1),
        "holding_both": holding,
        "per_s": round((len(arrivals) - 1) / span, 1) if span else None,
        "delay_ms": percentiles(delays),
        "over_window_ms": percentiles([max(0.0, d - window) for d in delays]),
        "window_s": window,
        "poll_s": poll,
        "exactly_once": bool(ok_statuses(statuses) and len(received) == m and holding == m
                             and all(per[cid] == 1 for cid in addresses)),  # fmt: skip
    }


def measure_email(server_url: str, token: str, addresses: dict[str, str], agent: str, inbox: Inbox,
                  on_event: OnEvent) -> dict[str, Any]:  # fmt: skip
    return asyncio.run(asyncio.wait_for(email_run(server_url, token, addresses, agent, inbox, on_event), 180))

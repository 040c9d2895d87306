"""Faults on the delivery side: the server killed mid-burst, and webhook receivers that misbehave.

Promises: every message the API acknowledged is stored once, with gap-free ``seq``; after a
``kill -9`` and restart, a widget that resumes from the last ``seq`` it holds ends up with every
stored message exactly once, and every ``message.created`` event reaches the webhook receiver.
A receiver that times out, resets the connection or answers garbage is retried and logged,
and never delays the healthy endpoints.
"""

from __future__ import annotations

import json
import socket
import socketserver
import struct
import threading
import time
from functools import partial
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.conftest import LiveServer, Tenant
from tests.factories import messages
from tests.receivers import Receiver, eventually
from tests.webhooks.test_webhooks import add_endpoint, deliveries

ORIGIN = "http://shop.test"


class Visitor:
    """A scripted widget that records every message ``seq`` it is shown, in order."""

    def __init__(self, server: LiveServer, tenant: Tenant) -> None:
        self.server, self.tenant = server, tenant
        self.session = httpx.post(
            server.url + "/widget/v1/session", json={"widget_key": tenant.widget_key}, headers={"Origin": ORIGIN}
        ).json()
        self.seqs: list[int] = []
        self.conversation_id: str | None = None
        self.ws: ClientConnection | None = None
        self.reader: threading.Thread | None = None

    def connect(self) -> None:
        connected = threading.Event()
        self.reader = threading.Thread(target=self._run, args=(connected,), daemon=True)
        self.reader.start()
        assert connected.wait(15), "could not connect"

    def _run(self, connected: threading.Event) -> None:
        url = self.server.ws_url + self.session["socket_path"]
        auth: dict[str, Any] = {"type": "auth", "token": self.session["session_token"]}
        if self.conversation_id and self.seqs:
            auth |= {"conversation_id": self.conversation_id, "last_seq": self.seqs[-1]}
        try:
            with connect(url, origin=ORIGIN) as ws:  # type: ignore[arg-type,call-overload]
                self.ws = ws
                ws.send(json.dumps(auth))
                ws.send(json.dumps({"type": "open"}))
                connected.set()
                for raw in ws:
                    frame = json.loads(raw)
                    if frame["type"] == "conversation":
                        self.conversation_id = frame["conversation"]["id"]
                    elif frame["type"] == "message":
                        self.seqs.append(frame["message"]["seq"])
                    elif frame["type"] == "ping":
                        ws.send(json.dumps({"type": "pong"}))
        except (ConnectionClosed, OSError):
            pass

    def wait_closed(self) -> None:
        assert self.reader is not None
        self.reader.join(15)
        assert not self.reader.is_alive(), "the socket of a killed server never closed"


@pytest.mark.slow
def test_kill_9_mid_burst_loses_no_message_no_widget_delivery_and_no_webhook(server: LiveServer, tenant: Tenant) -> None:
    with Receiver() as rx:
        with server.client(tenant) as api:
            add_endpoint(api, rx.url, events=["message.created"])
        visitor = Visitor(server, tenant)
        visitor.connect()
        conversation_id = eventually(lambda: visitor.conversation_id)

        acknowledged: list[str] = []
        stop = threading.Event()

        def burst(worker: int) -> None:
            with httpx.Client(base_url=server.url, headers=tenant.headers, timeout=5) as c:
                for i in range(1000):
                    if stop.is_set():
                        return
                    try:
                        r = c.post(
                            f"/api/v1/conversations/{conversation_id}/messages",
                            json={"message_parts": [{"text": {"content": f"w{worker}-{i}"}}]},
                        )
                    except httpx.HTTPError:
                        return  # the server died under us: this one may or may not be stored
                    if r.status_code == 201:
                        acknowledged.append(r.json()["id"])

        workers = [threading.Thread(target=burst, args=(n,)) for n in range(4)]
        for w in workers:
            w.start()
        eventually(lambda: len(acknowledged) >= 40 and len(rx.received()) >= 10, timeout=60, interval=0.01)
        server.kill()  # SIGKILL: no shutdown, no flush, sockets and deliveries cut mid-flight
        stop.set()
        for w in workers:
            w.join(10)
        visitor.wait_closed()
        before_kill = list(visitor.seqs)

        server.start()
        with server.client(tenant) as api:
            for i in range(5):  # written while the widget is away: only the resume can bring them
                r = api.post(
                    f"/api/v1/conversations/{conversation_id}/messages",
                    json={"message_parts": [{"text": {"content": f"after restart {i}"}}]},
                )
                assert r.status_code == 201
                acknowledged.append(r.json()["id"])
            visitor.connect()  # resumes from the last seq it holds, as widget.js does
            stored = messages(api, conversation_id)
            seqs = [m["seq"] for m in stored]
            assert seqs == list(range(1, len(seqs) + 1))  # gap-free and each once
            assert set(acknowledged) <= {m["id"] for m in stored}  # every 201 survived the kill
            eventually(lambda: len(visitor.seqs) >= len(seqs), timeout=30)
            time.sleep(0.5)  # a duplicate, if the server sent one, would arrive now
            assert visitor.seqs == seqs, (before_kill, visitor.seqs)  # by seq, none missed or twice
            stored_ids = {m["id"] for m in stored}
            delivered = eventually(
                lambda: (got := {r.json["data"]["message"]["id"] for r in rx.succeeded()}) >= stored_ids and got,
                timeout=60,
            )
            assert delivered == stored_ids
        assert visitor.ws is not None
        visitor.ws.close()


# -- misbehaving receivers ---------------------------------------------------------------------


class RawReceiver(socketserver.ThreadingTCPServer):
    """A TCP server that misbehaves as told: ``hang``, ``reset``, ``garbage``, or ``ok``."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.ids: list[str] = []
        self.ok_ids: list[str] = []
        self.release = threading.Event()
        receiver = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                conn: socket.socket = self.request
                conn.settimeout(20)
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    data += chunk
                head, _, body = data.partition(b"\r\n\r\n")
                headers = dict(
                    line.split(": ", 1) for line in head.decode("latin-1").split("\r\n")[1:] if ": " in line
                )
                headers = {k.lower(): v for k, v in headers.items()}
                length = int(headers.get("content-length", "0"))
                while len(body) < length:
                    body += conn.recv(65536)
                receiver.ids.append(headers.get("webhook-id", "?"))
                mode = receiver.mode
                if mode == "hang":
                    receiver.release.wait(20)  # past the sender's timeout
                elif mode == "reset":
                    # SO_LINGER 0: close with a TCP RST instead of a FIN.
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                elif mode == "garbage":
                    conn.sendall(b"\x00\xffTHIS IS NOT HTTP\r\n\r\n")
                else:
                    conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
                    receiver.ok_ids.append(headers.get("webhook-id", "?"))
                conn.close()

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hook"

    def stop(self) -> None:
        self.release.set()
        self.shutdown()
        self.server_close()


@pytest.mark.slow
def test_receivers_that_time_out_reset_or_answer_garbage_are_retried_logged_and_isolated(
    server_factory: Any,
) -> None:
    srv: LiveServer = server_factory(env={"BACKCHANNEL_WEBHOOK_TIMEOUT_SECONDS": "1"})
    tenant: Tenant = srv.new_tenant()
    bad = {mode: RawReceiver(mode) for mode in ("hang", "reset", "garbage")}
    try:
        with Receiver() as good, srv.client(tenant) as api:
            endpoints = {mode: add_endpoint(api, r.url, events=["user.created"]) for mode, r in bad.items()}
            add_endpoint(api, good.url, events=["user.created"])
            users = [api.post("/api/v1/users", json={"name": f"u{i}"}).json()["id"] for i in range(5)]

            # The healthy endpoint gets all five, once each, while the others are failing (several
            # at once per endpoint: the order they arrive in is not promised).
            got = good.wait_count(5, timeout=20)
            assert sorted(r.json["data"]["user"]["id"] for r in got) == sorted(users)

            # Each bad one is retried (same webhook-id again) and every attempt is logged with why.
            def retried(r: RawReceiver) -> bool:
                return len(r.ids) > len(set(r.ids))

            def failing_deliveries(mode: str) -> list[dict[str, Any]]:
                return [d for d in deliveries(api, endpoints[mode]["id"]) if d["attempts"] >= 2]

            for mode, receiver in bad.items():
                eventually(partial(retried, receiver), timeout=30)
                failing = eventually(partial(failing_deliveries, mode), timeout=30)
                log = api.get(f"/api/v1/webhook-deliveries/{failing[0]['id']}").json()["attempt_log"]
                assert len(log) >= 2 and all(a["error"] and not a["status_code"] for a in log), (mode, log)

            # Once they behave, every event arrives: nothing was dropped while they misbehaved.
            for receiver in bad.values():
                receiver.mode = "ok"
                receiver.release.set()
            for mode, receiver in bad.items():
                event_ids = {d["event_id"] for d in deliveries(api, endpoints[mode]["id"])}
                assert len(event_ids) == 5
                eventually(partial(lambda r, e: set(r.ok_ids) >= e, receiver, event_ids), timeout=60)
    finally:
        for receiver in bad.values():
            receiver.stop()
    assert "unhandled" not in srv.log()

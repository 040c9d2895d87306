"""The database going away: a held SQLite write lock, and a PostgreSQL that refuses connections.

Promise: while the database cannot be written, writes answer ``503`` with ``Retry-After`` in
the one error shape (never a 500, never a hang), nothing is half-written, and once the
database is back everything works again without a restart — webhooks and sockets included.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from websockets.sync.client import connect

from tests.conftest import LiveServer, Tenant, free_port
from tests.factories import assert_error, make_conversation, messages, post_text
from tests.receivers import Receiver

ORIGIN = "http://shop.test"


@contextmanager
def write_lock_held(server: LiveServer) -> Iterator[None]:
    """Hold SQLite's write lock from this process, as a long migration or backup would."""
    path = server.database_url.removeprefix("sqlite:///")
    conn = sqlite3.connect(path, timeout=5, isolation_level=None)
    try:
        conn.execute("BEGIN EXCLUSIVE")
        yield
    finally:
        conn.execute("ROLLBACK")
        conn.close()


def test_a_locked_sqlite_answers_503_writes_nothing_and_recovers_without_restart(server_factory: Any) -> None:
    srv: LiveServer = server_factory(env={"BACKCHANNEL_DATABASE_BUSY_TIMEOUT_SECONDS": "0.5"})
    tenant: Tenant = srv.new_tenant()
    with Receiver() as rx, srv.client(tenant) as api:
        hook = api.post("/api/v1/webhook-endpoints", json={"url": rx.url, "events": ["message.created"]})
        assert hook.status_code == 201, hook.text
        conv = make_conversation(api)
        post_text(api, conv["id"], "before").raise_for_status()
        rx.wait_count(1)
        session = httpx.post(
            srv.url + "/widget/v1/session", json={"widget_key": tenant.widget_key}, headers={"Origin": ORIGIN}
        ).json()
        with connect(srv.ws_url + session["socket_path"], origin=ORIGIN) as ws:  # type: ignore[arg-type,call-overload]
            ws.send(json.dumps({"type": "auth", "token": session["session_token"]}))

            reader = srv.token_for(tenant.workspace_id, ["read"])  # never used yet: its first use is recorded
            with write_lock_held(srv):
                # Writes: 503 + Retry-After, in the error shape, on every kind of write.
                for r in (
                    post_text(api, conv["id"], "during"),
                    api.post("/api/v1/users", json={"name": "during"}),
                    api.patch(f"/api/v1/conversations/{conv['id']}", json={"status": "resolved"}),
                    api.post("/api/v1/conversations", json={"user_id": conv["user_id"]}),
                ):
                    err = assert_error(r, 503, "unavailable")
                    assert int(r.headers["retry-after"]) >= 1, err
                # Reads still answer: WAL readers never wait for the writer.
                assert api.get(f"/api/v1/conversations/{conv['id']}").status_code == 200
                # ... even for a token whose last_used_at is due for an update (best effort).
                fresh = httpx.get(f"{srv.url}/api/v1/conversations", headers={"Authorization": f"Bearer {reader}"})
                assert fresh.status_code == 200, fresh.text

            # Nothing of the refused writes was stored, and the seq has no gap.
            assert [m["message_parts"][0]["text"]["content"] for m in messages(api, conv["id"])] == ["before"]
            assert "during" not in [u["name"] for u in api.get("/api/v1/users").json()["data"]]
            assert api.get(f"/api/v1/conversations/{conv['id']}").json()["status"] == "open"

            # Recovered, without a restart: the write path, the webhook dispatcher and the socket.
            after = post_text(api, conv["id"], "after")
            assert after.status_code == 201, after.text
            assert after.json()["seq"] == 2
            got = rx.wait_count(2)
            assert [r.json["data"]["message"]["seq"] for r in got] == [1, 2]

            def frames() -> Iterator[dict[str, Any]]:
                while True:
                    yield json.loads(ws.recv(timeout=10))

            # The visitor's socket is not this conversation's; an agent message to theirs arrives.
            for frame in frames():
                if frame["type"] == "ready":
                    break
            ws.send(json.dumps({"type": "open"}))
            for frame in frames():
                if frame["type"] == "conversation":
                    mine = frame["conversation"]["id"]
                    break
            post_text(api, mine, "to the visitor").raise_for_status()
            for frame in frames():
                if frame["type"] == "message":
                    assert frame["message"]["message_parts"][0]["text"]["content"] == "to the visitor"
                    break
    assert "unhandled" not in srv.log()


def test_writes_queued_behind_a_short_lock_succeed(server_factory: Any) -> None:
    """A lock shorter than the busy timeout is waited out: no 503 for a blip."""
    srv: LiveServer = server_factory(env={"BACKCHANNEL_DATABASE_BUSY_TIMEOUT_SECONDS": "5"})
    tenant: Tenant = srv.new_tenant()
    with srv.client(tenant) as api:
        conv = make_conversation(api)
        released = threading.Event()
        with write_lock_held(srv):
            result: list[httpx.Response] = []
            worker = threading.Thread(target=lambda: result.append(post_text(api, conv["id"], "queued")))
            worker.start()
            released.wait(0.5)  # the request is waiting on the lock now
        worker.join(10)
        assert result and result[0].status_code == 201, result


def test_postgres_refusing_connections_is_503_not_500(server_factory: Any) -> None:
    closed = free_port()  # nothing listens here: every connection is refused
    srv: LiveServer = server_factory(database_url=f"postgresql://postgres@127.0.0.1:{closed}/backchannel")
    ready = httpx.get(srv.url + "/readyz")
    assert ready.status_code == 503 and ready.json()["checks"]["database"] is False
    headers = {"Authorization": "Bearer bch_whatever"}
    for method, path, body in [
        ("GET", "/api/v1/conversations", None),
        ("POST", "/api/v1/users", {"name": "x"}),
        ("PATCH", "/api/v1/widget-settings", {"greeting": "hi"}),
    ]:
        r = httpx.request(method, srv.url + path, json=body, headers=headers)
        err = assert_error(r, 503, "unavailable")
        assert int(r.headers["retry-after"]) >= 1, err
    session = httpx.post(srv.url + "/widget/v1/session", json={"widget_key": "wk_x"}, headers={"Origin": ORIGIN})
    assert session.status_code == 503, session.text
    assert httpx.get(srv.url + "/healthz").status_code == 200  # the process itself is fine
    log = srv.log()
    assert "unhandled" not in log and "Traceback" not in log, log[-4000:]

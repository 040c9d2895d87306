"""Agents' availability (SPEC §11): an open Inbox keeps its agent present; all consoles closed a
while makes them away without anyone writing it; routing follows."""

from __future__ import annotations

import json
from datetime import timedelta

import httpx
from websockets.sync.client import connect

from app.ids import utcnow
from app.store.runner import Tx
from tests.conftest import LiveServer, Tenant
from tests.console.support import console_client, make_console_user
from tests.receivers import eventually


def test_an_open_console_keeps_its_agent_available(server: LiveServer, tenant: Tenant, api: httpx.Client) -> None:
    console = console_client(server, make_console_user(server, tenant, name="Maya"))
    maya = next(a for a in api.get("/api/v1/agents").json()["data"] if a["name"] == "Maya")
    assert maya["status"] == "online"  # just invited: present for a while

    def consoles_closed_long_ago(tx: Tx) -> None:
        stale = utcnow() - timedelta(hours=1)
        tx.db.run("UPDATE agent SET last_seen_at = ? WHERE id = ?", (tx.dialect.ts(stale), maya["id"]))

    server.in_tx(consoles_closed_long_ago)
    assert api.get(f"/api/v1/agents/{maya['id']}").json()["status"] == "away"
    conv = api.post("/api/v1/conversations", json={"user_id": api.post("/api/v1/users", json={}).json()["id"]}).json()
    waiting = api.post(f"/api/v1/conversations/{conv['id']}/handover", json={"to": "human"}).json()
    assert waiting["assignee_id"] is None

    cookie = f"bc_console={console.cookies['bc_console']}"
    with connect(
        server.ws_url + "/console/live", origin=server.url, additional_headers={"cookie": cookie}, proxy=None
    ) as ws:
        assert json.loads(ws.recv(timeout=10))["type"] == "hello"
        eventually(lambda: api.get(f"/api/v1/agents/{maya['id']}").json()["status"] == "online")
        conv = api.post("/api/v1/conversations", json={"user_id": conv["user_id"]}).json()
        routed = api.post(f"/api/v1/conversations/{conv['id']}/handover", json={"to": "human"}).json()
        assert routed["assignee_id"] == maya["id"]

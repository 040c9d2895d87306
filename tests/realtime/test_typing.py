"""Typing is one action: the REST endpoint, the widget socket and the console's live socket all
publish the event ``conversations.typing_event`` makes, so every listener sees one shape.

The console's live socket is the witness: it forwards a typing event's whole ``data``
(conversation, actor, on) as a hint, whichever origin published it.
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
from websockets.sync.client import ClientConnection, connect

from tests.conftest import LiveServer, Tenant
from tests.console.support import console_client, make_console_user
from tests.realtime.test_realtime import WidgetClient, opened, widget  # noqa: F401 (the fixture)


def next_typing(ws: ClientConnection, timeout: float = 10) -> dict[str, Any]:
    """The console's next typing hint (other hints, such as the conversation's own, are skipped)."""
    deadline = time.monotonic() + timeout
    while True:
        hint = json.loads(ws.recv(timeout=max(0.01, deadline - time.monotonic())))
        if hint["type"] == "conversation.typing":
            return hint  # type: ignore[no-any-return]


def test_typing_from_the_api_the_widget_and_the_console_is_one_event(
    widget: Any,  # noqa: F811
    server: LiveServer,
    tenant: Tenant,
    api: httpx.Client,
) -> None:
    console = console_client(server, make_console_user(server, tenant, name="Maya"))
    maya = next(a for a in api.get("/api/v1/agents").json()["data"] if a["name"] == "Maya")
    customer: WidgetClient = widget(server, tenant)
    conversation_id = opened(customer)
    cookie = f"bc_console={console.cookies['bc_console']}"
    with connect(
        server.ws_url + "/console/live", origin=server.url, additional_headers={"cookie": cookie}, proxy=None
    ) as ws:
        assert json.loads(ws.recv(timeout=10))["type"] == "hello"

        # The agent types in the console, then the same agent's typing is posted through the API.
        ws.send(json.dumps({"type": "typing", "conversation_id": conversation_id, "on": True}))
        from_console = next_typing(ws)
        widget_saw_console = customer.expect("typing")
        r = api.post(
            f"/api/v1/conversations/{conversation_id}/typing",
            json={"actor": {"type": "agent", "id": maya["id"]}, "on": True},
        )
        assert r.status_code == 204, r.text
        from_api = next_typing(ws)
        widget_saw_api = customer.expect("typing")
        agent_typing = {
            "type": "conversation.typing",
            "conversation_id": conversation_id,
            "actor": {"type": "agent", "id": maya["id"], "name": "Maya"},
            "on": True,
        }
        assert from_console == from_api == agent_typing
        assert widget_saw_console == widget_saw_api
        assert widget_saw_api["actor"] == {"type": "agent", "name": "Maya"} and widget_saw_api["on"] is True

        # The customer types in the widget: the same event, with the customer as the actor.
        customer.send({"type": "typing", "on": False})
        from_widget = next_typing(ws)
        assert from_widget == agent_typing | {
            "actor": {"type": "user", "id": customer.session["user_id"]},
            "on": False,
        }

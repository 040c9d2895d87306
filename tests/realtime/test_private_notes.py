"""Private notes (SPEC §11) never reach the widget: not live, not in the history a socket reads on
connect, not after a gap; and the public messages around them arrive once each, in order."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import LiveServer, Tenant
from tests.realtime.test_realtime import bot_says, opened, widget  # noqa: F401  (the fixture)


def note(api: httpx.Client, conversation_id: str, content: str, actor: dict[str, Any]) -> dict[str, Any]:
    r = api.post(
        f"/api/v1/conversations/{conversation_id}/messages",
        json={"actor": actor, "message_parts": [{"text": {"content": content}}], "private": True},
    )
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def test_the_widget_never_receives_a_private_note(
    widget: Any, server: LiveServer, tenant: Tenant, api: httpx.Client  # noqa: F811
) -> None:
    human = api.post("/api/v1/agents", json={"name": "Ann", "kind": "human"}).json()
    client = widget(server, tenant)
    conversation_id = opened(client)
    first = bot_says(api, conversation_id, "Hello from the bot")
    note(api, conversation_id, "SECRET-NOTE-1 card flagged", {"type": "agent", "id": human["id"]})
    note(api, conversation_id, "SECRET-NOTE-2 from the bot", {"type": "bot"})
    second = bot_says(api, conversation_id, "Anything else?")
    live = client.messages_until_quiet()
    assert [m["id"] for m in live] == [first["id"], second["id"]]
    assert all(not m["private"] for m in live)

    # A fresh connection reads the history from the store: no note there either.
    again = widget(server, tenant, visitor_token=client.session.get("visitor_token"))
    again.connect()
    history = again.messages_until_quiet()
    assert [m["id"] for m in history] == [first["id"], second["id"]]
    assert "SECRET-NOTE" not in str(again.seen) and "SECRET-NOTE" not in str(client.seen)

    # Resuming just before the notes: the next public message, nothing else.
    resumed = widget(server, tenant, visitor_token=client.session.get("visitor_token"))
    resumed.connect(conversation_id=conversation_id, last_seq=first["seq"])
    assert [m["id"] for m in resumed.messages_until_quiet()] == [second["id"]]
    third = bot_says(api, conversation_id, "Still there?")
    assert [m["id"] for m in resumed.messages_until_quiet()] == [third["id"]]
    assert "SECRET-NOTE" not in str(resumed.seen)

    # The API and webhooks carry notes, marked private.
    listed = api.get(f"/api/v1/conversations/{conversation_id}/messages").json()["data"]
    assert [m["private"] for m in listed] == [False, True, True, False, False]

"""``/api/v1/agents``: the default bot is listed, and any agent can be renamed and given an
avatar with ``PATCH /agents/{id}`` (issue 22); open widgets show the new name at once."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import httpx
import pytest

from tests.conftest import InProcessServer, LiveServer, Tenant
from tests.factories import assert_error, openapi_spec
from tests.realtime.test_realtime import WidgetClient, bot_says, opened


@pytest.fixture
def widget() -> Iterator[Callable[..., WidgetClient]]:
    with ExitStack() as stack:
        yield lambda server, tenant, **kw: WidgetClient(stack, server, tenant, **kw)


def default_bot(api: httpx.Client) -> dict[str, Any]:
    (bot,) = [a for a in api.get("/api/v1/agents").json()["data"] if a["is_default_bot"]]
    return bot  # type: ignore[no-any-return]


def test_the_default_bot_is_renamed_and_given_an_avatar(app_server: InProcessServer, app_api: httpx.Client) -> None:
    bot = default_bot(app_api)
    assert bot["name"] == "Bot" and bot["kind"] == "bot" and bot["avatar_url"] is None
    url = f"/api/v1/agents/{bot['id']}"
    r = app_api.patch(url, json={"name": "Pizza Pete", "avatar_url": "https://pizza.example/pete.png"})
    assert r.status_code == 200, r.text
    assert r.json() == {**bot, "name": "Pizza Pete", "avatar_url": "https://pizza.example/pete.png"}
    assert app_api.get(url).json()["name"] == "Pizza Pete"
    # Only what is sent changes; null removes the avatar.
    assert app_api.patch(url, json={"avatar_url": None}).json() == {**bot, "name": "Pizza Pete"}
    # A bot message without actor.id speaks as the renamed default bot.
    conv = app_api.post("/api/v1/conversations", json={"user_id": app_api.post("/api/v1/users", json={}).json()["id"]})
    sent = app_api.post(f"/api/v1/conversations/{conv.json()['id']}/messages",
                        json={"actor": {"type": "bot"}, "message_parts": [{"text": {"content": "Hi"}}]})
    assert sent.json()["actor"] == {"type": "bot", "id": bot["id"]}


def test_agent_patches_are_validated_and_stay_in_their_workspace(
    app_server: InProcessServer, app_tenant: Tenant, app_api: httpx.Client
) -> None:
    bot = default_bot(app_api)
    url = f"/api/v1/agents/{bot['id']}"
    for body, field in [({"name": ""}, "name"), ({"name": None}, "name"), ({"avatar_url": "javascript:alert(1)"},
                        "avatar_url"), ({"kind": "human"}, "kind"), ({"name": "x" * 121}, "name")]:
        error = assert_error(app_api.patch(url, json=body), 422)
        assert error["details"][0]["field"] == field, (body, error)
    other = app_server.new_tenant("Other")
    with app_server.client(other) as theirs:
        assert_error(theirs.patch(url, json={"name": "Mine now"}), 404)
    read_only = app_server.token_for(app_tenant.workspace_id, ["read"])
    assert_error(app_api.patch(url, json={"name": "x"}, headers={"Authorization": f"Bearer {read_only}"}), 403)
    assert app_api.get(url).json()["name"] == "Bot"
    op = openapi_spec(app_api)["paths"]["/api/v1/agents/{agent_id}"]["patch"]
    assert op["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/AgentPatch")


def test_open_widgets_show_the_new_name_with_the_next_message(
    widget: Any, server: LiveServer, tenant: Tenant, api: httpx.Client
) -> None:
    client = widget(server, tenant)
    conversation_id = opened(client)
    bot_says(api, conversation_id, "Hello")
    assert client.expect("message")["sender"]["name"] == "Bot"
    bot = default_bot(api)
    api.patch(f"/api/v1/agents/{bot['id']}", json={"name": "Pizza Pete", "avatar_url": "https://pizza.example/p.png"})
    bot_says(api, conversation_id, "Pizza?")
    sender = client.expect("message")["sender"]
    assert sender == {"id": bot["id"], "name": "Pizza Pete", "kind": "bot", "avatar_url": "https://pizza.example/p.png"}

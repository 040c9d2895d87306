"""Inputs are judged before a write is queued, never in the writer (issue 17.5).

The writer is one lane of group commit: whatever runs in it delays every write batched
with it. These tests count the writes the app queues (a spy around the real ``Runner.write``:
every write still runs for real) while refused requests come in. Authentication still
comes first: a refused body from a caller without a valid token, or without the scope, is
a 401/403, never a 422 that describes the body.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import InProcessServer
from tests.factories import assert_error


class CountedApp:
    """An in-process app whose queued writes are counted, with a token per kind of caller."""

    def __init__(self, server: InProcessServer) -> None:
        self.server = server
        tenant = server.new_tenant()
        self.tokens = {
            "writer": server.token_for(tenant.workspace_id, ["read", "write"]),
            "reader": server.token_for(tenant.workspace_id, ["read"]),
            "unknown-token": "bch_not_a_token_at_all",
        }
        self.writes: list[str] = []
        assert server.app is not None
        runner = server.app.state.bc.runner
        real_write = runner.write

        async def counted(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
            self.writes.append(getattr(fn, "__qualname__", repr(fn)))
            return await real_write(fn, *args, **kwargs)

        runner.write = counted
        self.client = server.client()

    def as_(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"} if who in self.tokens else {}

    def conversation(self) -> str:
        user = self.client.post("/api/v1/users", json={}, headers=self.as_("writer")).json()
        r = self.client.post("/api/v1/conversations", json={"user_id": user["id"]}, headers=self.as_("writer"))
        return str(r.json()["id"])

    def post(self, path: str, body: Any, who: str) -> httpx.Response:
        if isinstance(body, bytes):
            return self.client.post(path, content=body, headers={**self.as_(who), "content-type": "application/json"})
        return self.client.post(path, json=body, headers=self.as_(who))


@pytest.fixture
def app(app_server_factory: Any) -> Iterator[CountedApp]:
    # http callbacks refused, as in production: one refusal below is the https check.
    counted = CountedApp(app_server_factory(env={"BACKCHANNEL_WEBHOOK_ALLOW_PRIVATE_NETWORKS": "false"}))
    with counted.client:
        yield counted


def _nested(depth: int) -> Any:
    value: Any = []
    for _ in range(depth):
        value = [value]
    return value


HTTP_FORM = {
    "message_parts": [
        {
            "web_view": {
                "label": "Pay",
                "form": {
                    "title": "Card",
                    "callback_url": "http://bot.example/forms",
                    "fields": [{"name": "card", "label": "Card number"}],
                },
            }
        }
    ]
}

REFUSED_MESSAGES: list[tuple[str, Any, int, str]] = [
    ("not JSON", b"{nope", 400, "invalid_json"),
    ("not an object", [1, 2], 422, "validation_failed"),
    ("unknown field", {"message_parts": [{"text": {"content": "hi"}}], "nope": 1}, 422, "validation_failed"),
    ("empty message", {"message_parts": []}, 422, "validation_failed"),
    ("too deep", {"message_parts": [{"text": {"content": "x"}}], "x": _nested(40)}, 422, "json_too_deep"),
    ("form posting over http", HTTP_FORM, 422, "validation_failed"),
]


@pytest.mark.parametrize(("case", "body", "status", "code"), REFUSED_MESSAGES, ids=[r[0] for r in REFUSED_MESSAGES])
def test_a_refused_body_never_reaches_the_writer(app: CountedApp, case: str, body: Any, status: int, code: str) -> None:
    path = f"/api/v1/conversations/{app.conversation()}/messages"
    app.writes.clear()
    error = assert_error(app.post(path, body, "writer"), status, code)
    if case == "form posting over http":
        assert error["details"][0]["field"] == "message_parts.0.web_view.form.callback_url", error
    assert app.writes == [], f"{case}: queued {app.writes}"


@pytest.mark.parametrize(("who", "status"), [("nobody", 401), ("unknown-token", 401), ("reader", 403)])
def test_authentication_still_comes_before_the_body(app: CountedApp, who: str, status: int) -> None:
    """Without a valid token or the scope, every refused body is the 401/403: nothing about
    the body's schema, and nothing queued for the writer."""
    path = f"/api/v1/conversations/{app.conversation()}/messages"
    app.writes.clear()
    for case, body, _, _ in REFUSED_MESSAGES:
        r = app.post(path, body, who)
        assert_error(r, status)
        assert "message_parts" not in r.text, f"{case}: {r.text}"
    assert app.writes == []


def test_a_flood_of_refused_writes_queues_nothing_before_a_good_one(app: CountedApp) -> None:
    path = f"/api/v1/conversations/{app.conversation()}/messages"
    app.writes.clear()
    for n in range(60):
        _, body, status, _ = REFUSED_MESSAGES[n % len(REFUSED_MESSAGES)]
        assert app.post(path, body, "writer").status_code == status
    assert app.writes == []
    r = app.post(path, {"message_parts": [{"text": {"content": "hello"}}]}, "writer")
    assert r.status_code == 201, r.text
    assert len(app.writes) == 1, app.writes  # the good write alone: the refusals left nothing behind


def test_refused_creates_patches_and_queries_queue_no_write(app: CountedApp) -> None:
    c, writer = app.client, app.as_("writer")
    user = c.post("/api/v1/users", json={}, headers=writer).json()
    app.writes.clear()
    assert_error(c.post("/api/v1/users", json={"external_id": ""}, headers=writer), 422)
    assert_error(c.post("/api/v1/agents", json={"name": "B", "kind": "robot"}, headers=writer), 422)
    assert_error(c.patch(f"/api/v1/users/{user['id']}", json={"email": 5}, headers=writer), 422)
    r = c.post("/api/v1/conversations", json={"user_id": user["id"], "messages": [HTTP_FORM]}, headers=writer)
    assert assert_error(r, 422)["details"][0]["field"] == "messages.0.message_parts.0.web_view.form.callback_url"
    assert_error(c.get("/api/v1/conversations", params={"limit": 0}, headers=writer), 422)
    assert app.writes == []

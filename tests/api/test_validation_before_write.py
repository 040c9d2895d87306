"""Inputs are judged before a write is queued, never in the writer (issue 17.5).

The writer is one lane of group commit: whatever runs in it delays every write batched
with it. These tests count the writes an app queues (a spy around the real ``Runner.write``:
every write still runs for real) while refused requests come in, in-process on a fresh
migrated database. Authentication still comes first: a refused body from a caller without a
valid token, or without the scope, is a 401/403, never a 422 that describes the body.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.main import create_app
from app.settings import Settings
from app.store.engine import make_engine, session_scope
from app.store.runner import Tx
from app.tokens import create_token
from app.workspaces import create_workspace
from tests.conftest import migrated_sqlite
from tests.factories import assert_error


class App:
    """An in-process app whose queued writes are counted."""

    def __init__(self, client: httpx.AsyncClient, runner: Any, tokens: dict[str, str]) -> None:
        self.client = client
        self.tokens = tokens
        self.writes: list[str] = []
        real_write = runner.write

        async def counted(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
            self.writes.append(getattr(fn, "__qualname__", repr(fn)))
            return await real_write(fn, *args, **kwargs)

        runner.write = counted

    def as_(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"} if who in self.tokens else {}


@contextlib.asynccontextmanager
async def running_app(tmp_path: Path) -> AsyncIterator[App]:
    # A context manager the test enters itself, not an async fixture: the lifespan's task
    # groups must be left from the task that entered them.
    # http callbacks are refused, as in production: the form check below is the https one.
    settings = Settings(database_url=migrated_sqlite(tmp_path), env="test", webhook_allow_private_networks=False)
    engine = make_engine(settings)
    with session_scope(engine) as session:
        tx = Tx(session)
        ws = create_workspace(tx, "Acme")
        tokens = {
            "writer": create_token(tx, ws.id, "writer", ["read", "write"])[1],
            "reader": create_token(tx, ws.id, "reader", ["read"])[1],
        }
    engine.dispose()
    asgi = create_app(settings)
    async with asgi.router.lifespan_context(asgi):
        transport = httpx.ASGITransport(app=asgi)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield App(client, asgi.state.bc.runner, {**tokens, "unknown-token": "bch_not_a_token_at_all"})


async def _conversation(app: App) -> str:
    c = app.client
    user = (await c.post("/api/v1/users", json={}, headers=app.as_("writer"))).json()
    conv = (await c.post("/api/v1/conversations", json={"user_id": user["id"]}, headers=app.as_("writer"))).json()
    return str(conv["id"])


def _nested(depth: int) -> Any:
    value: Any = []
    for _ in range(depth):
        value = [value]
    return value


REFUSED_MESSAGES: list[tuple[str, Any, int, str]] = [
    ("not JSON", b"{nope", 400, "invalid_json"),
    ("not an object", [1, 2], 422, "validation_failed"),
    ("unknown field", {"message_parts": [{"text": {"content": "hi"}}], "nope": 1}, 422, "validation_failed"),
    ("empty message", {"message_parts": []}, 422, "validation_failed"),
    ("too deep", {"message_parts": [{"text": {"content": "x"}}], "x": _nested(40)}, 422, "json_too_deep"),
    (
        "form posting over http",
        {
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
        },
        422,
        "validation_failed",
    ),
]


async def _post(app: App, path: str, body: Any, headers: dict[str, str]) -> httpx.Response:
    if isinstance(body, bytes):
        return await app.client.post(path, content=body, headers={**headers, "content-type": "application/json"})
    return await app.client.post(path, json=body, headers=headers)


@pytest.mark.parametrize(("case", "body", "status", "code"), REFUSED_MESSAGES, ids=[r[0] for r in REFUSED_MESSAGES])
async def test_a_refused_body_never_reaches_the_writer(
    tmp_path: Path, case: str, body: Any, status: int, code: str
) -> None:
    async with running_app(tmp_path) as app:
        path = f"/api/v1/conversations/{await _conversation(app)}/messages"
        app.writes.clear()
        error = assert_error(await _post(app, path, body, app.as_("writer")), status, code)
        if case == "form posting over http":
            assert error["details"][0]["field"] == "message_parts.0.web_view.form.callback_url", error
        assert app.writes == [], f"{case}: queued {app.writes}"


@pytest.mark.parametrize(("who", "status"), [("nobody", 401), ("unknown-token", 401), ("reader", 403)])
async def test_authentication_still_comes_before_the_body(tmp_path: Path, who: str, status: int) -> None:
    """Without a valid token or the scope, every refused body is the 401/403: nothing about
    the body's schema, and nothing queued for the writer."""
    async with running_app(tmp_path) as app:
        path = f"/api/v1/conversations/{await _conversation(app)}/messages"
        app.writes.clear()
        for case, body, _, _ in REFUSED_MESSAGES:
            r = await _post(app, path, body, app.as_(who))
            assert_error(r, status)
            assert "message_parts" not in r.text, f"{case}: {r.text}"
        assert app.writes == []


async def test_a_flood_of_refused_writes_queues_nothing_before_a_good_one(tmp_path: Path) -> None:
    async with running_app(tmp_path) as app:
        path = f"/api/v1/conversations/{await _conversation(app)}/messages"
        app.writes.clear()
        for n in range(60):
            _, body, status, _ = REFUSED_MESSAGES[n % len(REFUSED_MESSAGES)]
            assert (await _post(app, path, body, app.as_("writer"))).status_code == status
        assert app.writes == []
        r = await app.client.post(
            path, json={"message_parts": [{"text": {"content": "hello"}}]}, headers=app.as_("writer")
        )
        assert r.status_code == 201, r.text
        assert len(app.writes) == 1, app.writes  # the good write alone: no token touch held back by the refusals


async def test_refused_creates_and_queries_queue_no_write(tmp_path: Path) -> None:
    async with running_app(tmp_path) as app:
        c, writer = app.client, app.as_("writer")
        user = (await c.post("/api/v1/users", json={}, headers=writer)).json()
        app.writes.clear()
        assert_error(await c.post("/api/v1/users", json={"external_id": ""}, headers=writer), 422)
        assert_error(await c.post("/api/v1/agents", json={"name": "B", "kind": "robot"}, headers=writer), 422)
        assert_error(await c.patch(f"/api/v1/users/{user['id']}", json={"email": 5}, headers=writer), 422)
        http_form = REFUSED_MESSAGES[-1][1]
        r = await c.post("/api/v1/conversations", json={"user_id": user["id"], "messages": [http_form]}, headers=writer)
        assert assert_error(r, 422)["details"][0]["field"] == "messages.0.message_parts.0.web_view.form.callback_url"
        assert_error(await c.get("/api/v1/conversations", params={"limit": 0}, headers=writer), 422)
        assert app.writes == []

"""Small factories for API tests: plain functions over an httpx client."""

from __future__ import annotations

from typing import Any

import httpx


def make_user(api: httpx.Client, **fields: Any) -> dict[str, Any]:
    r = api.post("/api/v1/users", json=fields)
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def make_conversation(api: httpx.Client, user_id: str | None = None, **fields: Any) -> dict[str, Any]:
    if user_id is None:
        user_id = make_user(api)["id"]
    r = api.post("/api/v1/conversations", json={"user_id": user_id, **fields})
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def post_text(api: httpx.Client, conversation_id: str, text: str, **fields: Any) -> httpx.Response:
    body = {"message_parts": [{"text": {"content": text}}], **fields}
    return api.post(f"/api/v1/conversations/{conversation_id}/messages", json=body)


def messages(api: httpx.Client, conversation_id: str, **params: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    cursor = None
    while True:
        q = {**params, "limit": 200, **({"cursor": cursor} if cursor else {})}
        r = api.get(f"/api/v1/conversations/{conversation_id}/messages", params=q)
        assert r.status_code == 200, r.text
        out += r.json()["data"]
        cursor = r.json()["next_cursor"]
        if not cursor:
            return out


def openapi_spec(api: httpx.Client) -> dict[str, Any]:
    r = api.get("/api/v1/openapi.json")
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def assert_error(r: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, f"{r.status_code} {r.text}"
    assert r.headers["content-type"].startswith("application/json"), r.headers["content-type"]
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    if code:
        assert body["error"]["code"] == code, body
    return body["error"]  # type: ignore[no-any-return]

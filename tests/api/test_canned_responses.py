"""Canned responses (SPEC §11): ``{id, shortcut, text}``, shortcuts unique per workspace."""

from __future__ import annotations

from typing import Any

import httpx

from tests.factories import assert_error


def test_create_list_and_delete_canned_responses(app_server: Any, app_api: httpx.Client) -> None:
    r = app_api.post("/api/v1/canned-responses", json={"shortcut": "refund", "text": "Your refund is on its way."})
    assert r.status_code == 201, r.text
    refund = r.json()
    assert set(refund) == {"id", "shortcut", "text", "created_at"} and refund["shortcut"] == "refund"
    app_api.post("/api/v1/canned-responses", json={"shortcut": "hours_2-b", "text": "We're open 9–5."})
    assert_error(app_api.post("/api/v1/canned-responses", json={"shortcut": "refund", "text": "again"}), 409,
                 "duplicate_shortcut")  # fmt: skip
    for bad in ("", "Refund", "/refund", "two words", "x" * 33, "é"):
        assert_error(app_api.post("/api/v1/canned-responses", json={"shortcut": bad, "text": "t"}), 422)
    assert_error(app_api.post("/api/v1/canned-responses", json={"shortcut": "empty", "text": ""}), 422)
    listed = app_api.get("/api/v1/canned-responses").json()
    assert [c["shortcut"] for c in listed["data"]] == ["hours_2-b", "refund"] and listed["next_cursor"] is None
    first = app_api.get("/api/v1/canned-responses", params={"limit": 1}).json()
    rest = app_api.get("/api/v1/canned-responses", params={"limit": 1, "cursor": first["next_cursor"]}).json()
    assert [c["shortcut"] for c in first["data"] + rest["data"]] == ["hours_2-b", "refund"]

    # Another workspace sees none of them, may use the same shortcut, and cannot delete ours.
    with app_server.client(app_server.new_tenant("Other")) as other:
        assert other.get("/api/v1/canned-responses").json()["data"] == []
        assert other.post("/api/v1/canned-responses", json={"shortcut": "refund", "text": "Ours"}).status_code == 201
        assert_error(other.delete(f"/api/v1/canned-responses/{refund['id']}"), 404)

    assert app_api.delete(f"/api/v1/canned-responses/{refund['id']}").status_code == 204
    assert_error(app_api.delete(f"/api/v1/canned-responses/{refund['id']}"), 404)
    assert [c["shortcut"] for c in app_api.get("/api/v1/canned-responses").json()["data"]] == ["hours_2-b"]
    # The shortcut is free again.
    assert app_api.post("/api/v1/canned-responses", json={"shortcut": "refund", "text": "New"}).status_code == 201

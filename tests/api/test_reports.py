"""``GET /api/v1/reports/summary`` (SPEC §12): totals and days, per workspace."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlmodel import select

from app.store.tables import Conversation, Message
from tests.conftest import InProcessServer, Tenant


def say(api: httpx.Client, conv_id: str, actor: str, text: str, **extra: Any) -> None:
    r = api.post(
        f"/api/v1/conversations/{conv_id}/messages",
        json={"actor": {"type": actor}, "message_parts": [{"text": {"content": text}}], **extra},
    )
    assert r.status_code == 201, r.text


def backdate(tx: Any, conv_id: str, start: datetime, first_reply_after: float, resolved_after: float | None) -> None:
    """Make the times exact: the conversation and its customer message at ``start``, the reply later."""
    conv = tx.session.get(Conversation, conv_id)
    conv.created_at = start
    if resolved_after is not None:
        conv.resolved_at = start + timedelta(seconds=resolved_after)
    tx.session.add(conv)
    for m in tx.session.exec(select(Message).where(Message.conversation_id == conv_id)):
        m.created_at = start if m.actor_type == "user" else start + timedelta(seconds=first_reply_after)
        tx.session.add(m)


def rate(tx: Any, conv_id: str, score: int, at: datetime) -> None:
    conv = tx.session.get(Conversation, conv_id)
    conv.rating_score, conv.rated_at = score, at
    tx.session.add(conv)


def test_the_summary_counts_medians_and_ratings_in_total_and_per_day(
    app_server: InProcessServer, app_tenant: Tenant, app_api: httpx.Client
) -> None:
    today = datetime.now(UTC).replace(hour=10, minute=0, second=0, microsecond=0)
    yesterday = today - timedelta(days=1)
    user = app_api.post("/api/v1/users", json={"name": "Ada"}).json()
    plan = [(yesterday, 30, 600, 5), (yesterday, 90, None, None), (today, 60, 1200, 3)]
    for start, reply_after, resolved_after, score in plan:
        conv = app_api.post("/api/v1/conversations", json={"user_id": user["id"]}).json()
        say(app_api, conv["id"], "user", "Hello")
        say(app_api, conv["id"], "bot", "Hi!")
        say(app_api, conv["id"], "bot", "a note", private=True)  # never counted
        if resolved_after is not None:
            app_api.patch(f"/api/v1/conversations/{conv['id']}", json={"status": "resolved"}).raise_for_status()
        app_server.in_tx(backdate, conv["id"], start, reply_after, resolved_after)
        if score:
            app_server.in_tx(rate, conv["id"], score, start + timedelta(hours=1))
    # Another workspace's conversation is nowhere in ours.
    other = app_server.new_tenant("Other")
    with app_server.client(other) as theirs:
        u = theirs.post("/api/v1/users", json={}).json()
        c = theirs.post("/api/v1/conversations", json={"user_id": u["id"]}).json()
        say(theirs, c["id"], "user", "elsewhere")

    r = app_api.get(
        "/api/v1/reports/summary", params={"from": yesterday.date().isoformat(), "to": today.date().isoformat()}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["from"] == yesterday.date().isoformat() and body["to"] == today.date().isoformat()
    assert body["conversations"] == 3 and body["messages"] == 6
    assert body["median_first_response_seconds"] == 60.0
    assert body["median_resolution_seconds"] == 900.0
    assert body["ratings"] == 2 and body["rating_average"] == 4.0
    first, second = body["days"]
    assert first == {
        "date": yesterday.date().isoformat(), "conversations": 2, "messages": 4, "median_first_response_seconds": 60.0,
        "median_resolution_seconds": 600.0, "rating_average": 5.0, "ratings": 1,
    }  # fmt: skip
    assert second["conversations"] == 1 and second["median_first_response_seconds"] == 60.0
    assert second["median_resolution_seconds"] == 1200.0 and second["rating_average"] == 3.0
    # The default range is the last 30 days, today included.
    default = app_api.get("/api/v1/reports/summary").json()
    assert len(default["days"]) == 30 and default["to"] == today.date().isoformat()
    assert default["conversations"] == 3


def test_a_bad_range_is_a_422(app_api: httpx.Client) -> None:
    for params in (
        {"from": "2026-11-30", "to": "2026-11-01"},
        {"from": "2024-01-01", "to": "2026-01-01"},
        {"from": "soon"},
        {"to": "0"},  # seconds since 1970 are no YYYY-MM-DD (pydantic alone took them; the fuzzer caught it)
        {"from": "1700000000"},
    ):
        r = app_api.get("/api/v1/reports/summary", params=params)
        assert r.status_code == 422, (params, r.text)
        assert r.json()["error"]["code"] == "validation_failed"

"""Ratings (SPEC §12): the customer rates a resolved conversation from the widget; the rating is
on the conversation (API), fires ``conversation.rated`` and updates the widget's conversation."""

from __future__ import annotations

from contextlib import ExitStack

import httpx

from tests.conftest import LiveServer, Tenant
from tests.realtime.test_realtime import WidgetClient
from tests.receivers import Receiver


def test_a_resolved_conversation_is_rated_then_commented_and_the_webhook_carries_it(
    server: LiveServer, tenant: Tenant, api: httpx.Client
) -> None:
    with ExitStack() as stack, Receiver() as rx:
        api.post("/api/v1/webhook-endpoints", json={"url": rx.url, "events": ["conversation.rated"]}).raise_for_status()
        widget = WidgetClient(stack, server, tenant)
        widget.connect()
        widget.send({"type": "message", "client_message_id": "c1", "text": "My card is blocked"})
        conv_id = widget.expect("message")["message"]["conversation_id"]
        # Not resolved yet: nothing to rate.
        widget.send({"type": "rate", "score": 5})
        assert widget.expect("error", ref="rate")["code"] == "not_resolved"
        assert api.get(f"/api/v1/conversations/{conv_id}").json()["rating"] is None

        api.patch(f"/api/v1/conversations/{conv_id}", json={"status": "resolved"}).raise_for_status()
        frame = widget.expect("conversation")
        assert frame["conversation"]["status"] == "resolved" and frame["conversation"]["rating"] is None
        for bad in ({"score": 0}, {"score": 6}, {"score": "5"}, {"score": True}, {"score": 4, "comment": "x" * 1001}):
            widget.send({"type": "rate", **bad})
            assert widget.expect("error", ref="rate")["code"] == "invalid_rating", bad
        widget.send({"type": "rate", "score": 4})
        rated = widget.expect("conversation")["conversation"]["rating"]
        assert rated["score"] == 4 and rated["comment"] is None
        widget.send({"type": "rate", "score": 4, "comment": "  Quick and kind, thanks!  "})
        again = widget.expect("conversation")["conversation"]["rating"]
        assert again["comment"] == "Quick and kind, thanks!"

        stored = api.get(f"/api/v1/conversations/{conv_id}").json()["rating"]
        assert stored["score"] == 4 and stored["comment"] == "Quick and kind, thanks!" and stored["rated_at"]
        bodies = [r.json for r in rx.wait_count(2)]
        assert [b["type"] for b in bodies] == ["conversation.rated", "conversation.rated"]
        # Two events, delivered concurrently: webhooks promise no order between events, so they
        # are told apart by what they carry (the receiver sees them in either order).
        ratings = sorted(
            ((b["data"]["conversation"]["rating"], b["data"]["conversation"]["id"]) for b in bodies),
            key=lambda r: r[0]["comment"] is not None,
        )
        assert [(r["score"], r["comment"], cid) for r, cid in ratings] == [
            (4, None, conv_id),
            (4, "Quick and kind, thanks!", conv_id),
        ]


def test_no_rating_when_ratings_are_off(server: LiveServer, tenant: Tenant, api: httpx.Client) -> None:
    api.patch("/api/v1/widget-settings", json={"ratings_enabled": False}).raise_for_status()
    with ExitStack() as stack:
        widget = WidgetClient(stack, server, tenant)
        ready = widget.connect()
        assert ready["settings"]["ratings_enabled"] is False
        widget.send({"type": "message", "client_message_id": "c1", "text": "hello"})
        conv_id = widget.expect("message")["message"]["conversation_id"]
        api.patch(f"/api/v1/conversations/{conv_id}", json={"status": "resolved"}).raise_for_status()
        widget.expect("conversation")
        widget.send({"type": "rate", "score": 1})
        assert widget.expect("error", ref="rate")["code"] == "ratings_disabled"
    assert api.get(f"/api/v1/conversations/{conv_id}").json()["rating"] is None

"""Every part type of SPEC §4 accepted; every limit refused with a 422 and nothing stored."""

from __future__ import annotations

import copy
from typing import Any

import httpx
import pytest

from tests.factories import assert_error, make_conversation, messages

HTTPS = "https://example.com/a.png"
FORM = {
    "title": "Card details",
    "fields": [
        {"name": "number", "label": "Card number", "type": "text", "required": True, "pattern": "[0-9 ]{12,23}"},
        {"name": "kind", "label": "Kind", "type": "select", "options": ["Visa", "Mastercard"]},
    ],
    "submit_label": "Continue",
    "callback_url": "https://bot.example.com/callback",
}
EVERY_PART: dict[str, Any] = {
    "message_parts": [
        {"text": {"content": "Hello https://example.com"}},
        {"image": {"url": HTTPS, "alt": "A picture"}},
        {"image": {"url": "https://example.com/x", "alt": "gif", "content_type": "image/gif"}},
        {"url_button": {"label": "Open site", "url": "https://example.com", "target": "_blank"}},
        {"web_view": {"label": "Pay", "url": "https://bot.example.com/pay", "height": "tall"}},
        {"web_view": {"id": "card", "label": "Card", "form": FORM, "height": "compact"}},
        {
            "carousel": {
                "cards": [
                    {
                        "title": "Card 1",
                        "subtitle": "Sub",
                        "image_url": HTTPS,
                        "buttons": [
                            {"postback": {"label": "Pick", "payload": "p1"}},
                            {"url_button": {"label": "More", "url": "https://example.com"}},
                            {"web_view": {"label": "View", "url": "https://example.com/v"}},
                        ],
                    }
                ]
            }
        },
    ],
    "reply_parts": [
        {"quick_replies": {"options": [{"label": "Yes", "payload": "yes"}, {"label": "No", "payload": "no"}]}},
        {"dropdown": {"placeholder": "Pick a period", "options": [{"label": "Last month", "payload": "m1"}]}},
    ],
}


def allow_the_form_callback(api: httpx.Client) -> None:
    """A hosted form needs an enabled endpoint on its callback's origin (SPEC §14); this one
    hears only test events, so nothing is ever delivered to the made-up host."""
    r = api.post("/api/v1/webhook-endpoints", json={"url": "https://bot.example.com/hooks", "events": ["webhook.test"]})
    assert r.status_code == 201, r.text


def test_every_part_type_is_accepted_and_returned(app_api: httpx.Client) -> None:
    allow_the_form_callback(app_api)
    conv = make_conversation(app_api)
    r = app_api.post(f"/api/v1/conversations/{conv['id']}/messages", json=EVERY_PART)
    assert r.status_code == 201, r.text
    msg = r.json()
    assert msg["seq"] == 1 and msg["actor"]["type"] == "bot" and msg["actor"]["id"].startswith("agt_")
    assert [next(iter(p)) for p in msg["message_parts"]] == [
        "text",
        "image",
        "image",
        "url_button",
        "web_view",
        "web_view",
        "carousel",
    ]
    assert msg["reply_parts"][0]["quick_replies"]["options"][1] == {"label": "No", "payload": "no"}
    assert messages(app_api, conv["id"]) == [msg]


def _with(path: list[Any], value: Any) -> dict[str, Any]:
    body = copy.deepcopy(EVERY_PART)
    target: Any = body
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return body


TOO_MANY_OPTIONS = [{"label": f"o{i}", "payload": str(i)} for i in range(14)]
LIMITS = [
    (["message_parts", 0, "text", "content"], "x" * 4097, "message_parts.0.text.content"),
    (["message_parts", 0, "text", "content"], "", "message_parts.0.text.content"),
    (["message_parts", 1, "image", "url"], "javascript:alert(1)", "message_parts.1.image.url"),
    (["message_parts", 1, "image", "url"], "data:image/png;base64,AAAA", "message_parts.1.image.url"),
    (["message_parts", 3, "url_button", "label"], "x" * 21, "message_parts.3.url_button.label"),
    (["message_parts", 3, "url_button", "url"], "ftp://example.com", "message_parts.3.url_button.url"),
    (["message_parts", 3, "url_button", "target"], "_top", "message_parts.3.url_button.target"),
    (
        ["message_parts", 4, "web_view"],
        {"label": "Both", "url": "https://a.example", "form": FORM},
        "message_parts.4.web_view",
    ),
    (["message_parts", 4, "web_view"], {"label": "Neither"}, "message_parts.4.web_view"),
    (["message_parts", 4, "web_view", "height"], "huge", "message_parts.4.web_view.height"),
    (
        ["message_parts", 5, "web_view", "form", "callback_url"],
        "javascript:x",
        "message_parts.5.web_view.form.callback_url",
    ),
    (["message_parts", 6, "carousel", "cards"], [], "message_parts.6.carousel.cards"),
    (
        ["message_parts", 6, "carousel", "cards"],
        [{"title": f"c{i}"} for i in range(11)],
        "message_parts.6.carousel.cards",
    ),
    (["message_parts", 6, "carousel", "cards", 0, "title"], "t" * 81, "message_parts.6.carousel.cards.0.title"),
    (["message_parts", 6, "carousel", "cards", 0, "subtitle"], "s" * 81, "message_parts.6.carousel.cards.0.subtitle"),
    (
        ["message_parts", 6, "carousel", "cards", 0, "buttons"],
        [{"postback": {"label": "a", "payload": "b"}}] * 4,
        "message_parts.6.carousel.cards.0.buttons",
    ),
    (
        ["message_parts", 6, "carousel", "cards", 0, "buttons", 0],
        {"text": {"content": "no"}},
        "message_parts.6.carousel.cards.0.buttons.0",
    ),
    (["message_parts", 0], {"video": {"url": HTTPS}}, "message_parts.0"),
    (["message_parts", 0], {"text": {"content": "a"}, "image": {"url": HTTPS}}, "message_parts.0"),
    (["reply_parts", 0, "quick_replies", "options"], TOO_MANY_OPTIONS, "reply_parts.0.quick_replies.options"),
    (["reply_parts", 0, "quick_replies", "options"], [], "reply_parts.0.quick_replies.options"),
    (
        ["reply_parts", 0, "quick_replies", "options", 0, "label"],
        "l" * 21,
        "reply_parts.0.quick_replies.options.0.label",
    ),
    (
        ["reply_parts", 0, "quick_replies", "options", 0, "payload"],
        "p" * 1001,
        "reply_parts.0.quick_replies.options.0.payload",
    ),
    (
        ["reply_parts", 1, "dropdown", "options"],
        [{"label": f"o{i}", "payload": "x"} for i in range(101)],
        "reply_parts.1.dropdown.options",
    ),
    (["reply_parts", 1, "dropdown", "options"], [], "reply_parts.1.dropdown.options"),
    (["actor"], {"type": "system"}, "actor.type"),
    (["message_parts"], [], None),
]


@pytest.mark.parametrize(
    ("path", "value", "field"), LIMITS, ids=[f"{i}-{'.'.join(map(str, p))}" for i, (p, _, _) in enumerate(LIMITS)]
)
def test_limit_is_refused_with_422_naming_the_field_and_nothing_stored(
    module_app_api: httpx.Client, path: list[Any], value: Any, field: str | None
) -> None:
    api = module_app_api
    conv = make_conversation(api)
    body = _with(path, value)
    if field is None:  # an empty message altogether
        body = {"message_parts": [], "reply_parts": []}
    err = assert_error(api.post(f"/api/v1/conversations/{conv['id']}/messages", json=body), 422, "validation_failed")
    if field:
        fields = [d["field"] for d in err["details"]]
        assert any(f == field or f.startswith(field + ".") for f in fields), fields
        assert field in err["message"] or any(field in f for f in fields)
    assert messages(api, conv["id"]) == []
    assert api.get(f"/api/v1/conversations/{conv['id']}").json()["last_message_seq"] == 0


def test_a_conversation_with_a_bad_message_is_not_half_written(app_api: httpx.Client) -> None:
    user = app_api.post("/api/v1/users", json={}).json()
    body = {
        "user_id": user["id"],
        "messages": [{"message_parts": [{"text": {"content": "ok"}}]}, {"message_parts": [{"text": {"content": ""}}]}],
    }
    assert_error(app_api.post("/api/v1/conversations", json=body), 422)
    assert app_api.get("/api/v1/conversations", params={"user_id": user["id"]}).json()["data"] == []


def test_actors_and_reply_to(app_api: httpx.Client) -> None:
    conv = make_conversation(app_api)
    cid = conv["id"]
    bot = app_api.post("/api/v1/agents", json={"name": "Freddy", "kind": "bot"}).json()
    human = app_api.post("/api/v1/agents", json={"name": "Ann", "kind": "human"}).json()
    ask = app_api.post(
        f"/api/v1/conversations/{cid}/messages",
        json={
            "actor": {"type": "bot", "id": bot["id"]},
            "message_parts": [{"text": {"content": "Pick one"}}],
            "reply_parts": [{"quick_replies": {"options": [{"label": "Yes", "payload": "YES"}]}}],
        },
    ).json()
    answer = app_api.post(
        f"/api/v1/conversations/{cid}/messages",
        json={
            "actor": {"type": "user"},
            "message_parts": [{"text": {"content": "Yes"}}],
            "reply_to": {"message_id": ask["id"], "payload": "YES"},
        },
    )
    assert answer.status_code == 201
    assert answer.json()["actor"] == {"type": "user", "id": conv["user_id"]}
    assert answer.json()["reply_to"] == {"message_id": ask["id"], "payload": "YES"}
    # a bot id used as a human agent, an unknown agent, another user, a foreign reply_to: all 422
    for body in (
        {"actor": {"type": "agent", "id": bot["id"]}},
        {"actor": {"type": "bot", "id": "agt_unknown"}},
        {"actor": {"type": "agent"}},
        {"actor": {"type": "user", "id": "usr_other"}},
        {"reply_to": {"message_id": "msg_nope", "payload": "x"}},
    ):
        r = app_api.post(
            f"/api/v1/conversations/{cid}/messages", json={"message_parts": [{"text": {"content": "x"}}], **body}
        )
        assert_error(r, 422)
    # a human agent replying takes the conversation over
    r = app_api.post(
        f"/api/v1/conversations/{cid}/messages",
        json={"actor": {"type": "agent", "id": human["id"]}, "message_parts": [{"text": {"content": "Hi, Ann here"}}]},
    )
    assert r.status_code == 201
    assert app_api.get(f"/api/v1/conversations/{cid}").json()["assignee_id"] == human["id"]
    listed = messages(app_api, cid)
    assert [m["seq"] for m in listed] == [1, 2, 3]
    assert listed[:2] == [ask, answer.json()]  # the page shows each message exactly as posted


def test_conversation_status_and_assignment(app_api: httpx.Client) -> None:
    conv = make_conversation(app_api)
    cid = conv["id"]
    human = app_api.post("/api/v1/agents", json={"name": "Ann", "kind": "human"}).json()
    r = app_api.patch(f"/api/v1/conversations/{cid}", json={"status": "resolved", "assignee_id": human["id"]})
    assert r.status_code == 200
    assert r.json()["status"] == "resolved" and r.json()["assignee_id"] == human["id"]
    assert [c["id"] for c in app_api.get("/api/v1/conversations", params={"status": "resolved"}).json()["data"]] == [
        cid
    ]
    assert app_api.get("/api/v1/conversations", params={"status": "open"}).json()["data"] == []
    assert_error(app_api.patch(f"/api/v1/conversations/{cid}", json={"status": "closed"}), 422)
    assert_error(app_api.patch(f"/api/v1/conversations/{cid}", json={"assignee_id": "agt_nope"}), 422)
    # the customer writing again reopens it
    app_api.post(
        f"/api/v1/conversations/{cid}/messages",
        json={"actor": {"type": "user"}, "message_parts": [{"text": {"content": "one more thing"}}]},
    )
    assert app_api.get(f"/api/v1/conversations/{cid}").json()["status"] == "open"
    r = app_api.patch(f"/api/v1/conversations/{cid}", json={"assignee_id": None})
    assert r.json()["assignee_id"] is None


def test_typing_indicator_endpoint(app_api: httpx.Client) -> None:
    conv = make_conversation(app_api)
    assert app_api.post(f"/api/v1/conversations/{conv['id']}/typing", json={"on": True}).status_code == 204
    assert_error(app_api.post("/api/v1/conversations/cnv_nope/typing", json={"on": True}), 404)

"""File, image, video and audio parts by ``file_id``: checked when posted, and carried with a
fresh signed link, name, type and size in every message Backchannel returns."""

from __future__ import annotations

from typing import Any

import httpx
from standardwebhooks import Webhook

from tests.conftest import LiveServer, Tenant
from tests.factories import assert_error, make_conversation, messages
from tests.files.samples import mp4, pdf, png, upload
from tests.files.test_widget_upload import ORIGIN, widget_upload
from tests.realtime.test_realtime import WidgetClient, opened, widget  # noqa: F401 - the fixture
from tests.receivers import Receiver


def post(api: httpx.Client, conversation_id: str, *parts: dict[str, Any], **extra: Any) -> httpx.Response:
    return api.post(f"/api/v1/conversations/{conversation_id}/messages", json={"message_parts": list(parts), **extra})


def test_file_parts_carry_a_fresh_link_name_type_and_size(api: httpx.Client) -> None:
    statement = upload(api, pdf(), "statement.pdf").json()
    photo = upload(api, png(), "receipt.png").json()
    clip = upload(api, mp4(), "howto.mp4").json()
    conv = make_conversation(api)
    r = post(
        api,
        conv["id"],
        {"text": {"content": "Here you are"}},
        {"file": {"file_id": statement["id"]}},
        {"image": {"file_id": photo["id"]}},
        {"video": {"file_id": clip["id"]}},
    )
    assert r.status_code == 201, r.text
    parts = r.json()["message_parts"]
    assert parts[0] == {"text": {"content": "Here you are"}}
    assert {k: v for k, v in parts[1]["file"].items() if k != "url"} == {
        "file_id": statement["id"], "name": "statement.pdf", "content_type": "application/pdf", "size": len(pdf()),
    }  # fmt: skip
    assert parts[2]["image"]["alt"] == "receipt.png" and parts[2]["image"]["content_type"] == "image/png"
    assert parts[3]["video"]["name"] == "howto.mp4"
    for part, content in zip(parts[1:], (pdf(), png(), mp4()), strict=True):
        (body,) = part.values()
        assert httpx.get(body["url"]).content == content
    listed = messages(api, conv["id"])[-1]["message_parts"]
    assert [next(iter(p)) for p in listed] == ["text", "file", "image", "video"]
    assert httpx.get(listed[1]["file"]["url"]).content == pdf()
    # a message without files is served as it was stored
    post(api, conv["id"], {"text": {"content": 'a text that says "file_id"'}})
    assert messages(api, conv["id"])[-1]["message_parts"] == [{"text": {"content": 'a text that says "file_id"'}}]


def test_a_file_of_another_workspace_or_the_wrong_kind_is_422_naming_the_field(
    server: LiveServer, api: httpx.Client
) -> None:
    other = server.new_tenant("Other")
    with server.client(other) as theirs:
        foreign = upload(theirs, pdf(), "theirs.pdf").json()
    statement = upload(api, pdf(), "statement.pdf").json()
    conv = make_conversation(api)
    r = post(api, conv["id"], {"text": {"content": "hi"}}, {"file": {"file_id": foreign["id"]}})
    body = assert_error(r, 422, "validation_failed")
    assert body["details"][0]["field"] == "message_parts.1.file.file_id"
    r = post(api, conv["id"], {"video": {"file_id": statement["id"]}})
    assert assert_error(r, 422)["details"][0]["field"] == "message_parts.0.video.file_id"
    assert_error(post(api, conv["id"], {"file": {"url": "https://example.com/a.pdf"}}), 422)  # a url needs a name
    assert_error(post(api, conv["id"], {"file": {"file_id": statement["id"], "url": "https://e.com/a"}}), 422)
    assert_error(post(api, conv["id"], {"image": {"alt": "nothing"}}), 422)
    assert len(messages(api, conv["id"])) == 0  # nothing stored
    r = post(api, conv["id"], {"file": {"url": "https://example.com/a.pdf", "name": "a.pdf", "size": 10}})
    assert r.status_code == 201
    assert r.json()["message_parts"] == [{"file": {"url": "https://example.com/a.pdf", "name": "a.pdf", "size": 10}}]


def test_message_created_webhooks_carry_a_link_the_bot_can_fetch(api: httpx.Client) -> None:
    with Receiver() as rx:
        ep = api.post("/api/v1/webhook-endpoints", json={"url": rx.url, "events": ["message.created"]}).json()
        statement = upload(api, pdf(), "statement.pdf").json()
        conv = make_conversation(api)
        assert post(api, conv["id"], {"file": {"file_id": statement["id"]}}).status_code == 201
        (got,) = rx.wait_count(1)
    Webhook(ep["secret"]).verify(got.body, got.headers)
    part = got.json["data"]["message"]["message_parts"][0]["file"]
    assert (part["name"], part["content_type"], part["size"]) == ("statement.pdf", "application/pdf", len(pdf()))
    assert httpx.get(part["url"]).content == pdf()


def test_a_visitor_sends_their_upload_and_sees_it_with_a_link(
    widget: Any, server: LiveServer, tenant: Tenant, api: httpx.Client  # noqa: F811
) -> None:
    client: WidgetClient = widget(server, tenant)
    conversation_id = opened(client)
    photo = widget_upload(server, client.session["session_token"], png(), "receipt.png").json()
    doc = widget_upload(server, client.session["session_token"], pdf(), "statement.pdf").json()
    client.send({"type": "message", "file_ids": [photo["id"], doc["id"]], "client_message_id": "c1"})
    client.expect("ack", client_message_id="c1")
    # the live message may come before or after the ack
    (frame,) = [f for f in client.seen if f["type"] == "message"] or [client.expect("message")]
    parts = frame["message"]["message_parts"]
    assert parts[0]["image"]["alt"] == "receipt.png" and parts[1]["file"]["name"] == "statement.pdf"
    assert httpx.get(parts[0]["image"]["url"]).content == png()
    assert httpx.get(parts[1]["file"]["url"], headers={"Origin": ORIGIN}).content == pdf()
    # the bot sees the same message with links too
    listed = messages(api, conversation_id)[-1]["message_parts"]
    assert httpx.get(listed[1]["file"]["url"]).content == pdf()
    # a visitor can send only their own uploads
    bot_file = upload(api, pdf(), "internal.pdf").json()
    client.send({"type": "message", "file_ids": [bot_file["id"]], "client_message_id": "c2"})
    error = client.expect("error")
    assert error["code"] == "validation_failed"

"""Webhook endpoints through the API, and what a receiver gets: Standard Webhooks signatures
checked with the ``standardwebhooks`` package from PyPI, never with our own code.

The app runs in process; each receiver is a real HTTP server that its dispatcher sends to."""

from __future__ import annotations

import base64
from typing import Any

import httpx
import pytest
from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from tests.conftest import InProcessServer, Tenant
from tests.factories import openapi_spec
from tests.receivers import Receiver, eventually

EP = "/api/v1/webhook-endpoints"


def add_endpoint(api: httpx.Client, url: str, **fields: Any) -> dict[str, Any]:
    r = api.post(EP, json={"url": url, **fields})
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def deliveries(api: httpx.Client, endpoint_id: str, **params: Any) -> list[dict[str, Any]]:
    r = api.get(f"{EP}/{endpoint_id}/deliveries", params=params)
    assert r.status_code == 200, r.text
    return r.json()["data"]  # type: ignore[no-any-return]


def test_endpoint_lifecycle_shows_the_secret_only_on_create_and_rotate(
    app_server: InProcessServer, app_api: httpx.Client
) -> None:
    created = add_endpoint(app_api, "https://hooks.example.com/bc", events=["message.created"], description="bot")
    assert created["secret"].startswith("whsec_")
    assert len(base64.b64decode(created["secret"].removeprefix("whsec_"))) == 32
    assert created["events"] == ["message.created"] and created["enabled"] is True
    eid = created["id"]

    listed = app_api.get(EP).json()
    assert [e["id"] for e in listed["data"]] == [eid] and listed["next_cursor"] is None
    read = app_api.get(f"{EP}/{eid}").json()
    for shown in (read, listed["data"][0]):
        assert "secret" not in shown and created["secret"] not in str(shown)

    patched = app_api.patch(f"{EP}/{eid}", json={"events": ["conversation.created", "user.created"], "enabled": False})
    assert patched.status_code == 200
    assert patched.json()["events"] == ["conversation.created", "user.created"]
    assert patched.json()["enabled"] is False and patched.json()["disabled_reason"]
    assert "secret" not in patched.json()
    again = app_api.patch(f"{EP}/{eid}", json={"enabled": True}).json()
    assert again["enabled"] is True and again["disabled_reason"] is None

    rotated = app_api.post(f"{EP}/{eid}/rotate-secret")
    assert rotated.status_code == 200
    assert rotated.json()["secret"].startswith("whsec_") and rotated.json()["secret"] != created["secret"]
    assert rotated.json()["previous_secret_expires_at"] is not None

    assert app_api.delete(f"{EP}/{eid}").status_code == 204
    assert app_api.get(f"{EP}/{eid}").status_code == 404
    assert app_api.get(EP).json()["data"] == []


def test_endpoint_input_is_validated_and_workspaces_are_isolated(
    app_server: InProcessServer, app_tenant: Tenant, app_api: httpx.Client
) -> None:
    for bad in ({"url": "ftp://example.com/"}, {"url": "javascript:alert(1)"}, {"url": "https://x.example/", "events": ["nope.happened"]},
                {"url": "https://x.example/", "events": []}, {"url": "https://x.example/", "secret": "hunter2"}):
        r = app_api.post(EP, json=bad)
        assert r.status_code == 422, (bad, r.text)
        assert r.json()["error"]["code"] == "validation_failed"
    assert add_endpoint(app_api, "https://x.example/", events=["user.created", "*"])["events"] == ["*"]
    own_secret = "whsec_" + base64.b64encode(b"k" * 32).decode()
    assert add_endpoint(app_api, "https://y.example/", secret=own_secret)["secret"] == own_secret

    eid = app_api.get(EP).json()["data"][0]["id"]
    other = app_server.new_tenant("Other")
    with app_server.client(other) as stranger:
        assert stranger.get(EP).json()["data"] == []
        for method, path in [("GET", f"{EP}/{eid}"), ("PATCH", f"{EP}/{eid}"), ("DELETE", f"{EP}/{eid}"),
                             ("POST", f"{EP}/{eid}/rotate-secret"), ("POST", f"{EP}/{eid}/test"),
                             ("GET", f"{EP}/{eid}/deliveries")]:
            r = stranger.request(method, path, json={} if method != "GET" else None)
            assert r.status_code == 404, (method, path, r.text)
    read_only = app_server.token_for(app_tenant.workspace_id, ["read"])
    with app_server.client(headers={"Authorization": f"Bearer {read_only}"}) as reader:
        assert reader.get(EP).status_code == 200
        assert reader.post(EP, json={"url": "https://z.example/"}).status_code == 403
        assert reader.post(f"{EP}/{eid}/rotate-secret").status_code == 403


def test_openapi_documents_the_webhook_api_without_secrets_in_reads(app_api: httpx.Client) -> None:
    doc = openapi_spec(app_api)
    for path in ["/webhook-endpoints", "/webhook-endpoints/{endpoint_id}", "/webhook-endpoints/{endpoint_id}/rotate-secret",
                 "/webhook-endpoints/{endpoint_id}/test", "/webhook-endpoints/{endpoint_id}/deliveries",
                 "/webhook-deliveries/{delivery_id}/retry"]:
        assert "/api/v1" + path in doc["paths"], path
    schemas = doc["components"]["schemas"]
    assert "secret" not in schemas["WebhookEndpointOut"]["properties"]
    assert "secret" in schemas["WebhookEndpointWithSecret"]["properties"]


def test_delivery_verifies_with_the_standardwebhooks_library(
    app_server: InProcessServer, app_api: httpx.Client
) -> None:
    with Receiver() as rx:
        ep = add_endpoint(app_api, rx.url)
        user = app_api.post("/api/v1/users", json={"name": "Ada"}).json()
        (req,) = rx.wait_count(1)

    payload = Webhook(ep["secret"]).verify(req.body, req.headers)
    assert payload["type"] == "user.created" and payload["data"]["user"]["id"] == user["id"]
    assert set(payload) == {"type", "timestamp", "data"}
    assert req.headers["content-type"] == "application/json"

    with pytest.raises(WebhookVerificationError):
        Webhook(ep["secret"]).verify(req.body.replace(b"Ada", b"Eve"), req.headers)
    wrong = "whsec_" + base64.b64encode(b"x" * 32).decode()
    with pytest.raises(WebhookVerificationError):
        Webhook(wrong).verify(req.body, req.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(ep["secret"]).verify(req.body, {**req.headers, "webhook-id": "msg_other"})

    (d,) = eventually(lambda: [d for d in deliveries(app_api, ep["id"]) if d["status"] == "succeeded"])
    assert d["event_id"] == req.webhook_id and d["event_type"] == "user.created" and d["attempts"] == 1
    detail = app_api.get(f"/api/v1/webhook-deliveries/{d['id']}").json()
    assert detail["payload"] == payload
    (attempt,) = detail["attempt_log"]
    assert attempt["status_code"] == 200 and attempt["response_excerpt"] == "ok" and attempt["error"] is None


def test_event_filters_per_endpoint(app_server: InProcessServer, app_api: httpx.Client) -> None:
    with Receiver() as narrow, Receiver() as everything:
        add_endpoint(app_api, narrow.url, events=["conversation.created", "conversation.resolved"])
        add_endpoint(app_api, everything.url)
        user = app_api.post("/api/v1/users", json={"name": "Ada"}).json()
        conv = app_api.post("/api/v1/conversations", json={"user_id": user["id"]}).json()
        for i in range(3):
            r = app_api.post(f"/api/v1/conversations/{conv['id']}/messages",
                         json={"actor": {"type": "bot"}, "message_parts": [{"text": {"content": f"m{i}"}}]})
            assert r.status_code == 201
        app_api.patch(f"/api/v1/conversations/{conv['id']}", json={"status": "resolved"})

        all_types = ["user.created", "conversation.created", "message.created", "message.created",
                     "message.created", "conversation.resolved"]
        # Several deliveries are in flight at once per endpoint, so they may arrive in any order
        # (docs/webhooks.md, "Ordering"): each event once, and only those the filter names.
        got = everything.wait_count(len(all_types))
        assert sorted(r.json["type"] for r in got) == sorted(all_types)
        assert sorted(r.json["data"]["message"]["seq"] for r in got if r.json["type"] == "message.created") == [1, 2, 3]
        narrow.wait_count(2)
        assert sorted(r.json["type"] for r in narrow.received()) == ["conversation.created", "conversation.resolved"]


def test_send_test_event_reaches_only_that_endpoint(app_server: InProcessServer, app_api: httpx.Client) -> None:
    with Receiver() as target, Receiver() as bystander:
        ep = add_endpoint(app_api, target.url, events=["message.created"])
        add_endpoint(app_api, bystander.url)
        r = app_api.post(f"{EP}/{ep['id']}/test")
        assert r.status_code == 202, r.text
        (req,) = target.wait_count(1)
        assert Webhook(ep["secret"]).verify(req.body, req.headers)["type"] == "webhook.test"
        assert req.webhook_id == r.json()["event_id"]
        app_api.post("/api/v1/users", json={"name": "flush"})  # the bystander's next event comes…
        assert [x.json["type"] for x in bystander.wait_count(1)] == ["user.created"]  # …with no test before it


def test_rotation_signs_with_both_secrets_then_only_the_new(app_server: InProcessServer, app_api: httpx.Client) -> None:
    with Receiver() as rx:
        ep = add_endpoint(app_api, rx.url)
        old = ep["secret"]
        new = app_api.post(f"{EP}/{ep['id']}/rotate-secret").json()["secret"]
        app_api.post("/api/v1/users", json={"name": "during"})
        (during,) = rx.wait_count(1)
        assert len(during.headers["webhook-signature"].split(" ")) == 2
        Webhook(old).verify(during.body, during.headers)
        Webhook(new).verify(during.body, during.headers)

        newest = app_api.post(f"{EP}/{ep['id']}/rotate-secret", json={"overlap_seconds": 0}).json()["secret"]
        app_api.post("/api/v1/users", json={"name": "after"})
        after = rx.wait_count(2)[1]
        assert len(after.headers["webhook-signature"].split(" ")) == 1
        Webhook(newest).verify(after.body, after.headers)
        for stale in (old, new):
            with pytest.raises(WebhookVerificationError):
                Webhook(stale).verify(after.body, after.headers)


def test_asymmetric_signing_verifies_with_the_public_key_alone(
    app_server: InProcessServer, app_api: httpx.Client
) -> None:
    with Receiver() as rx:
        ep = add_endpoint(app_api, rx.url, asymmetric_signing=True)
        assert ep["public_key"].startswith("whpk_")
        assert app_api.get(f"{EP}/{ep['id']}").json()["public_key"] == ep["public_key"]
        app_api.post("/api/v1/users", json={"name": "Ada"})
        (req,) = rx.wait_count(1)

    Webhook(ep["secret"]).verify(req.body, req.headers)  # v1 still there for off-the-shelf libraries
    sigs = dict(s.split(",", 1) for s in req.headers["webhook-signature"].split(" "))
    key = VerifyKey(base64.b64decode(ep["public_key"].removeprefix("whpk_")))
    signed = f"{req.webhook_id}.{req.headers['webhook-timestamp']}.".encode() + req.body
    key.verify(signed, base64.b64decode(sigs["v1a"]))
    with pytest.raises(BadSignatureError):
        key.verify(signed + b" ", base64.b64decode(sigs["v1a"]))

    off = app_api.patch(f"{EP}/{ep['id']}", json={"asymmetric_signing": False}).json()
    assert off["asymmetric_signing"] is False and off["public_key"] is None


def test_deliveries_are_invisible_to_other_workspaces(app_server: InProcessServer, app_tenant: Tenant) -> None:
    with Receiver() as rx, app_server.client(app_tenant) as app_api:
        ep = add_endpoint(app_api, rx.url)
        app_api.post(f"{EP}/{ep['id']}/test")
        (d,) = eventually(lambda: deliveries(app_api, ep["id"]))
        with app_server.client(app_server.new_tenant("Other")) as stranger:
            assert stranger.get(f"/api/v1/webhook-deliveries/{d['id']}").status_code == 404
            assert stranger.post(f"/api/v1/webhook-deliveries/{d['id']}/retry").status_code == 404

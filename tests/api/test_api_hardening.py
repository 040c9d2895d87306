"""The API against a hostile client: deep JSON, secrets kept by idempotency records, and what
a leaked `write` token can do (issue 15, points 5, 6 and 11)."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlmodel import select

from app.api.framework import MAX_JSON_DEPTH
from app.ids import utcnow
from app.store.runner import Tx
from app.store.tables import IdempotencyRecord
from tests.api.test_api_errors import all_operations, fill
from tests.conftest import InProcessServer, LiveServer, Tenant
from tests.factories import assert_error, make_conversation, make_user, openapi_spec
from tests.webviews.support import files_containing


def nested(depth: int) -> Any:
    """A value of ``depth`` levels of objects and arrays: ``{"a": [{"a": [...]}]}``."""
    value: Any = "leaf"
    for level in range(depth):
        value = {"a": value} if level % 2 else [value]
    return value


def deep_text(depth: int) -> str:
    """``nested(depth)`` as JSON text, written by hand (json.dumps recurses past its stack)."""
    opens = "".join('{"a":' if level % 2 else "[" for level in reversed(range(depth)))
    closes = "".join("}" if level % 2 else "]" for level in range(depth))
    return opens + '"leaf"' + closes


def post_json(client: httpx.Client, method: str, url: str, text: str) -> httpx.Response:
    return client.request(method, url, content=text, headers={"content-type": "application/json"})


# --- 11. JSON depth is bounded where bodies are parsed ----------------------------------------


def test_properties_nested_300_levels_are_a_422_not_a_500(
    module_app_api: httpx.Client, module_app_server: InProcessServer
) -> None:
    for depth in (300, 2_000):
        body = '{"name": "Deep", "properties": {"p": ' + deep_text(depth) + "}}"
        r = post_json(module_app_api, "POST", "/api/v1/users", body)
        error = assert_error(r, 422, "json_too_deep")
        assert error["details"] == [{"field": "body", "message": f"at most {MAX_JSON_DEPTH} levels of objects and arrays"}]
    user = make_user(module_app_api)
    body = '{"properties": {"p": ' + deep_text(300) + "}}"
    r = post_json(module_app_api, "PATCH", f"/api/v1/users/{user['id']}", body)
    assert_error(r, 422, "json_too_deep")
    assert module_app_api.get(f"/api/v1/users/{user['id']}").json()["properties"] == {}

    # The body itself is level 1: properties may nest to the limit, and read back intact.
    fits = nested(MAX_JSON_DEPTH - 2)
    r = module_app_api.post("/api/v1/users", json={"properties": {"p": fits}})
    assert r.status_code == 201, r.text
    assert module_app_api.get(f"/api/v1/users/{r.json()['id']}").json()["properties"] == {"p": fits}
    assert_error(module_app_api.post("/api/v1/users", json={"properties": {"p": nested(MAX_JSON_DEPTH - 1)}}), 422)
    assert "Traceback" not in module_app_server.log()


def test_every_api_body_and_the_widget_session_refuse_deep_json(
    module_app_server: InProcessServer, module_app_tenant: Tenant
) -> None:
    deep = '{"x": ' + deep_text(500) + "}"
    checked = 0
    with module_app_server.client(module_app_tenant) as c:
        spec = openapi_spec(c)
        for method, path in all_operations(spec):
            if "requestBody" not in spec["paths"][path][method.lower()]:
                continue
            r = c.request(method, fill(path, "nope_0000"), content=deep, headers={"content-type": "application/json"})
            assert_error(r, 422, "json_too_deep")
            checked += 1
    assert checked >= 8
    body = f'{{"widget_key": "{module_app_tenant.widget_key}", "x": ' + deep_text(500) + "}"
    with module_app_server.client() as anonymous:
        assert_error(anonymous.post("/widget/v1/session", content=body), 422, "json_too_deep")


def test_a_deep_widget_frame_closes_the_socket_1007(module_server: LiveServer, module_tenant: Tenant) -> None:
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    session = httpx.post(module_server.url + "/widget/v1/session", json={"widget_key": module_tenant.widget_key}).json()
    with connect(module_server.ws_url + session["socket_path"]) as ws:
        ws.send(json.dumps({"type": "auth", "token": session["session_token"]}))
        assert json.loads(ws.recv(timeout=5))["type"] == "ready"
        ws.send('{"type": "typing", "on": true, "x": ' + deep_text(200) + "}")
        with pytest.raises(ConnectionClosed) as info:
            while True:
                ws.recv(timeout=5)
    assert info.value.rcvd is not None and info.value.rcvd.code == 1007


def test_a_deeply_nested_web_view_context_is_a_422(module_app_api: httpx.Client) -> None:
    import base64

    # Python's json recursed past its stack on this header: a 500 before.
    header = base64.urlsafe_b64encode(b"[" * 2_900).rstrip(b"=").decode()
    r = module_app_api.post("/api/v1/webview-contexts/verify", json={"token": f"{header}.e30.c2ln"})
    assert_error(r, 422)


# --- 5. idempotency records never keep a secret, and age out ----------------------------------


def idempotency_rows(server: InProcessServer) -> list[IdempotencyRecord]:
    def read(tx: Tx) -> list[IdempotencyRecord]:
        rows = list(tx.session.exec(select(IdempotencyRecord)))
        for row in rows:
            tx.session.expunge(row)
        return rows

    return server.in_tx(read)  # type: ignore[no-any-return]


def test_a_created_token_or_secret_is_never_kept_for_a_replay(
    app_server: InProcessServer, app_tenant: Tenant, app_api: httpx.Client, tmp_path: Path
) -> None:
    key = {"Idempotency-Key": "create-token-1"}
    first = app_api.post("/api/v1/api-tokens", json={"name": "ci"}, headers=key)
    assert first.status_code == 201
    token = first.json()["token"]
    assert token.startswith("bch_")

    replay = app_api.post("/api/v1/api-tokens", json={"name": "ci"}, headers=key)
    assert replay.status_code == 201 and replay.headers["idempotent-replayed"] == "true"
    assert "token" not in replay.json()
    assert replay.json() == {k: v for k, v in first.json().items() if k != "token"}
    assert len(app_api.get("/api/v1/api-tokens").json()["data"]) == 2  # the fixture's and this one: one create

    endpoint = app_api.post("/api/v1/webhook-endpoints", json={"url": "https://bot.example.com/hooks"},
                            headers={"Idempotency-Key": "create-endpoint-1"})
    assert endpoint.status_code == 201
    secret = endpoint.json()["secret"]
    rotated = app_api.post(f"/api/v1/webhook-endpoints/{endpoint.json()['id']}/rotate-secret", json={},
                           headers={"Idempotency-Key": "rotate-1"})
    assert rotated.status_code == 200
    new_secret = rotated.json()["secret"]
    again = app_api.post(f"/api/v1/webhook-endpoints/{endpoint.json()['id']}/rotate-secret", json={},
                         headers={"Idempotency-Key": "rotate-1"})
    assert again.headers["idempotent-replayed"] == "true" and "secret" not in again.json()

    stored = " ".join(r.response_body for r in idempotency_rows(app_server))
    assert len(idempotency_rows(app_server)) == 3
    for needle in (token, secret, new_secret, secret.removeprefix("whsec_"), new_secret.removeprefix("whsec_")):
        assert needle not in stored
    # The API token is nowhere on disk (it is stored as a hash), the WAL included.
    app_server.stop()
    assert files_containing(tmp_path, [token, token.removeprefix("bch_")]) == {}


def test_idempotency_records_age_out_after_a_day(
    app_server: InProcessServer, app_tenant: Tenant, app_api: httpx.Client
) -> None:
    key = {"Idempotency-Key": "old-key"}
    first = app_api.post("/api/v1/users", json={"name": "Ann"}, headers=key)
    assert first.status_code == 201

    def age(tx: Tx, *keys: str) -> None:
        for row in tx.session.exec(select(IdempotencyRecord)):
            if row.key in keys:
                row.created_at = utcnow() - timedelta(days=1, minutes=1)
                tx.session.add(row)

    # Within the day the key replays; after it, the same key is a new request.
    assert app_api.post("/api/v1/users", json={"name": "Ann"}, headers=key).json()["id"] == first.json()["id"]
    app_server.in_tx(age, "old-key")
    second = app_api.post("/api/v1/users", json={"name": "Ann"}, headers=key)
    assert second.status_code == 201 and second.json()["id"] != first.json()["id"]
    assert "idempotent-replayed" not in second.headers

    # Any idempotent write prunes old records (of every workspace), a bounded batch at a time.
    other = app_server.new_tenant("Other")
    with app_server.client(other) as other_api:
        for i in range(3):
            assert other_api.post("/api/v1/users", json={}, headers={"Idempotency-Key": f"o-{i}"}).status_code == 201
    app_server.in_tx(age, "o-0", "o-1", "o-2", "old-key")
    assert len(idempotency_rows(app_server)) == 4
    assert app_api.post("/api/v1/users", json={}, headers={"Idempotency-Key": "fresh"}).status_code == 201
    assert [r.key for r in idempotency_rows(app_server)] == ["fresh"]


# --- 6. a leaked write token cannot add a phishing callback -----------------------------------


def test_a_write_token_cannot_add_move_or_rotate_an_endpoint(
    app_server: InProcessServer, app_tenant: Tenant, app_api: httpx.Client
) -> None:
    writer = {"Authorization": f"Bearer {app_server.token_for(app_tenant.workspace_id, ['read', 'write'])}"}
    with app_server.client() as c:
        r = c.post("/api/v1/webhook-endpoints", json={"url": "https://attacker.example/hooks"}, headers=writer)
        assert assert_error(r, 403, "forbidden")["details"] == {"required_scope": "admin"}
        assert app_api.get("/api/v1/webhook-endpoints").json()["data"] == []

        endpoint = app_api.post("/api/v1/webhook-endpoints", json={"url": "https://bot.example.com/hooks"}).json()
        path = f"/api/v1/webhook-endpoints/{endpoint['id']}"
        r = c.patch(path, json={"url": "https://attacker.example/hooks"}, headers=writer)
        assert assert_error(r, 403, "forbidden")["details"] == {"required_scope": "admin"}
        assert_error(c.post(path + "/rotate-secret", json={}, headers=writer), 403, "forbidden")
        assert app_api.get(path).json()["url"] == "https://bot.example.com/hooks"

        # What a bot legitimately does with its own token still works.
        r = c.patch(path, json={"events": ["message.created"], "enabled": False}, headers=writer)
        assert r.status_code == 200 and r.json()["events"] == ["message.created"]
        assert c.get(path, headers=writer).status_code == 200
        assert app_api.patch(path, json={"url": "https://bot.example.com/v2/hooks"}).status_code == 200
        assert app_api.post(path + "/rotate-secret", json={}).json()["secret"].startswith("whsec_")

    ops = openapi_spec(app_api)["paths"]
    assert ops["/api/v1/webhook-endpoints"]["post"]["x-required-scope"] == "admin"
    assert ops["/api/v1/webhook-endpoints/{endpoint_id}/rotate-secret"]["post"]["x-required-scope"] == "admin"
    assert "admin" in ops["/api/v1/webhook-endpoints/{endpoint_id}"]["patch"]["description"]


def test_form_callbacks_must_be_https_unless_private_networks_are_allowed(app_server_factory: Any) -> None:
    from tests.webviews.support import add_endpoint, card_form, open_in_store, post_webview_message

    server = app_server_factory(env={"BACKCHANNEL_WEBHOOK_ALLOW_PRIVATE_NETWORKS": "false"})
    tenant = server.new_tenant()
    add_endpoint(server, tenant.workspace_id, "http://bot.example.com/hooks")
    add_endpoint(server, tenant.workspace_id, "https://bot.example.com/hooks")
    plain = {"web_view": {"label": "Card", "form": card_form("http://bot.example.com/hooks/card")}}
    carousel = {"carousel": {"cards": [{"title": "Card", "buttons": [plain]}]}}
    with server.client(tenant) as api:
        conv = make_conversation(api)
        url = f"/api/v1/conversations/{conv['id']}/messages"
        for parts, field in [
            ([plain], "message_parts.0.web_view.form.callback_url"),
            ([{"text": {"content": "Your card"}}, carousel],
             "message_parts.1.carousel.cards.0.buttons.0.web_view.form.callback_url"),
        ]:
            error = assert_error(api.post(url, json={"message_parts": parts}), 422)
            assert error["details"] == [{"field": field, "message": "a hosted form's callback_url must be https"}]
        user = conv["user_id"]
        r = api.post("/api/v1/conversations", json={"user_id": user, "messages": [{"message_parts": [plain]}]})
        assert assert_error(r, 422)["details"][0]["field"] == "messages.0.message_parts.0.web_view.form.callback_url"
        assert api.get(url).json()["data"] == []
        secure = {"web_view": {"label": "Card", "form": card_form("https://bot.example.com/hooks/card")}}
        assert api.post(url, json={"message_parts": [secure]}).status_code == 201

    # A form stored while private networks were allowed (over http) is not served once they are not.
    server.env["BACKCHANNEL_WEBHOOK_ALLOW_PRIVATE_NETWORKS"] = "true"
    server.restart()
    with server.client(tenant) as api:
        scene = post_webview_message(api, [plain])
    form_url = open_in_store(server, tenant, scene)["url"]
    with server.client() as browser:
        assert browser.get(form_url).status_code == 200
    server.env["BACKCHANNEL_WEBHOOK_ALLOW_PRIVATE_NETWORKS"] = "false"
    server.restart()
    with server.client() as browser:
        r = browser.get(form_url)
        assert r.status_code == 503 and "not available" in r.text
        assert browser.post(form_url, data={"card_number": "4111111111111111"}).status_code == 503
